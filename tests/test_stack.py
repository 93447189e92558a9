import numpy as np
import pytest
import torch

from napari_dip import iter_restore_stack, restore_stack
from napari_dip.engine import scaling as scaling_module
from napari_dip.engine.plane import pool as _pool
from napari_dip.engine.stack import two_passes as _two_passes
from napari_dip.engine.measures import psnr

from .conftest import tiny


@pytest.fixture
def noisy_stack(noisy_cell):
    """(clean, noisy) 3-slice stacks of neighbouring shifted crops, like a Z stack."""
    clean, _ = noisy_cell
    rng = np.random.default_rng(7)
    cleans = np.stack([np.roll(clean, k, axis=1) for k in range(3)])
    noisy = np.clip(cleans + rng.normal(0, 25 / 255, cleans.shape), 0, 1).astype(np.float32)
    return cleans, noisy


def test_every_slice_of_a_stack_is_restored(noisy_stack):
    clean, noisy = noisy_stack
    result = restore_stack(noisy, preset="quick", max_iterations=40)
    assert result.shape == noisy.shape and result.dtype == noisy.dtype
    for k in range(3):
        assert psnr(result[k], clean[k]) > psnr(noisy[k], clean[k]) + 3.0, k


@pytest.mark.parametrize("shape, channel_axis, factor, expected", [
    ((2, 3, 16, 20), None, None, (2, 3, 16, 20)),      # T, Z, Y, X
    ((2, 16, 20, 3), -1, None, (2, 16, 20, 3)),        # Z, Y, X, RGB
    ((2, 3, 16, 20), 1, 2, (2, 3, 32, 40)),            # Z, C, Y, X, super-resolved
    ((16, 20), None, 4, (64, 80)),                     # a 2D image is a stack of one
])
def test_stack_layouts_and_result_shape(shape, channel_axis, factor, expected, rng):
    image = rng.random(shape).astype(np.float32)
    task = "super_resolve" if factor else "denoise"
    result = restore_stack(image, task=task, factor=factor, channel_axis=channel_axis,
                           **tiny(max_iterations=2))
    assert result.shape == expected


def test_snapshots_walk_through_slices_and_keep_the_users_slice_layout(rng):
    image = rng.random((3, 2, 16, 16)).astype(np.float32)  # Z, C, Y, X
    seen = [(s.index, s.snapshot.estimate.shape, s.done)
            for s in iter_restore_stack(image, channel_axis=1, **tiny(max_iterations=4,
                                                                       report_every=4))]
    assert [index for index, _, _ in seen] == [(0,), (1,), (2,)]
    assert all(shape == (2, 16, 16) for _, shape, _ in seen)
    assert [done for _, _, done in seen] == [False, False, True]


def test_a_2d_mask_applies_to_every_slice_and_an_nd_mask_per_slice(noisy_stack):
    clean, _ = noisy_stack
    damaged = clean.copy()
    mask2d = np.zeros(clean.shape[1:], dtype=bool)
    mask2d[20:30, 20:30] = True
    damaged[:, mask2d] = 1.0 - clean[:, mask2d]
    before = damaged.copy()
    result = restore_stack(damaged, task="inpaint", mask=mask2d, preset="quick",
                           max_iterations=60)
    for k in range(3):
        err_before = np.abs(damaged[k][mask2d] - clean[k][mask2d]).mean()
        assert np.abs(result[k][mask2d] - clean[k][mask2d]).mean() < 0.5 * err_before
    np.testing.assert_array_equal(damaged, before)  # input untouched

    mask3d = np.zeros(clean.shape, dtype=bool)
    mask3d[1, 5:9, 5:9] = True
    restore_stack(damaged, task="inpaint", mask=mask3d, **tiny(max_iterations=2))


def test_a_mask_that_fits_neither_a_slice_nor_the_stack_is_refused(noisy_stack):
    _, noisy = noisy_stack
    with pytest.raises(ValueError,
                       match=r"mask has shape \(2, 64, 64\).*\(64, 64\).*one per slice"):
        restore_stack(noisy, task="inpaint", mask=np.zeros((2, 64, 64)), **tiny())


def test_warm_start_gives_the_next_slice_a_head_start(noisy_stack):
    """With warm start, slice 2's loss after a few steps is lower than from scratch."""
    _, noisy = noisy_stack

    def second_slice_loss(fraction):
        losses = [s.snapshot.loss for s in iter_restore_stack(
            noisy[:2], preset="quick", max_iterations=40, report_every=5,
            warm_start_fraction=fraction) if s.slice_number == 1]
        return losses[0]  # after 5 steps on slice 2

    assert second_slice_loss(0.25) < 0.75 * second_slice_loss(0.0)


def test_a_warm_started_slice_continues_the_optimiser_and_is_not_knocked_off(noisy_cell):
    """Slice 1 continues slice 0's Adam moments as well as its weights, so on the same image its
    first snapshot fits the data about as well as slice 0 ended (a fresh Adam moves every
    weight by about the learning rate in each of its first steps: the loss doubled)."""
    _, noisy = noisy_cell
    losses = {}
    for s in iter_restore_stack(np.stack([noisy, noisy]), preset="quick", max_iterations=120,
                                report_every=5):
        losses.setdefault(s.slice_number, []).append(s.snapshot.loss)
    assert losses[1][0] < 1.2 * losses[0][-1]


def test_stack_slices_share_one_intensity_scaling(noisy_stack):
    _, noisy = noisy_stack
    stack = (noisy * 1000).astype(np.uint16)
    stack[1] //= 2  # a dimmer slice must stay dimmer, not be stretched to the same range
    result = restore_stack(stack, preset="quick", max_iterations=20, warm_start_fraction=0)
    assert result[1].mean() < 0.7 * result[0].mean()


def test_later_slices_get_a_share_of_what_the_first_slice_ran(noisy_stack):
    """Slice 1 runs warm_start_fraction x the iterations slice 0 actually ran (it may stop
    early), and its output average is short enough to forget slice 0 within that schedule."""
    _, noisy = noisy_stack
    ends = {}
    for s in iter_restore_stack(noisy[:2], preset="quick", max_iterations=40, report_every=5,
                                warm_start_fraction=0.5, stopping="holdout", patience=10):
        if s.snapshot.done:
            ends[s.slice_number] = (s.snapshot.iteration, s.snapshot.max_iterations,
                                    s.snapshot.config.ema_weight)
    first_ran = ends[0][0]
    assert ends[1][1] == round(first_ran * 0.5)
    assert ends[1][2] <= 1 - 4 / ends[1][1] + 1e-12


def test_warm_start_config_keeps_the_rest_of_the_settings():
    from napari_dip import get_config, warm_start_config

    config = get_config("auto", reg_noise_ramp=500)
    warm = warm_start_config(config, 800)
    assert warm.max_iterations == round(800 * config.warm_start_fraction)
    assert warm.ema_weight == pytest.approx(1 - 4 / warm.max_iterations)
    assert warm.patience == round(config.patience * config.warm_start_fraction)
    assert warm.reg_noise_ramp == 0  # a fitted network gets the full perturbation at once
    assert warm.replace(max_iterations=config.max_iterations, ema_weight=config.ema_weight,
                        patience=config.patience, reg_noise_ramp=500) == config
    scratch = config.replace(warm_start_fraction=0)
    assert warm_start_config(scratch, 800) == scratch  # every slice from scratch, full length


def test_a_warm_started_slice_stops_by_itself_before_its_short_schedule_ends(noisy_cell):
    """Its stopping patience shrinks with its schedule: a slice that the previous slice's
    weights already fit (here the same image) is not run to its cap."""
    _, noisy = noisy_cell
    ends = {}
    # a learning rate small enough that the first slice's best comes late (iteration 170 with
    # one thread, 180 with two) and the warm slice's clearly earlier (50, 60): at 0.0025 both
    # came at 80 with one thread and the warm slice ran exactly to its cap
    for s in iter_restore_stack(np.stack([noisy, noisy]), preset="quick", max_iterations=1000,
                                report_every=10, warm_start_fraction=0.75, stopping="holdout",
                                patience=300, learning_rate=0.001):
        if s.snapshot.done:
            ends[s.slice_number] = (s.snapshot.iteration, s.snapshot.max_iterations)
    assert ends[0][0] < 1000  # the first slice stopped by itself, and set the schedule
    assert ends[1][1] == round(0.75 * ends[0][0])
    # stopped at 280 of 352 (one thread), 290 of 360 (two); with the full patience of 300 it
    # would run to its cap
    assert ends[1][0] < ends[1][1]


def test_a_backward_pass_revisits_the_slices_in_reverse_and_averages(noisy_stack):
    clean, noisy = noisy_stack
    one_pass = {}
    order = []
    for s in iter_restore_stack(noisy, preset="quick", max_iterations=30, report_every=30,
                                stack_passes=2):
        if s.snapshot.done:
            order.append((s.pass_number, s.index))
            if s.pass_number == 0:
                one_pass[s.index] = s.snapshot.estimate.copy()
        last = s
    assert order == [(0, (0,)), (0, (1,)), (0, (2,)), (1, (1,)), (1, (0,))]
    assert last.done
    result = last.result
    np.testing.assert_array_equal(result[2], one_pass[(2,)])  # the turning point: one fit
    for k in (0, 1):
        assert not np.array_equal(result[k], one_pass[(k,)])  # averaged with the second pass
        assert psnr(result[k], clean[k]) > psnr(noisy[k], clean[k]) + 3.0


def test_slices_fitted_in_one_batch_are_each_restored(noisy_stack):
    """slice_batch=3: one generator fits the three slices together, each from its own code."""
    clean, noisy = noisy_stack
    before = noisy.copy()
    steps = list(iter_restore_stack(noisy, preset="quick", max_iterations=60, report_every=20,
                                    slice_batch=3))
    last = steps[-1]
    assert last.done and last.group == ((0,), (1,), (2,)) and last.slice_number == 2
    assert len(steps) == 3  # one snapshot per reported step for the whole group
    assert [s.done for s in last.group_snapshots] == [True, True, True]
    for k in range(3):
        assert psnr(last.result[k], clean[k]) > psnr(noisy[k], clean[k]) + 3.0, k
        np.testing.assert_array_equal(last.result[k], last.group_snapshots[k].estimate)
    # different codes give different slices, not one image three times
    assert psnr(last.result[0], last.result[2]) < 40
    np.testing.assert_array_equal(noisy, before)


def test_slice_groups_warm_start_and_a_short_last_group(noisy_stack):
    """4 slices in groups of 3: the last group (one slice) continues from the first group's
    weights on the short schedule."""
    _, noisy = noisy_stack
    stack = np.concatenate([noisy, noisy[:1]])
    ends = [(s.group, s.snapshot.iteration, s.snapshot.max_iterations)
            for s in iter_restore_stack(stack, preset="quick", max_iterations=40,
                                        report_every=5, slice_batch=3,
                                        warm_start_fraction=0.5) if s.snapshot.done]
    assert ends == [(((0,), (1,), (2,)), 40, 40), (((3,),), 20, 20)]


def test_slice_batch_refuses_what_it_cannot_combine_with(noisy_stack):
    _, noisy = noisy_stack
    for clash, fix in ((dict(stack_passes=2), "set stack_passes=1"),
                       (dict(input_type="meshgrid"), "use input_type='noise'")):
        with pytest.raises(ValueError, match=f"slice_batch=2 cannot be combined.*{fix}"):
            restore_stack(noisy, slice_batch=2, **tiny(**clash))
    # tiles clash only with slices large enough to be cut into them
    with pytest.raises(ValueError, match="slice_batch=2 cannot fit slices of 64x64 pixels, "
                                         "which tile_size=32 .* set tile_size=0"):
        restore_stack(noisy, slice_batch=2, **tiny(scales=3, tile_size=32, tile_overlap=8))
    before = noisy.copy()
    out = restore_stack(noisy, slice_batch=2, **tiny(scales=3, tile_size=64, tile_overlap=8))
    assert out.shape == noisy.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(noisy, before)
    with pytest.raises(ValueError, match="one guide for every slice.*one guide per slice"):
        restore_stack(noisy, guide=noisy[0], slice_batch=2, **tiny())


def test_a_warm_started_slice_is_fed_its_own_guide(noisy_stack, monkeypatch):
    """With a guide per slice, a warm start continues the weights but takes the new slice's
    guide as the network input, not the previous slice's."""
    import napari_dip.engine.plane as plane_module

    _, noisy = noisy_stack
    guides = np.stack([np.full(noisy.shape[1:], value, np.float32) for value in (0.2, 0.5, 0.9)])
    guides[:, 0, :2] = 0.0, 1.0  # each spans [0, 1], which a guide's scaling then keeps
    inputs = []
    real_fit = plane_module.fit

    def recording_fit(observation, config, **kwargs):
        inputs.append(observation.guide if kwargs.get("code") is None else kwargs["code"])
        return real_fit(observation, config, **kwargs)

    monkeypatch.setattr(plane_module, "fit", recording_fit)
    for batch in (1, 2):
        inputs.clear()
        restore_stack(noisy, guide=guides, slice_batch=batch, **tiny())
        fed = [float(value) for code in inputs for value in code.mean(dim=(1, 2, 3))]
        assert fed == pytest.approx([0.2, 0.5, 0.9], abs=0.05), batch


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_slices_in_one_batch_on_cuda_with_mixed_precision(noisy_stack):
    clean, noisy = noisy_stack
    result = restore_stack(noisy, preset="quick", max_iterations=100, slice_batch=3,
                           device="cuda", precision="auto")
    for k in range(3):
        assert psnr(result[k], clean[k]) > psnr(noisy[k], clean[k]) + 3.0, k


def test_every_run_of_a_warm_started_slice_continues_its_own_fit(noisy_stack):
    clean, noisy = noisy_stack
    settings = dict(preset="quick", max_iterations=120, report_every=120)
    one = restore_stack(noisy[:2], **settings)
    two = restore_stack(noisy[:2], n_runs=2, **settings)
    # slice 1 runs a quarter of slice 0's schedule: each run from its own fitted weights, so
    # averaging two runs is no worse than one (a fresh run on that schedule would be far worse)
    assert psnr(two[1], clean[1]) > psnr(one[1], clean[1]) - 0.3


def test_a_stack_mask_is_checked_whole_before_any_slice_is_fitted(noisy_stack):
    _, noisy = noisy_stack
    mask = np.zeros(noisy.shape, bool)
    mask[:, 10:20, 10:20] = True
    damaged = noisy.copy()
    damaged[mask] = np.nan  # missing pixels may hold anything

    full = mask.copy()
    full[2] = True  # the last slice has nothing left to fit
    with pytest.raises(ValueError, match=r"every pixel of slice\(s\) \[\(2,\)\]"):
        iter_restore_stack(damaged, task="inpaint", mask=full, **tiny())  # at the call
    moved = mask.copy()
    moved[2] = False
    moved[2, 30:34, 30:34] = True  # slice 2's NaN now lies outside its mask
    with pytest.raises(ValueError, match="NaN or infinite value.s. outside the mask"):
        iter_restore_stack(damaged, task="inpaint", mask=moved, **tiny())
    assert np.isfinite(restore_stack(damaged, task="inpaint", mask=mask, **tiny())).all()


def test_a_shared_multichannel_guide_is_not_taken_for_one_guide_per_slice(rng):
    stack = rng.random((16, 16, 16)).astype(np.float32)  # as many slices as the guide has rows
    guide = rng.random((16, 16, 2)).astype(np.float32)
    result = restore_stack(stack, guide=guide, **tiny(max_iterations=2))
    assert result.shape == stack.shape


BAYESIAN_TINY = dict(preset="bayesian", max_iterations=40, burn_in=20, sample_every=5,
                     scales=3, channels_down=16, channels_up=16, report_every=40)


def test_a_bayesian_stack_returns_every_slices_uncertainty(noisy_stack):
    _, noisy = noisy_stack
    stack = noisy[:, :32, :32]
    mask = np.zeros((32, 32), bool)
    mask[8:20, 8:20] = True
    steps = list(iter_restore_stack(stack, task="inpaint", mask=mask, **BAYESIAN_TINY))
    last_of_slice = {s.index: s.snapshot for s in steps}
    result, uncertainty = restore_stack(stack, task="inpaint", mask=mask,
                                        return_uncertainty=True, **BAYESIAN_TINY)
    np.testing.assert_array_equal(result, steps[-1].result)
    assert uncertainty.shape == stack.shape and uncertainty.dtype == np.float32
    assert (uncertainty >= 0).all()
    for k in range(3):  # each slice's map is its own fit's, in its place
        np.testing.assert_array_equal(uncertainty[k], last_of_slice[(k,)].uncertainty)
        assert not np.array_equal(uncertainty[k], uncertainty[(k + 1) % 3])


def test_a_stack_with_channels_gets_its_uncertainty_in_its_layout(rng):
    image = rng.random((2, 3, 32, 32)).astype(np.float32)  # Z, C, Y, X
    result, uncertainty = restore_stack(image, channel_axis=1, return_uncertainty=True,
                                        **BAYESIAN_TINY)
    assert uncertainty.shape == result.shape == image.shape
    assert (uncertainty[:, :, 4:-4, 4:-4] > 0).all()  # every slice and channel has a map


def test_two_passes_pool_a_slices_posteriors(noisy_stack):
    _, noisy = noisy_stack
    steps = list(iter_restore_stack(noisy[:, :32, :32], stack_passes=2,
                                    warm_start_fraction=0.5, **BAYESIAN_TINY))
    forward = {s.index: s.snapshot for s in steps if s.pass_number == 0}
    backward = {s.index: s.snapshot for s in steps if s.pass_number == 1}
    uncertainty = steps[-1].uncertainty
    for index in backward:  # slices 0 and 1; the last slice is visited once
        means = np.stack([forward[index].estimate, backward[index].estimate]).astype(np.float64)
        stds = np.stack([forward[index].uncertainty, backward[index].uncertainty])
        pooled = np.sqrt(np.maximum((stds ** 2 + means ** 2).mean(0) - means.mean(0) ** 2, 0))
        np.testing.assert_allclose(uncertainty[index], pooled, atol=1e-5)
        assert not np.allclose(uncertainty[index], backward[index].uncertainty)
    np.testing.assert_array_equal(uncertainty[2], forward[(2,)].uncertainty)


def _two_passes_on_whole_planes(first, second):
    """A reference for _two_passes: the two passes pooled as whole float64 planes."""
    means = [torch.from_numpy(first[0].astype(np.float64)),
             torch.from_numpy(second[0].astype(np.float64))]
    stds = [None if std is None else torch.from_numpy(std.astype(np.float64))
            for std in (first[1], second[1])]
    mean, std = _pool(means, stds)
    mean = mean.numpy()
    if first[0].dtype.kind in "ui":
        mean = np.rint(mean)
    return mean.astype(first[0].dtype), None if std is None else std.numpy().astype(np.float32)


@pytest.mark.parametrize("dtype, low, high", [
    (np.uint16, 0, 65535), (np.int64, -4e18, 4e18), (np.float32, -3.0, 1e4),
    (np.float64, -1e300, 1e300)])
def test_two_passes_pool_block_by_block_exactly_as_on_whole_planes(dtype, low, high, rng,
                                                                    monkeypatch):
    monkeypatch.setattr(scaling_module, "BLOCK_ELEMENTS", 2 * 9 * 2)  # a block of two rows
    first, second = ((rng.random((11, 9, 2)) * (high - low) + low).astype(dtype)
                     for _ in range(2))
    stds = [(rng.random((11, 9, 2)) * 100).astype(np.float32) for _ in range(2)]
    for first_std, second_std in ((None, None), (stds[0], None), tuple(stds)):
        estimate, std = _two_passes((first, first_std), (second, second_std))
        expected, expected_std = _two_passes_on_whole_planes((first, first_std),
                                                             (second, second_std))
        assert estimate.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(estimate, expected)
        if expected_std is None:
            assert std is None
        else:
            assert std.dtype == np.float32
            np.testing.assert_array_equal(std, expected_std)


def test_no_stack_uncertainty_without_posterior_samples(noisy_stack):
    _, noisy = noisy_stack
    _, uncertainty = restore_stack(noisy[:2], return_uncertainty=True, **tiny(max_iterations=3))
    assert uncertainty is None


def test_slices_fitted_together_each_get_their_uncertainty(noisy_stack):
    _, noisy = noisy_stack
    steps = list(iter_restore_stack(noisy[:, :32, :32], slice_batch=3, **BAYESIAN_TINY))
    last = steps[-1]
    for index, snapshot in zip(last.group, last.group_snapshots):
        np.testing.assert_array_equal(last.uncertainty[index], snapshot.uncertainty)
    assert not np.array_equal(last.uncertainty[0], last.uncertainty[1])


@pytest.mark.parametrize("warm_start_fraction", [0.0, 0.25])
def test_a_stack_lets_go_of_fits_no_later_fit_continues(noisy_stack, monkeypatch,
                                                        warm_start_fraction):
    """A large tiled plane has a fit per tile: a fit that no later one continues (every fit
    without warm start; the last slice's with it) is freed when its tile is done, not held to
    the end of the run (at 2048x2048, 64 tiles held about 0.75 GiB)."""
    import gc
    import weakref

    import napari_dip.engine.plane as plane_module

    networks = []  # a weak reference to each fit's network, in the order the fits ran
    real_fit = plane_module.fit

    def watched(*args, **kwargs):
        for step in real_fit(*args, **kwargs):
            if not any(ref() is step.network for ref in networks):
                networks.append(weakref.ref(step.network))
            yield step

    monkeypatch.setattr(plane_module, "fit", watched)
    _, noisy = noisy_stack
    settings = tiny(max_iterations=3, scales=3)
    settings.update(tile_size=48, tile_overlap=16, tile_above=0, report_every=1,
                    warm_start_fraction=warm_start_fraction)
    alive = None
    for step in iter_restore_stack(noisy[:2], **settings):
        if step.index == (1,) and step.snapshot.tile == step.snapshot.n_tiles - 1:
            gc.collect()  # while the last tile of the last slice is fitted
            alive = sum(ref() is not None for ref in networks)
    n_tiles = step.snapshot.n_tiles
    assert n_tiles > 2
    assert len(networks) == (2 * n_tiles if warm_start_fraction == 0 else n_tiles)
    assert alive == 1  # its own
