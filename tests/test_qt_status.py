"""What the widget says about a run, without a display (the steps done and expected come from
the engine's plan: tests/test_engine_plan.py)."""

from types import SimpleNamespace

from napari_dip._qt.status import (Progress, RunStatus, progress_text, readable_device,
                                   stopped_early_text, stopping_text)
from napari_dip.presets import get_config


def snapshot(config, iteration, *, best=None, done=False, stopped=False, tile=0, n_tiles=1,
             run=0):
    return SimpleNamespace(config=config, iteration=iteration, best_iteration=best, done=done,
                           stopped=stopped, tile=tile, n_tiles=n_tiles, run=run,
                           max_iterations=config.max_iterations)


def test_the_progress_of_a_fit_with_an_automatic_stop_reads_toward_the_stop_not_the_cap():
    """Iteration 400 of a 6000-step cap, best point at 380, patience 500 (the plan's counter
    expects 880 steps: tests/test_engine_plan.py): the bar is near half way and says ~880,
    not 400/6000."""
    progress = Progress(slice_number=0, n_slices=1, iteration=400, max_iterations=6000, tile=0,
                        n_tiles=1, steps_done=400, steps_total=880, loss=0.1,
                        criterion=None, seconds_left=30.0, device="CPU, 1 thread, float32",
                        stopping="variance", best_iteration=380, patience=500,
                        expected_iterations=880)
    assert progress_text(progress) == "slice 1/1 · iteration 400/~880 · ~30 s left"
    assert stopping_text(progress) == (
        "Automatic stop (variance rule): best at iteration 380, 20 steps since; stops after "
        "500 without a better one (at iteration 880 at the earliest, 6000 at most).")
    status = RunStatus()
    status.show(progress)
    assert abs(status.fraction - 400 / 880) < 1e-9 and status.message.startswith("Automatic")


def test_a_refused_run_clears_the_last_runs_outcome():
    status = RunStatus()
    status.stopped("stopped at slice 2/3, iteration 17")
    seen = []
    status.events.progress.connect(seen.append)
    status.refused("Deep Image Prior cannot run: the mask does not fit")
    assert "stopped" not in status.progress and status.failed
    assert status.message.endswith("the mask does not fit") and seen == [status.progress]


def test_the_device_reads_as_words():
    assert readable_device("cpu (1 threads)", "float32") == "CPU, 1 thread, float32"
    assert readable_device("cpu (4 threads)", "float32") == "CPU, 4 threads, float32"
    assert readable_device("cuda:0 (NVIDIA H100)", "bfloat16") == \
        "CUDA:0, NVIDIA H100, bfloat16"


def test_a_fit_ended_by_its_stopping_rule_says_where_its_result_comes_from():
    config = get_config("quick", "denoise", None, stopping="variance")
    assert stopped_early_text(snapshot(config, 900, best=400, done=True)) == ""
    assert stopped_early_text(snapshot(config, 900, best=400, done=True, stopped=True)) == (
        "The automatic stop ended the last fit at iteration 900; its result is the estimate "
        "at its best point, iteration 400.")
