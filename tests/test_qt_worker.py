"""The widget's worker, run as a plain generator: no display, no viewer."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np

from napari_dip._qt.output_layers import result_metadata
from napari_dip._qt.worker import RunInput, RunState, input_as_output, restoration_steps
from napari_dip.engine.layout import ImageAxes, plan_run
from napari_dip.spec import RunSpec


def test_importing_the_widget_module_does_not_import_torch():
    code = "import sys, napari_dip._qt.main_widget; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_status_and_worker_modules_import_no_qt():
    code = ("import sys, napari_dip._qt.status, napari_dip._qt.worker; "
            "print(sorted(m for m in ('qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'napari', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def request_for(image, *, stack_axes=None, **overrides):
    axes = ImageAxes.of(image.ndim)
    plan = plan_run(axes, image.shape, (0,) * image.ndim, stack_axes=stack_axes)
    spec = RunSpec(task="denoise", preset="quick", overrides=overrides, seed=0, device="cpu")
    return RunInput(spec=spec, data=image, region=plan)


def test_the_worker_progress_only_moves_forward_and_names_runs_and_tiles(noisy_cell):
    """With two runs per tile and two tiles, the progress (steps done of a total) climbs
    steadily to the end and the reports say which tile and run is working."""
    _, noisy = noisy_cell
    image = noisy[:40]  # one tile high, two wide
    request = request_for(image, max_iterations=6, report_every=2, n_runs=2, scales=3,
                          tile_size=40, tile_above=0, tile_overlap=8)
    state = RunState()
    reports = list(restoration_steps(request, state))
    assert state.error is None and state.last.done
    done = [r.steps_done for r in reports]
    assert done == sorted(done) and done[-1] == reports[-1].steps_total == 2 * 2 * 6
    assert all(r.steps_total == reports[0].steps_total for r in reports)
    assert {(r.tile, r.run) for r in reports} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(r.n_runs == 2 and r.n_tiles == 2 for r in reports)


def test_a_warm_started_stack_is_counted_to_its_true_length_from_the_first_report():
    """Three slices, the later two warm-started on half the first's steps: every report
    expects the 40 + 20 + 20 steps that the run takes, and the first one carries the input
    for the preview (a whole-stack preview shows it until a slice is fitted)."""
    image = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    request = request_for(image, stack_axes=(0,), max_iterations=40, report_every=10,
                          warm_start_fraction=0.5, scales=3)
    state = RunState()
    reports = list(restoration_steps(request, state))
    assert state.error is None and state.last.done
    assert [r.steps_total for r in reports] == [80] * len(reports)
    assert reports[-1].steps_done == 80
    np.testing.assert_array_equal(reports[0].background, image)
    assert all(r.background is None for r in reports[1:])


def test_a_fit_with_an_automatic_stop_is_expected_to_end_near_its_best_point():
    """A variance rule with patience 30 on a 100 000-step cap: the reports expect the fit to
    end 30 steps after the rule's best point, not at the cap, and say where the best is."""
    image = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    request = request_for(image, max_iterations=100_000, report_every=10, stopping="variance",
                          variance_window=10, patience=30, scales=3)
    state = RunState()
    reports = list(restoration_steps(request, state))
    assert state.error is None and state.last.done
    last = reports[-1]
    assert last.steps_done == last.steps_total == last.iteration < 100_000
    for report in reports:
        assert report.stopping == "variance" and report.patience == 30
        assert report.steps_total <= max(report.iteration, report.best_iteration or 0) + 40
        assert report.seconds_left is None or report.seconds_left < 60


def test_the_preview_background_is_the_input_enlarged_like_the_output():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    axes = ImageAxes.of(2)
    plan = plan_run(axes, image.shape, (0, 0), stack_axes=None, factor=2)
    shown = input_as_output(image, plan)
    assert shown.shape == (4, 6) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[::2, ::2], image)
    plan = plan_run(axes, image.shape, (0, 0), stack_axes=None)
    copy = input_as_output(image, plan)
    copy[0, 0] = 99  # the preview is written into: never the layer's own array
    assert image[0, 0] == 0


def test_the_result_metadata_is_the_run_document_and_reads_back_as_the_same_run():
    """The result layer's metadata is the run's RunSpec document (saved as JSON it is a
    --config): read back, it gives the spec that ran, with the threads, the intensity range and
    what "auto" chose pinned; the outcome sits beside it."""
    image = np.random.default_rng(0).random((2, 16, 16), dtype=np.float32) * 200
    request = request_for(image, stack_axes=(0,), max_iterations=4, report_every=2, scales=3)
    state = RunState()
    list(restoration_steps(request, state))
    assert state.error is None and state.last.done
    metadata = result_metadata(SimpleNamespace(name="noisy"), request, state)
    document = json.loads(json.dumps(metadata))["napari_dip"]
    assert document["napari_dip_run"] == 2 and document["source_layer"] == "noisy"
    assert document["finished"] and document["slices_done"] == document["n_slices"] == 2
    again = RunSpec.from_dict(document)
    assert again == state.spec.pinned([{"precision": document["precision"],
                                        "memory_format": document["memory_format"],
                                        "threads": document["threads"]}])
    assert again.threads >= 1 and again.overrides["max_iterations"] == 4
    assert again.overrides["precision"] == document["precision"] != "auto"
    low, high = again.intensity_range
    assert low == image.min() and high == image.max()
    assert RunSpec.from_dict(metadata) == again  # the layer's whole metadata, too
