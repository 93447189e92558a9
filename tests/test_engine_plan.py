"""plan(): every check before any fit, and a schedule whose step count is the run's."""

import numpy as np
import pytest

from napari_dip.engine import plane as plane_module
from napari_dip.engine.plan import Visit, expected_fit_length, plan, run
from napari_dip.engine.stack import StackSnapshot
from napari_dip.presets import get_config
from napari_dip.spec import RunSpec

TINY = dict(scales=2, report_every=2)


def _steps_taken(snapshots) -> tuple[int, list]:
    """Every fit's last iteration, summed (a fit is a slice's tile's run, in its pass), and
    the snapshots."""
    last, seen = {}, []
    for snapshot in snapshots:
        seen.append(snapshot)
        fit = snapshot.snapshot if isinstance(snapshot, StackSnapshot) else snapshot
        where = (snapshot.pass_number, snapshot.slice_number) \
            if isinstance(snapshot, StackSnapshot) else ()
        last[where, fit.tile, fit.run] = fit.iteration
    return sum(last.values()), seen


def _fixed_schedule_progress(planned) -> list[tuple[int, int]]:
    """Run ``planned`` (a schedule without stopping rules) and check that its planned total is
    the steps it took, and that the step counter knew that total from the first snapshot;
    the counter's ``(done, total)`` per snapshot."""
    taken, snapshots = _steps_taken(run(planned))
    assert taken == planned.total_steps
    counter = planned.step_counter()
    progress = [counter.update(s) for s in snapshots]
    assert progress[-1] == (taken, taken)
    assert all(total == taken for _, total in progress)  # a fixed schedule is known at once
    return progress


def test_total_steps_are_the_steps_a_warm_started_stack_takes(rng):
    stack = rng.random((3, 16, 16)).astype(np.float32)
    spec = RunSpec(preset="quick", overrides=dict(max_iterations=12, warm_start_fraction=0.5,
                                                  **TINY))
    planned = plan(stack, spec)
    assert [visit.group for visit in planned.visits] == [((0,),), ((1,),), ((2,),)]
    assert planned.total_steps == 12 + 2 * 6
    taken, snapshots = _steps_taken(run(planned))
    assert taken == planned.total_steps
    counter = planned.step_counter()
    assert [counter.update(s) for s in snapshots][-1] == (taken, taken)


def test_total_steps_are_the_steps_a_tiled_plane_takes_in_several_runs(rng):
    image = rng.random((48, 48)).astype(np.float32)
    spec = RunSpec(preset="quick", overrides=dict(max_iterations=4, tile_size=32, tile_overlap=8,
                                                  tile_above=0, n_runs=2, **TINY))
    planned = plan(image, spec, stack=False)
    assert len(planned.tiles) == 4 and planned.total_steps == 4 * 2 * 4
    progress = _fixed_schedule_progress(planned)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


@pytest.mark.parametrize("n_runs", [1, 2])
def test_total_steps_are_the_steps_of_tiles_that_continue_their_neighbour(rng, n_runs):
    """With tile_warm_start the first slice's later tiles run their share of the first tile's
    steps, and the next slice's tiles the warm-start share of the first tile's: the planned
    total and the counter's last total are the steps the run took."""
    stack = rng.random((2, 48, 48)).astype(np.float32)
    spec = RunSpec(preset="quick", overrides=dict(
        max_iterations=8, tile_size=32, tile_overlap=8, tile_above=0, n_runs=n_runs,
        tile_warm_start=0.5, warm_start_fraction=0.25, **TINY))
    planned = plan(stack, spec)
    assert len(planned.tiles) == 4
    assert planned.total_steps == n_runs * (8 + 3 * 4) + 4 * n_runs * 2
    _fixed_schedule_progress(planned)


def test_the_schedule_has_the_backward_pass_and_the_slice_batches(rng):
    stack = rng.random((3, 16, 16)).astype(np.float32)
    two_passes = plan(stack, RunSpec(preset="quick", overrides=dict(stack_passes=2)))
    assert two_passes.visits[3:] == [Visit(1, ((1,),), 1), Visit(1, ((0,),), 2)]
    batches = plan(stack, RunSpec(preset="quick", overrides=dict(slice_batch=2)))
    assert batches.visits == [Visit(0, ((0,), (1,)), 1), Visit(0, ((2,),), 2)]


def test_the_step_total_follows_a_first_slice_that_stopped_early(rng):
    stack = rng.random((2, 16, 16)).astype(np.float32)
    planned = plan(stack, RunSpec(preset="quick", overrides=dict(max_iterations=40, **TINY)))
    counter = planned.step_counter()
    first = planned.config.max_iterations
    stopped = StackSnapshot(index=(0,), slice_number=0, n_slices=2, result=None, done=False,
                            snapshot=plane_module.Snapshot(
                                iteration=20, max_iterations=first, loss=0.0, image=None,
                                average=None, estimate=None, elapsed=1.0, device="cpu",
                                backtracks=0, done=False, config=planned.config, stopped=True))
    assert counter.update(stopped) == (20, 20 + planned.later_budget())
    second = StackSnapshot(index=(1,), slice_number=1, n_slices=2, result=None, done=False,
                           snapshot=plane_module.Snapshot(
                               iteration=2, max_iterations=planned.later_budget(20), loss=0.0,
                               image=None, average=None, estimate=None, elapsed=1.0,
                               device="cpu", backtracks=0, done=False, config=planned.config))
    assert counter.update(second) == (22, 20 + planned.later_budget(20))


def _stack_snapshot(config, iteration, *, best=None, done=False, stopped=False,
                    max_iterations=None, slice_number=0, n_slices=1) -> StackSnapshot:
    """A stack snapshot as the run reports it, with no images (the counter reads none)."""
    fit = plane_module.Snapshot(
        iteration=iteration, max_iterations=max_iterations or config.max_iterations, loss=0.0,
        image=None, average=None, estimate=None, elapsed=1.0, device="cpu", backtracks=0,
        done=done, config=config, best_iteration=best, stopped=stopped)
    return StackSnapshot(index=(slice_number,), slice_number=slice_number, n_slices=n_slices,
                         result=None, done=done and slice_number + 1 == n_slices, snapshot=fit)


def test_an_automatic_stop_is_expected_patience_steps_after_the_best_point():
    config = get_config("quick", "denoise", None, stopping="variance", patience=500,
                        max_iterations=6000)
    assert expected_fit_length(config, 400, 380) == 880
    assert expected_fit_length(config, 50, None) == config.variance_window + 500
    assert expected_fit_length(config, 5900, 5800) == 6000  # never past the cap
    assert expected_fit_length(config.replace(stopping="none"), 400, 380) == 6000


def test_the_progress_of_a_fit_with_an_automatic_stop_counts_toward_the_stop_not_the_cap(rng):
    """Iteration 400 of a 6000-step cap, best point at 380, patience 500: 880 steps expected,
    not 6000."""
    image = rng.random((16, 16)).astype(np.float32)
    planned = plan(image, RunSpec(preset="quick", overrides=dict(
        stopping="variance", patience=500, max_iterations=6000)))
    counter = planned.step_counter()
    done, total = counter.update(_stack_snapshot(planned.config, 400, best=380))
    expected = counter.fit_length
    assert (done, total, expected) == (400, 880, 880)


def test_later_slices_are_expected_to_run_their_warm_started_share_of_the_first(rng):
    stack = rng.random((3, 16, 16)).astype(np.float32)
    planned = plan(stack, RunSpec(preset="quick", overrides=dict(max_iterations=40,
                                                                 warm_start_fraction=0.5)))
    config = planned.config
    counter = planned.step_counter()
    first = counter.update(_stack_snapshot(config, 40, done=True, n_slices=3))
    warm = config.replace(max_iterations=20)
    second = counter.update(_stack_snapshot(warm, 10, slice_number=1, n_slices=3))
    assert first[:2] == (40, 80) and second[:2] == (50, 80)


def test_a_stack_with_an_automatic_stop_is_counted_toward_the_stops_not_the_cap(rng):
    """Two slices on a 100 000-step cap with a variance rule: every report expects far fewer
    steps than the cap, never fewer than are done, and the last one counts what was taken."""
    stack = rng.random((2, 16, 16)).astype(np.float32)
    planned = plan(stack, RunSpec(preset="quick", overrides=dict(
        max_iterations=100_000, stopping="variance", variance_window=5, patience=10, **TINY)))
    taken, snapshots = _steps_taken(run(planned))
    counter = planned.step_counter()
    progress = [counter.update(s) for s in snapshots]
    assert progress[-1] == (taken, taken) and taken < 1000
    assert all(done <= total < 2000 for done, total in progress)


@pytest.fixture
def no_fit(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a fit started")

    monkeypatch.setattr(plane_module, "fit", refuse)


@pytest.mark.parametrize("image, mask, guide, overrides, stack, message", [
    (np.zeros((16, 16), bool), None, None, {}, False, "image is boolean"),
    (np.zeros((16, 16)), None, np.zeros((5, 5)), {}, False, "guide has shape"),
    (np.zeros((3, 16, 16)), None, None, {}, False, "channel_axis.*restore_stack"),
    (np.zeros((2, 16, 16)), np.stack([np.zeros((16, 16)), np.ones((16, 16))]), None, {}, True,
     r"every pixel of slice\(s\) \[\(1,\)\]"),
    (np.arange(3 * 64 * 64, dtype=np.float32).reshape(3, 64, 64),
     np.pad(np.ones((3, 40, 40)), ((0, 0), (0, 24), (0, 24))) * [[[0]], [[0]], [[1]]], None,
     dict(tile_size=32, tile_overlap=8, tile_above=0, scales=2), True,
     r"slice \(2,\): tile 1 of 9 \(rows 0:32, columns 0:32\) lies wholly in the mask"),
    (np.zeros((3, 16, 16)), None, np.zeros((16, 16)), dict(slice_batch=2), True,
     "one guide for every slice"),
])
def test_invalid_input_is_refused_by_the_plan_before_any_fit(no_fit, image, mask, guide,
                                                              overrides, stack, message):
    spec = RunSpec(task="denoise" if mask is None else "inpaint", preset="quick",
                   overrides=overrides)
    with pytest.raises(ValueError, match=message):
        plan(image, spec, mask=mask, guide=guide, stack=stack)


def test_intensity_headroom_widens_the_scaling_above_the_images_range_for_planes_and_stacks():
    image = np.linspace(10.0, 50.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    spec = RunSpec(preset="quick", overrides=dict(intensity_headroom=1.5))
    own = plan(image, RunSpec(preset="quick"), stack=False).plane.scaling.range
    widened = plan(image, spec, stack=False).plane.scaling.range
    assert widened == pytest.approx((own[0], own[0] + 1.5 * (own[1] - own[0])))
    assert plan(image[None], spec).stack.scaling.range == pytest.approx(widened)
    # a range the user gives is kept as given: a run record repeats its run
    given = RunSpec(preset="quick", overrides=dict(intensity_headroom=1.5),
                    intensity_range=(0.0, 60.0))
    assert plan(image, given, stack=False).plane.scaling.range == (0.0, 60.0)
