import numpy as np
import pytest
import torch

import napari_dip
from napari_dip import iter_restore, restore
from napari_dip.engine import scaling as scaling_module
from napari_dip.engine.measures import psnr
from napari_dip.engine.scaling import IntensityScaling

from .conftest import tiny


def test_forty_iterations_raise_the_psnr_of_a_noisy_image(noisy_cell):
    clean, noisy = noisy_cell
    result = restore(noisy, preset="quick", max_iterations=40, seed=0)
    assert result.shape == noisy.shape and result.dtype == noisy.dtype
    assert psnr(result, clean) > psnr(noisy, clean) + 5.0


def test_same_seed_gives_identical_cpu_runs(noisy_cell):
    _, noisy = noisy_cell
    a = restore(noisy, **tiny(max_iterations=8), seed=3, device="cpu")
    b = restore(noisy, **tiny(max_iterations=8), seed=3, device="cpu")
    c = restore(noisy, **tiny(max_iterations=8), seed=4, device="cpu")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fits_in_parallel_threads_keep_their_own_seeds(noisy_cell):
    from concurrent.futures import ThreadPoolExecutor

    _, noisy = noisy_cell
    settings = tiny(max_iterations=3)
    serial = [restore(noisy, seed=seed, **settings) for seed in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        parallel = list(pool.map(lambda seed: restore(noisy, seed=seed, **settings), (1, 2)))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_a_run_leaves_the_global_rng_alone(noisy_cell):
    _, noisy = noisy_cell
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    restore(noisy, **tiny(max_iterations=2))
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_input_is_never_modified(noisy_cell, rng):
    _, noisy = noisy_cell
    image = (noisy * 60000).astype(np.uint16)
    mask = np.zeros(image.shape, dtype=bool)
    mask[10:20, 10:20] = True
    image_before, mask_before = image.copy(), mask.copy()
    restore(image, task="inpaint", mask=mask, **tiny())
    restore(image, **tiny())
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(mask, mask_before)


@pytest.mark.parametrize("shape, channel_axis", [((24, 40), None), ((24, 40, 3), -1),
                                                 ((3, 24, 40), 0), ((24, 5, 40), 1)])
@pytest.mark.parametrize("task, factor", [("denoise", None), ("inpaint", None),
                                          ("super_resolve", 2), ("super_resolve", 4)])
def test_output_shape_for_every_task_and_layout(shape, channel_axis, task, factor, rng):
    image = rng.random(shape).astype(np.float32)
    spatial = [s for i, s in enumerate(shape) if channel_axis is None or i != channel_axis % 3]
    mask = None
    if task == "inpaint":
        mask = np.zeros(spatial, dtype=bool)
        mask[5:9, 5:9] = True
    result = restore(image, task=task, mask=mask, factor=factor, channel_axis=channel_axis,
                     **tiny(max_iterations=2))
    expected = list(shape)
    for i in range(len(shape)):
        if channel_axis is None or i != channel_axis % 3:
            expected[i] *= factor or 1
    assert result.shape == tuple(expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32,
                                   np.float64])
def test_result_keeps_dtype_and_intensity_range(dtype, noisy_cell):
    _, noisy = noisy_cell
    if np.dtype(dtype).kind == "f":
        image = (noisy * 40.0 - 10.0).astype(dtype)  # not in [0, 1]: robust scaling
    elif dtype == np.int16:
        image = (noisy * 3000 - 1000).astype(dtype)  # negative values
    else:
        info = np.iinfo(dtype)
        image = (noisy * min(info.max, 50_000)).astype(dtype)
    result = restore(image, **tiny(max_iterations=20, report_every=20))
    assert result.dtype == image.dtype
    low, high = float(image.min()), float(image.max())
    span = high - low
    assert low - 0.01 * span <= float(result.min()) and float(result.max()) <= high + 0.01 * span
    # the result is a restoration of this image, not something on another scale
    assert abs(float(result.mean()) - float(image.mean())) < 0.1 * span


def test_intensity_scaling_round_trips_integers():
    image = np.array([[0, 1000], [20000, 65535]], dtype=np.uint16)
    scaling = IntensityScaling.from_image(image)
    np.testing.assert_array_equal(scaling.from_unit(scaling.to_unit(image)), image)
    assert IntensityScaling.from_image(image.astype(np.uint8)).high == 255.0


def _to_unit_in_one_go(scaling, values):
    """The conversions as one float64 expression over the whole array (references)."""
    unit = (np.asarray(values, dtype=np.float64) - scaling.low) / (scaling.high - scaling.low)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def _from_unit_in_one_go(scaling, unit):
    values = np.asarray(unit, dtype=np.float64) * (scaling.high - scaling.low) + scaling.low
    if scaling.dtype.kind in "ui":
        info = np.iinfo(scaling.dtype)
        top = np.nextafter(np.float64(info.max), -np.inf) \
            if int(np.float64(info.max)) > info.max else np.float64(info.max)
        return np.clip(np.rint(values), info.min, top).astype(scaling.dtype)
    return values.astype(scaling.dtype)


@pytest.mark.parametrize("dtype, low, high", [
    (np.uint8, 0.0, 255.0), (np.uint16, 97.3, 4012.8), (np.int16, -300.5, 12000.25),
    (np.int32, -2e9, 2e9), (np.int64, -9.2e18, 9.2e18), (np.uint64, 0.0, 1.8e19),
    (np.float32, -3.5, 1e4), (np.float64, -1e300, 1e300), (np.float64, 1e15, 1e15 + 3.0)])
def test_intensities_convert_block_by_block_exactly_as_in_one_go(dtype, low, high, rng,
                                                                 monkeypatch):
    monkeypatch.setattr(scaling_module, "BLOCK_ELEMENTS", 7 * 3)  # a block of a few rows
    scaling = IntensityScaling(low, high, np.dtype(dtype))
    # (M, N, C) the way a tensor comes out of the model: a transposed view, a little out of [0, 1]
    unit = (rng.random((3, 40, 7)) * 1.2 - 0.1).astype(np.float32).transpose(1, 2, 0)
    for values in (unit, unit[:1, :1, 0], np.float32(0.25)):
        result = scaling.from_unit(values)
        expected = _from_unit_in_one_go(scaling, values)
        assert isinstance(result, np.ndarray) and result.dtype == np.dtype(dtype)
        assert result.shape == np.shape(values)
        np.testing.assert_array_equal(result, expected)
        back = scaling.to_unit(result)
        assert isinstance(back, np.ndarray) and back.dtype == np.float32
        np.testing.assert_array_equal(back, _to_unit_in_one_go(scaling, result))
    if np.dtype(dtype).kind in "ui":  # clipped to the dtype, not wrapped around
        info = np.iinfo(dtype)
        extremes = scaling.from_unit(np.array([-1e3, 1e3], dtype=np.float32))
        low_end, high_end = extremes.tolist()
        # the top: the dtype's maximum, or for 64 bits the largest float64 below it
        assert low_end == info.min and 0 <= info.max - high_end <= 2 ** 11


def test_odd_sizes_are_padded_and_cropped_back_not_cropped(rng):
    image = rng.random((37, 45)).astype(np.float32)
    snapshots = list(iter_restore(image, **tiny(max_iterations=3, report_every=1)))
    assert [s.iteration for s in snapshots] == [1, 2, 3]
    assert snapshots[-1].done and not snapshots[0].done
    assert snapshots[-1].image.shape == (37, 45)


def test_inpainting_fills_the_hole_and_keeps_known_pixels(noisy_cell):
    clean, _ = noisy_cell
    mask = np.zeros(clean.shape, dtype=bool)
    mask[24:40, 24:40] = True
    damaged = clean.copy()
    damaged[mask] = 1.0 - clean[mask]  # an inverted artefact
    result = restore(damaged, task="inpaint", mask=mask, preset="quick", max_iterations=80)
    hole_before = np.abs(damaged[mask] - clean[mask]).mean()
    hole_after = np.abs(result[mask] - clean[mask]).mean()
    assert hole_after < 0.5 * hole_before
    assert np.abs(result[~mask] - clean[~mask]).mean() < 0.05


def test_super_resolution_beats_nearest_neighbour_upsampling():
    from skimage import data

    from napari_dip.engine.operators import lanczos_downsample

    clean = data.camera()[200:264, 200:264].astype(np.float32) / 255
    low = lanczos_downsample(torch.from_numpy(clean)[None, None], 2)[0, 0].numpy()
    result = restore(low, task="super_resolve", factor=2, preset="quick", max_iterations=200)
    nearest = np.repeat(np.repeat(low, 2, axis=0), 2, axis=1)
    assert result.shape == clean.shape
    assert psnr(result, clean) > psnr(nearest, clean) + 0.3


def test_guide_image_replaces_the_random_code(noisy_cell):
    clean, noisy = noisy_cell
    guide = np.stack([clean, clean[::-1]], axis=-1)  # two guide channels
    result = restore(noisy, guide=guide, preset="quick", max_iterations=40)
    assert psnr(result, clean) > psnr(noisy, clean)
    with pytest.raises(ValueError, match="guide has shape"):
        restore(noisy, guide=guide[:10], **tiny())


def test_snapshot_reports_device_and_progress(noisy_cell):
    _, noisy = noisy_cell
    last = list(iter_restore(noisy, **tiny(), device="cpu"))[-1]
    assert last.device.startswith("cpu") and last.max_iterations == 5 and last.elapsed > 0
    record = napari_dip.run_record(last)
    assert record["config"]["max_iterations"] == 5 and record["iterations"] == 5


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("image, kwargs, message", [
    (np.zeros((0, 10)), {}, "image is empty"),
    (np.zeros((1, 1)), {}, "at least 4x4"),
    (np.zeros((3, 50)), {}, "at least 4x4"),
    (np.array([[np.nan, 1], [2, 3]] * 4, dtype=float).repeat(4, axis=1), {}, "NaN or infinite"),
    (np.full((8, 8), np.inf), {}, "NaN or infinite"),
    (np.zeros((5, 8, 8)), {}, "channel_axis.*restore_stack"),
    (np.zeros((2, 5, 8, 8)), {"channel_axis": 0}, "expected 3 dimensions"),
    (np.zeros((8, 8), dtype=bool), {}, "boolean"),
    (np.array([["a"] * 8] * 8), {}, "numeric array"),
    (np.zeros((8, 8)), {"task": "inpaint"}, "needs mask="),
    (np.zeros((8, 8)), {"task": "inpaint", "mask": np.zeros((8, 9))}, "mask has shape"),
    (np.zeros((8, 8)), {"task": "inpaint", "mask": np.ones((8, 8))}, "every pixel as missing"),
    (np.zeros((8, 8)), {"mask": np.zeros((8, 8))}, "only used by task='inpaint'"),
    (np.zeros((8, 8)), {"task": "dehaze"}, "unknown task"),
    (np.zeros((8, 8)), {"preset": "slow"}, "unknown preset"),
    (np.zeros((8, 8)), {"task": "super_resolve"}, "needs factor"),
    (np.zeros((8, 8)), {"task": "super_resolve", "factor": 3}, "not supported"),
    (np.zeros((8, 8)), {"factor": 2}, "only applies to task='super_resolve'"),
    (np.zeros((8, 8)), {"seed": -1}, "seed must be"),
    (np.zeros((8, 8)), {"device": "tpu"}, "device"),
])
def test_bad_input_raises_a_clear_value_error(image, kwargs, message):
    before = image.copy()
    with pytest.raises(ValueError, match=message):
        restore(image, **{**tiny(), **kwargs})
    np.testing.assert_array_equal(image, before)


def test_requesting_a_missing_gpu_is_an_error_not_a_silent_fallback():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no such CUDA GPU"):
        restore(np.zeros((8, 8)), **tiny(), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_raises_psnr(noisy_cell):
    clean, noisy = noisy_cell
    last = list(iter_restore(noisy, preset="quick", max_iterations=60, device="cuda"))[-1]
    assert last.device.startswith("cuda")
    assert psnr(last.estimate, clean) > psnr(noisy, clean) + 5.0


def test_a_dim_image_is_stretched_like_any_other_not_fitted_in_a_corner_of_the_range(
        noisy_cell):
    clean, noisy = noisy_cell
    settings = tiny(max_iterations=150, report_every=150)
    # a [0, 1] image spanning a fiftieth of that range, and the same data elsewhere on the axis:
    # both get the same mapping to the model's range, so restorations as good (not the same
    # bits: rounding differs, and a fit amplifies it)
    dim = restore(noisy * 0.02, **settings).astype(np.float64) / 0.02
    shifted = (restore(noisy * 0.5 + 2.0, **settings).astype(np.float64) - 2.0) / 0.5
    assert psnr(dim, clean) > psnr(noisy, clean) + 8.0
    assert abs(psnr(dim, clean) - psnr(shifted, clean)) < 0.5
    # a uint8 image using only 0..8 of 0..255
    dim8 = np.rint(noisy * 8).astype(np.uint8)
    result8 = restore(dim8, **settings).astype(np.float64) / 8
    assert psnr(result8, clean) > psnr(dim8 / 8.0, clean) + 5.0


def test_extreme_intensities_come_back_finite_and_in_range():
    huge = restore(np.full((32, 32), 1e17), **tiny())
    assert np.isfinite(huge).all() and np.allclose(huge, 1e17, rtol=1e-5)
    top = np.iinfo(np.int64).max
    result = restore(np.full((32, 32), top, dtype=np.int64), **tiny())
    assert result.dtype == np.int64 and result.min() > top // 2  # not wrapped around to negative
    with pytest.raises(ValueError, match="divide it by a constant"):
        restore(np.array([[-1e308, 1e308] * 16] * 32), **tiny())


def test_pixels_under_the_inpainting_mask_do_not_change_the_result(noisy_cell):
    clean, _ = noisy_cell
    image = 0.5 + 0.5 * clean
    missing = np.zeros(image.shape, bool)
    missing[20:36, 20:36] = True
    settings = tiny(max_iterations=20, report_every=20)
    results = []
    for fill in (0.5, 1000.0, np.nan, -np.inf):
        damaged = image.copy()
        damaged[missing] = fill
        results.append(restore(damaged, task="inpaint", mask=missing, **settings))
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
    tiled = image.copy()
    tiled[missing] = np.nan
    assert np.isfinite(restore(tiled, task="inpaint", mask=missing, tile_size=48, tile_above=0,
                               tile_overlap=8, **{**settings, "scales": 3})).all()
    with pytest.raises(ValueError, match="1 NaN or infinite value.s. outside the mask"):
        tiled[0, 0] = np.nan
        restore(tiled, task="inpaint", mask=missing, **settings)


def test_bad_arguments_fail_at_the_call_with_what_to_fix(noisy_cell):
    _, noisy = noisy_cell
    with pytest.raises(ValueError, match="unknown task 'dehaze'"):
        iter_restore(noisy, task="dehaze")  # not only at the first next()
    with pytest.raises(ValueError, match="contains 1 NaN"):
        bad = noisy.copy()
        bad[3, 3] = np.nan
        iter_restore(bad)
    with pytest.raises(ValueError, match="channel_axis=True must be an integer axis"):
        restore(noisy, channel_axis=True)
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 2\\*\\*32 - 1"):
        restore(noisy, seed=2 ** 64)
    with pytest.raises(ValueError, match="the Deep Decoder takes no guide image"):
        guide = np.zeros(noisy.shape + (32,), np.float32)  # as many channels as its input code
        iter_restore(noisy, guide=guide, network="deep_decoder", **tiny())


def test_several_bayesian_runs_pool_their_posteriors(noisy_cell):
    _, noisy = noisy_cell
    image = noisy[:32, :32]
    settings = dict(preset="bayesian", max_iterations=40, burn_in=20, sample_every=5,
                    scales=3, channels_down=16, channels_up=16, report_every=40)
    runs = [restore(image, seed=seed, return_uncertainty=True, **settings) for seed in (0, 1)]
    snapshots = list(iter_restore(image, seed=0, n_runs=2, **settings))
    last = snapshots[-1]
    means = np.stack([m.astype(np.float64) for m, _ in runs])
    stds = np.stack([u.astype(np.float64) for _, u in runs])
    np.testing.assert_allclose(last.estimate, means.mean(0), atol=1e-5)
    pooled = np.sqrt(np.maximum((stds ** 2 + means ** 2).mean(0) - means.mean(0) ** 2, 0))
    np.testing.assert_allclose(last.uncertainty, pooled, atol=1e-4)
    first_run_end = [s for s in snapshots if s.run == 0][-1].elapsed
    assert last.elapsed > first_run_end  # the time of both runs


def test_iter_restore_refuses_at_the_call_what_its_fit_would_refuse():
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="guide has shape"):
        napari_dip.iter_restore(image, guide=np.zeros((16, 16)), preset="quick")
    with pytest.raises(ValueError, match="guide contains"):
        napari_dip.iter_restore(image, guide=np.full((32, 32), np.nan), preset="quick")
    with pytest.raises(ValueError, match="more than float64 arithmetic can scale"):
        napari_dip.iter_restore(np.where(image > 0.5, 1e308, -1e308), preset="quick")
    mask = np.zeros((64, 64), bool)
    mask[:40, :40] = True  # the first of nine tiles of 32 (overlap 8) holds no known pixel
    with pytest.raises(ValueError, match="tile 1 of 9 .* lies wholly in the mask"):
        napari_dip.iter_restore(np.zeros((64, 64), np.float32), task="inpaint", mask=mask,
                                preset="quick", tile_size=32, tile_overlap=8, tile_above=0,
                                scales=2)
    with pytest.raises(ValueError, match="unknown preset"):
        napari_dip.iter_restore(image, preset=["quick"])


def test_iter_restore_stack_refuses_every_slice_before_fitting_any():
    rng = np.random.default_rng(0)
    stack = rng.random((3, 32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="image is boolean"):
        napari_dip.iter_restore_stack(stack > 0.5, preset="quick")
    with pytest.raises(ValueError, match="restoration needs at least"):
        napari_dip.iter_restore_stack(np.zeros((2, 2, 2)), preset="quick")
    guides = rng.random((3, 32, 32))
    guides[2, 5, 5] = np.nan  # only the last slice's guide is bad
    with pytest.raises(ValueError, match=r"slice \(2,\): guide contains 1 NaN"):
        napari_dip.iter_restore_stack(stack, guide=guides, preset="quick")
    masks = np.zeros((3, 64, 64), bool)
    masks[1, :40, :40] = True  # slice 1 leaves a tile no known pixel
    with pytest.raises(ValueError, match=r"slice \(1,\): tile 1 of 9"):
        napari_dip.iter_restore_stack(np.zeros((3, 64, 64), np.float32), task="inpaint",
                                      mask=masks, preset="quick", tile_size=32, tile_overlap=8,
                                      tile_above=0, scales=2)
    with pytest.raises(ValueError, match="slice_batch=2 cannot fit slices"):
        napari_dip.iter_restore_stack(np.zeros((3, 64, 64), np.float32), preset="quick",
                                      slice_batch=2, tile_size=32, tile_overlap=8, tile_above=0,
                                      scales=2)
    with pytest.raises(ValueError, match="one guide for every slice"):
        napari_dip.iter_restore_stack(stack, guide=guides[0], preset="quick", slice_batch=2)


def test_a_constant_image_comes_back_centred_on_its_value():
    result = napari_dip.restore(np.full((32, 32), 5.0, np.float32), preset="quick",
                                max_iterations=50)
    assert abs(float(result.mean()) - 5.0) < 0.004  # the network reaches it from both sides
    assert result.min() < 5.0 < result.max()


def test_an_uncertainty_in_intensity_units_stays_float32():
    scaling = IntensityScaling(np.float64(10.0), np.float64(3000.5), np.dtype(np.uint16))
    spread = scaling.spread_from_unit(np.full((4, 4, 1), 0.01, np.float32))
    assert spread.dtype == np.float32 and np.allclose(spread, 29.905)


def test_averaging_several_seeds_is_the_mean_of_the_single_runs(noisy_cell):
    _, noisy = noisy_cell
    settings = dict(preset="quick", max_iterations=6)
    single = [restore(noisy, seed=s, **settings) for s in (5, 6)]
    averaged = restore(noisy, seed=5, n_runs=2, **settings)
    np.testing.assert_allclose(averaged, (single[0] + single[1]) / 2, atol=1e-5)
