"""A run's history: kept only when asked, per image plane and per slice, ending at the result."""

import numpy as np
import pytest

from napari_dip import iter_restore, iter_restore_stack, restore, restore_stack
from napari_dip.presets import get_config

from .conftest import tiny

STOPPING = dict(stopping="variance", variance_window=5, patience=15, max_iterations=2000,
                report_every=5)


def test_history_is_kept_only_when_asked(noisy_cell):
    _, noisy = noisy_cell
    assert all(snapshot.history is None
               for snapshot in iter_restore(noisy, **tiny(max_iterations=10)))
    assert all(not step.histories for step in iter_restore_stack(noisy[None], **tiny()))
    with pytest.raises(ValueError, match="history to 2 or more"):
        get_config("quick", history=1)


def test_history_of_a_run_without_rule_ends_at_its_result(noisy_cell):
    _, noisy = noisy_cell
    image = (noisy * 60000).astype(np.uint16)
    result, checkpoints = restore(image, return_history=True, **tiny(max_iterations=60))
    iterations = [point.iteration for point in checkpoints]
    assert iterations == sorted(iterations) and iterations[0] == 5 and iterations[-1] == 60
    assert checkpoints[-1].note == "last"
    np.testing.assert_array_equal(checkpoints[-1].estimate, result)
    assert all(point.estimate.shape == image.shape and point.estimate.dtype == np.uint16
               for point in checkpoints)
    assert not np.array_equal(checkpoints[0].estimate, result)  # the run's start, not its end


def test_history_pins_the_automatic_stop_and_shows_the_run_beyond_it(noisy_cell):
    _, noisy = noisy_cell
    snapshots = list(iter_restore(noisy, preset="quick", history=16, **STOPPING))
    last = snapshots[-1]
    assert last.stopped and last.history is snapshots[0].history
    notes = {point.note: point for point in last.history.checkpoints if point.note}
    assert set(notes) == {"automatic stop", "last"}
    assert notes["automatic stop"].iteration == last.best_iteration
    assert notes["last"].iteration == last.iteration
    np.testing.assert_array_equal(notes["automatic stop"].estimate, last.estimate)
    # past the best point, a checkpoint holds the run as it went on, not the frozen best
    assert not np.array_equal(notes["last"].estimate, last.estimate)


def test_history_with_uncertainty_comes_last_in_the_returned_tuple(noisy_cell):
    _, noisy = noisy_cell
    result, uncertainty, checkpoints = restore(noisy, return_uncertainty=True,
                                               return_history=True, **tiny(max_iterations=10))
    assert uncertainty is None and isinstance(checkpoints, list)
    np.testing.assert_array_equal(checkpoints[-1].estimate, result)


def test_history_of_a_tiled_plane_keeps_the_whole_mosaic(noisy_cell):
    _, noisy = noisy_cell
    *_, last = iter_restore(noisy, history=64, scales=3, tile_size=32, tile_overlap=8,
                            **tiny(max_iterations=10))
    checkpoints = last.history.checkpoints
    iterations = [point.iteration for point in checkpoints]
    assert last.n_tiles > 1 and iterations[-1] == last.n_tiles * 10  # every tile's steps
    assert iterations == sorted(iterations)
    assert all(point.estimate.shape == noisy.shape for point in checkpoints)
    np.testing.assert_array_equal(checkpoints[-1].estimate, last.estimate)


@pytest.mark.parametrize("settings", [{}, {"stack_passes": 2}, {"slice_batch": 2}],
                         ids=["one pass", "two passes", "slices in one batch"])
def test_history_of_a_stack_has_one_per_slice_ending_at_its_result(noisy_cell, settings):
    _, noisy = noisy_cell
    stack = np.stack([noisy, noisy[::-1]])
    result, histories = restore_stack(stack, return_history=True, **settings,
                                      **tiny(max_iterations=20))
    assert sorted(histories) == [(0,), (1,)]
    for (z,), checkpoints in histories.items():
        assert checkpoints[-1].note == "last"
        np.testing.assert_allclose(checkpoints[-1].estimate, result[z], atol=1e-6)


def test_history_of_a_long_run_stays_within_its_memory_budget(noisy_cell):
    _, noisy = noisy_cell
    budget_mb = 5 * noisy.nbytes / 2 ** 20  # room for five estimates
    snapshots = iter_restore(noisy, history=32, history_budget_mb=budget_mb,
                             **tiny(max_iterations=200))
    peak = max(snapshot.history.nbytes for snapshot in snapshots)
    assert 3 * noisy.nbytes <= peak <= budget_mb * 2 ** 20
