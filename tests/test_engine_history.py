"""The bounded history of a fit's estimates: spacing, pins, memory, and what it gives back."""


import numpy as np
import pytest

from napari_dip.engine.history import History


def _estimate(value, shape=(2, 2), dtype=np.float32):
    return lambda: np.full(shape, value, dtype)


def _long_run(history, last=10_000, every=10, criterion=lambda iteration: None, on_offer=None):
    """Offers a fake fit's snapshots; returns every checkpoint the history ever kept."""
    kept = []
    for iteration in range(every, last + 1, every):
        point = history.offer(iteration, iteration * 0.01, 1.0 / iteration, criterion(iteration),
                              _estimate(iteration))
        if point is not None:
            kept.append(point)
        if on_offer is not None:
            on_offer(iteration)
    return kept


def _u_shaped(iteration):
    """A criterion that falls until iteration 2340, then rises (as a stopping rule's does)."""
    return (iteration - 2340) ** 2 / 1e6


@pytest.mark.parametrize("criterion", [lambda iteration: None, _u_shaped],
                         ids=["no criterion", "u-shaped criterion"])
def test_history_of_a_long_run_is_bounded_and_spread_from_start_to_end(criterion):
    history = History(max_checkpoints=32)
    sizes = []
    _long_run(history, criterion=criterion, on_offer=lambda _: sizes.append(len(history)))

    assert max(sizes) <= 32
    iterations = [point.iteration for point in history.checkpoints]
    assert len(iterations) >= 16, "thinning should leave at least half the places used"
    gaps = np.diff(iterations)
    mean_gap = (iterations[-1] - iterations[0]) / (len(iterations) - 1)
    assert iterations[0] == 10
    assert iterations[-1] >= 10_000 - 2 * mean_gap
    assert gaps.max() <= 2 * mean_gap
    # the estimates are the ones offered at those iterations, in order
    stack, stacked_iterations = history.to_stack()
    assert stacked_iterations == iterations
    assert np.array_equal(stack[:, 0, 0], np.array(iterations, np.float32))


def test_history_marked_best_survives_thinning():
    history = History(max_checkpoints=8)
    stop = None
    for iteration in range(10, 10_001, 10):
        point = history.offer(iteration, 0.0, 0.0, None, _estimate(iteration))
        if iteration >= 2000 and stop is None and point is not None:
            stop = history.mark(iteration, "automatic stop")

    pinned = [point for point in history.checkpoints if point.note is not None]
    assert [(point.iteration, point.note) for point in pinned] == [(stop.iteration,
                                                                     "automatic stop")]
    assert pinned[0].estimate[0, 0] == stop.iteration
    assert len(history) <= 8


def test_history_keeps_an_earlier_point_offered_with_a_note_through_later_thinning():
    history = History(max_checkpoints=6)
    _long_run(history, last=2000)
    # the stopping rule's best point, between two snapshots, offered after the fact
    history.offer(1234, 12.3, 0.1, 0.001, _estimate(-1), note="automatic stop")
    for iteration in range(2010, 8001, 10):
        history.offer(iteration, 0.0, 0.0, None, _estimate(iteration))

    point = history.nearest(1234)
    assert (point.iteration, point.note, point.estimate[0, 0]) == (1234, "automatic stop", -1)
    assert len(history) <= 6


def test_history_never_drops_the_kept_checkpoint_with_the_lowest_criterion():
    history = History(max_checkpoints=8)
    ever_kept = _long_run(history, criterion=_u_shaped)

    best_ever = min(ever_kept, key=lambda point: point.criterion)
    best_now = min(history.checkpoints, key=lambda point: point.criterion)
    assert best_now.iteration == best_ever.iteration
    assert best_now.criterion == best_ever.criterion


def test_history_memory_budget_is_never_exceeded():
    megabyte = 1_000_000
    history = History(memory_budget_bytes=5 * megabyte)
    held_during_copy = []

    def estimate():
        held_during_copy.append(history.nbytes)
        return np.zeros(megabyte // 4, np.float32)

    held_after = []
    for iteration in range(1, 101):
        history.offer(iteration, 0.0, 0.0, None, estimate)
        held_after.append(history.nbytes)

    assert max(held_after) <= 5 * megabyte
    # room is made before the copy: the history's estimates and the new one fit the budget
    assert max(held_during_copy) + megabyte <= 5 * megabyte
    assert 2 <= len(history) <= 5
    assert history.checkpoints[0].iteration == 1 and history.checkpoints[-1].iteration >= 50


def test_history_replacing_a_checkpoint_with_a_noted_one_stays_within_the_budget():
    history = History(memory_budget_bytes=2000)
    held_during_copy = []

    def estimate():
        held_during_copy.append(history.nbytes)
        return np.zeros(250, np.float32)  # 1000 bytes

    history.offer(1, 0.0, 0.0, None, estimate)
    history.offer(2, 0.0, 0.0, None, estimate)
    history.offer(2, 0.0, 0.0, None, estimate, note="automatic stop")

    assert max(held_during_copy) + 1000 <= 2000
    assert [(point.iteration, point.note) for point in history.checkpoints] == [
        (1, None), (2, "automatic stop")]


def test_history_estimate_larger_than_the_budget_is_not_kept():
    history = History(memory_budget_bytes=1000)

    assert history.offer(1, 0.0, 0.0, None, _estimate(1.0, shape=(1000,))) is None
    assert len(history) == 0 and history.nbytes == 0
    with pytest.raises(ValueError, match="offer the fit's snapshots first"):
        history.to_stack()


def test_history_estimate_fn_is_called_only_for_kept_offers():
    history = History(max_checkpoints=32)
    calls = []

    def estimate():
        calls.append(1)
        return np.zeros((2, 2), np.float32)

    kept = [history.offer(i, 0.0, 0.0, None, estimate) for i in range(1, 10_001)]

    assert len(calls) == sum(point is not None for point in kept)
    assert len(calls) < 200, "a long run copies its estimate a few times per doubling only"


def test_history_to_stack_adds_a_leading_iteration_axis_and_keeps_the_dtype():
    history = History()
    for iteration in (5, 10, 15):
        history.offer(iteration, 0.0, 0.0, None,
                      _estimate(iteration, shape=(3, 4, 6), dtype=np.uint16))

    stack, iterations = history.to_stack()

    assert stack.shape == (3, 3, 4, 6) and stack.dtype == np.uint16
    assert iterations == [5, 10, 15]
    assert np.array_equal(stack[1], np.full((3, 4, 6), 10, np.uint16))


def test_history_to_stack_refuses_estimates_of_different_shapes():
    history = History()
    history.offer(1, 0.0, 0.0, None, _estimate(1, shape=(2, 2)))
    history.offer(2, 0.0, 0.0, None, _estimate(2, shape=(3, 3)))

    with pytest.raises(ValueError, match="one History per image"):
        history.to_stack()


def test_history_nearest_gives_the_closest_kept_checkpoint():
    history = History()
    for iteration in (100, 200, 300):
        history.offer(iteration, iteration / 10, 0.0, None, _estimate(iteration))

    assert history.nearest(0).iteration == 100
    assert history.nearest(240).iteration == 200
    assert history.nearest(250).iteration == 200  # a tie goes to the earlier one
    assert history.nearest(10_000).estimate[0, 0] == 300
    with pytest.raises(ValueError, match="no checkpoint yet"):
        History().nearest(5)


@pytest.mark.parametrize("settings, fix", [
    (dict(max_checkpoints=1), "pass 2 or more"),
    (dict(max_checkpoints=0), "pass 2 or more"),
    (dict(max_checkpoints=2.5), "pass 2 or more"),
    (dict(memory_budget_bytes=0), "pass for example"),
    (dict(memory_budget_bytes=-5), "pass for example"),
])
def test_history_invalid_settings_raise_and_name_the_fix(settings, fix):
    with pytest.raises(ValueError, match=fix):
        History(**settings)


def test_history_misuse_raises_and_names_the_fix():
    history = History()
    history.offer(10, 0.0, 0.0, None, _estimate(10))

    with pytest.raises(ValueError, match="one History per fit"):
        history.offer(5, 0.0, 0.0, None, _estimate(5))
    with pytest.raises(ValueError, match="offer that iteration with note="):
        history.mark(7, "automatic stop")
    with pytest.raises(ValueError, match="non-empty"):
        history.mark(10, "")
    with pytest.raises(TypeError, match="NumPy array"):
        history.offer(20, 0.0, 0.0, None, lambda: [[1.0]])


def test_history_keeps_the_estimate_as_given():
    history = History()
    estimate = np.arange(6, dtype=np.float64).reshape(2, 3) * 1000.0

    point = history.offer(1, 0.5, 0.25, 0.125, lambda: estimate)

    assert point.estimate is estimate and point.estimate.dtype == np.float64
    assert (point.iteration, point.elapsed, point.loss, point.criterion) == (1, 0.5, 0.25, 0.125)
