import numpy as np
import pytest
import torch

import napari_dip.engine.plane
from napari_dip import get_config, iter_restore, iter_restore_stack, restore
from napari_dip.engine.measures import psnr
from napari_dip.engine.scaling import IntensityScaling
from napari_dip.engine.tiling import TileBlender, plan_tiles, seam_band, tile_interiors

from .conftest import tiny

# scales=3 allows tiles from 32 pixels (4 x 2**scales), so tiled fits stay tiny
TILED = dict(scales=3, tile_size=32, tile_overlap=8)


def coverage(shape, tiles, factor=1):
    count = np.zeros((shape[0] * factor, shape[1] * factor), dtype=int)
    for tile in tiles:
        count[tile.output(factor)] += 1
    return count


# ----------------------------------------------------------------------------- the plan

@pytest.mark.parametrize("shape, tile_size, overlap", [
    ((2048, 2048), 256, 32), ((100, 101), 40, 10), ((71, 300), 40, 10), ((37, 45), 16, 0),
    ((64, 200), 64, 16), ((5, 9), 4, 1)])
def test_tile_plan_covers_every_pixel_and_tiles_stay_inside(shape, tile_size, overlap):
    tiles = plan_tiles(shape, tile_size, overlap)
    assert (coverage(shape, tiles) >= 1).all()
    for tile in tiles:
        assert 0 <= tile.rows.start < tile.rows.stop <= shape[0]
        assert 0 <= tile.cols.start < tile.cols.stop <= shape[1]
        assert tile.shape == (min(tile_size, shape[0]), min(tile_size, shape[1]))  # no padding
    # neighbours share at least the overlap, and the ramps say how much they share
    for axis in ("rows", "cols"):
        spans = sorted({(getattr(t, axis).start, getattr(t, axis).stop) for t in tiles})
        for (_, stop), (start, _) in zip(spans, spans[1:]):
            assert stop - start >= overlap


def test_an_image_no_larger_than_a_tile_is_one_tile():
    (tile,) = plan_tiles((64, 50), 64, 16)
    assert tile.shape == (64, 50)
    np.testing.assert_array_equal(tile.weights(), 1.0)


def test_a_side_up_to_whole_up_to_is_not_split():
    """A side a little longer than a tile stays whole instead of becoming two tiles that share
    most of their pixels; longer sides are split into tiles as before."""
    tiles = plan_tiles((300, 600), 288, 32, whole_up_to=432)
    assert [t.shape for t in tiles] == [(300, 288)] * 3
    assert (coverage((300, 600), tiles) >= 1).all()
    assert len(plan_tiles((300, 600), 288, 32)) == 6  # without it: 2 x 3 tiles of 288
    assert len(plan_tiles((433, 433), 288, 32, whole_up_to=432)) == 4
    # below the tile size it changes nothing
    assert plan_tiles((300, 600), 288, 32, whole_up_to=100) == plan_tiles((300, 600), 288, 32)


def test_auto_denoises_large_images_in_tiles_and_small_ones_whole():
    """Preset auto restores a denoising plane with a side above its tile_above in tiles, one
    no larger in one fit; its other tasks fit whole."""
    config = get_config("auto")
    assert config.tile_size and config.tile_above > config.tile_size
    assert get_config("auto", "inpaint").tile_size == 0
    assert get_config("auto", "super_resolve", 4).tile_size == 0
    rng = np.random.default_rng(0)
    for shape, tiles in (((64, 64), 1), ((config.tile_above + 8, 96), 2)):
        image = rng.random(shape, dtype=np.float32)
        counts = {s.n_tiles for s in iter_restore(image, max_iterations=2, report_every=1)}
        assert counts == {tiles}, shape


def test_weights_are_positive_one_inside_and_one_on_the_image_border():
    tiles = plan_tiles((100, 100), 40, 10)
    for tile in tiles:
        weights = tile.weights()
        assert weights.min() > 0 and weights.max() == 1.0
        middle = tile.shape[0] // 2
        if tile.rows.start == 0:  # no ramp along the image's top border
            np.testing.assert_array_equal(weights[0], weights[middle])
        if tile.rows.stop == 100:
            np.testing.assert_array_equal(weights[-1], weights[middle])
    corner = tiles[0].weights()
    np.testing.assert_array_equal(corner[:20, :20], 1.0)  # the image's corner is this tile's
    assert corner[-1, -1] < 0.01  # fades out at its inner edges
    # neighbouring ramps over the same overlap add up to one
    assert np.allclose(sum(coverage_weights((100, 100), tiles)), 1.0)


def coverage_weights(shape, tiles, factor=1):
    for tile in tiles:
        full = np.zeros((shape[0] * factor, shape[1] * factor))
        full[tile.output(factor)] = tile.weights(factor)
        yield full


@pytest.mark.parametrize("factor, channels", [(1, 1), (2, 3)])
def test_blending_a_constant_gives_the_constant(factor, channels):
    shape = (71, 90)
    tiles = plan_tiles(shape, 40, 10)
    blender = TileBlender((71 * factor, 90 * factor), channels, factor=factor)
    for tile in tiles:
        h, w = tile.shape
        blender.add(tile, np.full((h * factor, w * factor, channels), 0.25, np.float32))
    np.testing.assert_allclose(blender.mosaic(), 0.25, rtol=1e-6)


def test_blending_copies_of_a_ramp_gives_the_ramp_without_a_seam():
    shape = (90, 120)
    ramp = np.add.outer(np.linspace(0, 0.5, shape[0]), np.linspace(0, 0.5, shape[1]))
    ramp = ramp[..., None].astype(np.float32)
    tiles = plan_tiles(shape, 48, 12)
    blender = TileBlender(shape, 1)
    for tile in tiles:
        blender.add(tile, tile.cut(ramp))
    np.testing.assert_allclose(blender.mosaic(), ramp, atol=1e-6)


def test_the_mosaic_shows_the_background_until_a_tile_covers_it():
    shape = (60, 60)
    tiles = plan_tiles(shape, 32, 8)
    background = np.full((*shape, 1), 0.5, np.float32)
    blender = TileBlender(shape, 1, background=background)
    ones = np.ones((32, 32, 1), np.float32)
    preview = blender.mosaic(tiles[0], ones)
    assert preview[0, 0, 0] == 1.0 and preview[-1, -1, 0] == 0.5
    np.testing.assert_array_equal(blender.mosaic(), background)  # a preview adds nothing
    blender.add(tiles[0], ones)
    np.testing.assert_array_equal(blender.mosaic(), preview)
    with pytest.raises(ValueError, match="does not fit its tile"):
        blender.add(tiles[1], ones[:10])


def test_a_converting_blender_converts_only_what_changed_and_gives_the_whole_conversion(rng):
    shape = (60, 70)
    tiles = plan_tiles(shape, 32, 8)
    background = rng.random((*shape, 2)).astype(np.float32)
    scaling = IntensityScaling(97.3, 4012.8, np.dtype(np.uint16))
    converted: list[tuple[int, ...]] = []

    def from_unit(values):
        converted.append(values.shape)
        return scaling.from_unit(values)

    plain = TileBlender(shape, 2, background=background)
    blender = TileBlender(shape, 2, background=background, convert=from_unit)
    assert converted == [(*shape, 2)]  # the background, once
    for tile in tiles:
        values = (rng.random((*tile.shape, 2)) * 1.2 - 0.1).astype(np.float32)
        converted.clear()
        preview = blender.mosaic(tile, values)
        assert converted == [(*tile.shape, 2)]  # the tile, not the plane
        assert preview.dtype == np.uint16
        np.testing.assert_array_equal(preview, scaling.from_unit(plain.mosaic(tile, values)))
        plain.add(tile, values)
        blender.add(tile, values)
        np.testing.assert_array_equal(blender.mosaic(), scaling.from_unit(plain.mosaic()))


class _ConvertingTheWholePlane(TileBlender):
    """A blender in model units that converts the whole mosaic at every call: the snapshots of
    a tiled plane as they were made before the mosaic was kept converted."""

    def __init__(self, *args, convert, **kwargs):
        super().__init__(*args, **kwargs)
        self._convert_plane = convert

    def mosaic(self, tile=None, values=None):
        return self._convert_plane(super().mosaic(tile, values))


@pytest.mark.parametrize("dtype, scale", [(np.uint16, 3000.0), (np.float64, 1e30)])
def test_tiled_snapshots_equal_converting_the_whole_mosaic(dtype, scale, noisy_cell, monkeypatch):
    _, noisy = noisy_cell
    image = (noisy[:48, :56].astype(np.float64) * scale + 0.01 * scale).astype(dtype)
    settings = dict(preset="bayesian", max_iterations=12, burn_in=4, sample_every=2,
                    report_every=4, channels_down=16, channels_up=16, seed=0, device="cpu",
                    **TILED)

    kept_converted = list(iter_restore(image, **settings))
    monkeypatch.setattr(napari_dip.engine.plane, "TileBlender", _ConvertingTheWholePlane)
    whole_plane = list(iter_restore(image, **settings))
    assert {s.tile for s in kept_converted} == {0, 1, 2, 3}
    assert kept_converted[-1].uncertainty is not None  # the uncertainty map is compared too
    assert kept_converted[-1].estimate.dtype == dtype
    for mine, reference in zip(kept_converted, whole_plane, strict=True):
        for name in ("image", "average", "estimate", "uncertainty"):
            array, expected = getattr(mine, name), getattr(reference, name)
            if expected is None:
                assert array is None
                continue
            assert array.dtype == expected.dtype
            np.testing.assert_array_equal(array, expected)


def test_seam_band_and_interiors_are_disjoint_and_inside_the_image():
    shape = (100, 100)
    tiles = plan_tiles(shape, 40, 10)
    band, interior = seam_band(shape, tiles, 3), tile_interiors(shape, tiles, 3)
    assert band.any() and interior.any() and not (band & interior).any()
    # tiles [0, 40), [30, 70), [60, 100) along each axis: seams at 30, 40, 60 and 70
    assert not band[:27, :27].any() and band[0, 30] and band[50, 72]
    assert interior[0, 0] and interior[50, 50] and not interior[50, 35]


# ----------------------------------------------------------------------------- tiled fits

def noisy_ramp(shape=(56, 56), sigma=0.1, seed=0):
    """A smooth ramp and a noisy copy; 56 pixels make 2 x 2 tiles of 32 overlapping by 8."""
    clean = np.add.outer(np.linspace(0.2, 0.5, shape[0]), np.linspace(0, 0.3, shape[1]))
    rng = np.random.default_rng(seed)
    return clean.astype(np.float32), (clean + rng.normal(0, sigma, shape)).astype(np.float32)


def test_a_tiled_fit_has_no_seams_on_a_noisy_ramp():
    clean, noisy = noisy_ramp()
    result = restore(noisy, preset="quick", max_iterations=60, report_every=60, **TILED)
    tiles = plan_tiles(clean.shape, 32, 8)
    band, interior = seam_band(clean.shape, tiles, 2), tile_interiors(clean.shape, tiles, 2)
    assert psnr(result, clean) > psnr(noisy, clean) + 5.0
    assert psnr(result[band], clean[band]) > psnr(result[interior], clean[interior]) - 1.0


def test_tiled_and_untiled_runs_agree(noisy_cell):
    clean, noisy = noisy_cell
    settings = dict(preset="quick", max_iterations=60, report_every=60, scales=3,
                    reg_noise_std=0.0)
    whole = restore(noisy, **settings)
    tiled = restore(noisy, **settings, tile_size=40, tile_overlap=8)  # 2 x 2 tiles
    other_seed = restore(noisy, **settings, seed=1)
    assert psnr(whole, clean) > psnr(noisy, clean) + 5.0
    assert psnr(tiled, clean) > psnr(noisy, clean) + 5.0
    # tiling moves the result about as far as another seed does, far less than the noise
    difference = np.abs(tiled - whole).mean()
    assert difference < 1.5 * np.abs(other_seed - whole).mean()
    assert difference < 0.5 * np.abs(noisy - whole).mean()


def test_several_runs_in_tiles_average_the_single_tiled_runs(noisy_cell):
    """n_runs in tiles is the blend of each tile's averaged runs, which is the average of whole
    tiled runs with seeds seed, seed + 1 (benchmarks/stopping.py --tiled --second-run relies on
    it)."""
    _, noisy = noisy_cell
    settings = dict(preset="quick", max_iterations=4, **TILED)
    single = [restore(noisy, seed=s, **settings) for s in (3, 4)]
    averaged = restore(noisy, seed=3, n_runs=2, **settings)
    np.testing.assert_allclose(averaged, (single[0] + single[1]) / 2, atol=1e-5)
    assert np.abs(single[0] - single[1]).mean() > 1e-3  # the seeds' runs differ


def test_snapshots_walk_through_the_tiles_and_show_the_input_where_none_was_fitted():
    _, noisy = noisy_ramp()
    snapshots = list(iter_restore(noisy, **tiny(max_iterations=2, report_every=1), **TILED))
    assert [(s.tile, s.iteration) for s in snapshots][:4] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert {s.n_tiles for s in snapshots} == {4} and snapshots[-1].tile == 3
    assert [s.done for s in snapshots] == [False] * 7 + [True]
    first = snapshots[0]
    assert first.estimate.shape == first.image.shape == noisy.shape
    np.testing.assert_allclose(first.estimate[32:, 32:], noisy[32:, 32:], atol=1e-6)
    assert not np.allclose(first.estimate[:20, :20], noisy[:20, :20], atol=1e-3)
    assert snapshots[-1].elapsed >= snapshots[0].elapsed


def test_super_resolution_tiles_give_the_enlarged_image(rng):
    image = rng.random((40, 52, 3)).astype(np.float32)
    result = restore(image, task="super_resolve", factor=2, channel_axis=-1,
                     **tiny(max_iterations=2), **TILED)
    assert result.shape == (80, 104, 3)
    guide = rng.random((80, 104)).astype(np.float32)
    result = restore(image[..., 0], task="super_resolve", factor=2, guide=guide,
                     **tiny(max_iterations=2), **TILED)
    assert result.shape == (80, 104)


def test_tiled_inpainting_cuts_the_mask_with_the_image():
    clean, _ = noisy_ramp()
    mask = np.zeros(clean.shape, dtype=bool)
    mask[16:40, 16:40] = True
    damaged = np.where(mask, 1.0, clean).astype(np.float32)
    result = restore(damaged, task="inpaint", mask=mask, preset="quick", max_iterations=40,
                     report_every=40, **TILED)
    assert np.abs(result[mask] - clean[mask]).mean() < 0.5 * np.abs(damaged - clean)[mask].mean()
    hole = np.zeros(clean.shape, dtype=bool)
    hole[:36, :36] = True  # covers the whole first tile
    with pytest.raises(ValueError, match="tile 1 of 4 .* lies wholly in the mask.*raise tile_size"):
        restore(damaged, task="inpaint", mask=hole, **tiny(), **TILED)


def test_a_tiled_stack_warm_starts_each_tile_from_the_same_tile_of_the_last_slice():
    _, noisy = noisy_ramp()
    stack = np.stack([noisy, noisy[::-1]])
    steps = list(iter_restore_stack(stack, preset="quick", max_iterations=8, report_every=4,
                                    **TILED))
    assert [(s.slice_number, s.snapshot.tile) for s in steps if s.snapshot.iteration == 4] == \
        [(0, 0), (0, 1), (0, 2), (0, 3)]
    later = [s.snapshot for s in steps if s.slice_number == 1]
    assert {s.max_iterations for s in later} == {2}  # warm_start_fraction 0.25 of 8
    assert [s.tile for s in later] == [0, 1, 2, 3] and later[-1].done
    assert steps[-1].result.shape == stack.shape


@pytest.mark.parametrize("settings, message", [
    (dict(tile_size=48), "tile_size=48 is too small .* raise tile_size to 128"),
    (dict(tile_size=40, scales=3, tile_overlap=20), "tile_overlap=20 must be less than half"
                                                    ".*lower tile_overlap to at most 19"),
    (dict(tile_size=-1), "tile_size=-1 is out of range"),
])
def test_bad_tile_settings_name_the_fix(settings, message):
    with pytest.raises(ValueError, match=message):
        get_config("paper", **settings)
    image = np.zeros((8, 8), np.float32)
    before = image.copy()
    with pytest.raises(ValueError, match=message):
        restore(image, **{**tiny(), "preset": "paper", **settings})
    np.testing.assert_array_equal(image, before)


def test_cli_accepts_tile_options_that_are_only_valid_together():
    from napari_dip.cli import build_parser

    args = build_parser().parse_args(["denoise", "in.tif", "--out", "out", "--scales", "3",
                                      "--tile-size", "40", "--tile-overlap", "8"])
    assert (args.tile_size, args.tile_overlap) == (40, 8)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["denoise", "in.tif", "--out", "out", "--tile-size", "-2"])


def test_the_input_is_unchanged_by_a_tiled_run(rng):
    image = (rng.random((48, 60)) * 60000).astype(np.uint16)
    mask = np.zeros(image.shape, dtype=bool)
    mask[5:9, 30:40] = True
    image_before, mask_before = image.copy(), mask.copy()
    result = restore(image, task="inpaint", mask=mask, **tiny(max_iterations=2), **TILED)
    assert result.dtype == np.uint16 and result.shape == image.shape
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(mask, mask_before)


def test_tiles_continue_from_their_neighbour_on_the_short_schedule(noisy_cell):
    """With tile_warm_start, every tile after the first continues the tile before it for at
    most that share of the first tile's iterations; the plane still comes out restored."""
    clean, noisy = noisy_cell
    settings = dict(preset="fast", max_iterations=40, report_every=1, seed=0, device="cpu",
                    stopping="none", tile_above=0, **TILED)
    for share, later in ((0.0, 40), (0.5, 20)):
        last_iteration = {}
        for snapshot in iter_restore(noisy, tile_warm_start=share, **settings):
            last_iteration[snapshot.tile] = snapshot.iteration
        assert last_iteration[0] == 40 and len(last_iteration) > 1
        assert all(last_iteration[tile] == later for tile in last_iteration if tile), share
        assert psnr(snapshot.estimate, clean) > psnr(noisy, clean) + 2, share


def test_a_stack_tile_continues_its_own_tile_of_the_slice_before(noisy_cell, monkeypatch):
    """In a tiled stack with tile_warm_start, the first slice's tiles continue each other, and
    tile k of the next slice continues tile k of the first as fitted, not the tiles fitted
    after it from the same weights, on the warm-start schedule of a fit from scratch."""
    _, noisy = noisy_cell
    stack = np.stack([noisy, noisy[::-1]])
    fits = []  # per call of fit_runs: weights it started from, ended with, its iterations

    def weights(network):
        return [p.detach().clone() for p in network.parameters()]

    original = napari_dip.engine.plane.fit_runs

    def spying(observation, plan, config, warm):
        started = None if not warm else weights(warm[0].network)
        step = None
        for step, *rest in original(observation, plan, config, warm):
            yield (step, *rest)
        fits.append((started, weights(step.network), step.iteration))

    monkeypatch.setattr(napari_dip.engine.plane, "fit_runs", spying)
    for _ in iter_restore_stack(stack, preset="fast", max_iterations=16, report_every=8, seed=0,
                                device="cpu", stopping="none", tile_warm_start=0.5, tile_above=0,
                                **TILED):
        pass
    n = len(plan_tiles(noisy.shape, TILED["tile_size"], TILED["tile_overlap"]))
    assert n > 1 and len(fits) == 2 * n and fits[0][0] is None

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b))

    for number in range(1, n):  # the first slice: each tile from the one before
        assert same(fits[number][0], fits[number - 1][1])
    for number in range(n):  # the second slice: tile k from the first slice's tile k
        assert same(fits[n + number][0], fits[number][1]), number
    assert not same(fits[n - 1][1], fits[0][1])
    # the next slice's schedule follows the first tile, the one fitted from scratch
    assert [fit[2] for fit in fits] == [16] + [8] * (n - 1) + [4] * n
