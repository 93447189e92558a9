"""The history slider of the dock widget, in a real napari viewer (under Xvfb)."""

import numpy as np
from qtpy.QtCore import Qt

from napari_dip._sample_data import make_noisy_nuclei

from . import test_widget
from .test_widget import configure, qt, run_to_end

# the dock widget's fixtures, shared with its own tests
dock, noisy_stack = test_widget.dock, test_widget.noisy_stack
private_settings = test_widget.private_settings


def _stack_checkpoint_is_the_slice(layer, checkpoint, z):
    np.testing.assert_array_equal(layer.data[z], checkpoint.estimate)


@qt
def test_history_slider_shows_a_checkpoint_and_use_this_makes_it_the_result(dock, qtbot):
    viewer, widget = dock
    _, noisy = make_noisy_nuclei((32, 32))
    viewer.add_image(noisy, name="noisy")
    configure(widget, max_iterations=2000, report_every=5, stopping="variance",
              variance_window=5, patience=20)
    result = run_to_end(qtbot, widget)
    view = widget.history_view
    checkpoints = widget.state.last.snapshot.history.checkpoints
    assert not view.isHidden() and view.slider.maximum() == len(checkpoints) - 1 >= 3
    assert view.slider.value() == view.slider.maximum()  # on the end of the run
    stop = next(p for p in checkpoints if p.note == "automatic stop")
    assert widget.loss_plot.marks["stop"] == stop.iteration
    assert view.use_button.isEnabled()

    view.slider.setValue(1)
    preview = view.preview_layer
    assert preview is not None and preview.name == "noisy [history]"
    np.testing.assert_array_equal(preview.data, checkpoints[1].estimate)
    assert widget.loss_plot.marks["chosen"] == checkpoints[1].iteration
    view.slider.setValue(2)
    np.testing.assert_array_equal(preview.data, checkpoints[2].estimate)  # the preview follows

    qtbot.mouseClick(view.use_button, Qt.MouseButton.LeftButton)
    np.testing.assert_array_equal(result.data, checkpoints[2].estimate)
    (chosen,) = result.metadata["napari_dip"]["chosen"]
    assert chosen["iteration"] == checkpoints[2].iteration
    assert chosen["reason"].startswith(f"chosen by hand at iteration {checkpoints[2].iteration}")


@qt
def test_history_of_a_stack_replaces_only_the_current_slice(dock, qtbot, noisy_stack):
    viewer, widget = dock
    _, noisy, _ = noisy_stack
    configure(widget, max_iterations=30, report_every=5)
    widget.set_scope(True, axis=0)
    result = run_to_end(qtbot, widget)
    before = result.data.copy()
    last = widget.state.last
    (z,) = last.index
    checkpoints = last.histories[last.index].checkpoints
    assert sorted(last.histories) == [(0,), (1,), (2,)]
    view = widget.history_view
    view.slider.setValue(0)
    _stack_checkpoint_is_the_slice(view.preview_layer, checkpoints[0], z)
    qtbot.mouseClick(view.use_button, Qt.MouseButton.LeftButton)
    _stack_checkpoint_is_the_slice(result, checkpoints[0], z)
    others = [i for i in range(noisy.shape[0]) if i != z]
    np.testing.assert_array_equal(result.data[others], before[others])
    assert result.metadata["napari_dip"]["chosen"][0]["slice"] == [z]


@qt
def test_history_slider_works_during_a_run_and_keeps_its_place(dock, qtbot):
    viewer, widget = dock
    _, noisy = make_noisy_nuclei((32, 32))
    viewer.add_image(noisy, name="noisy")
    configure(widget, max_iterations=100_000, report_every=1, history=4)
    widget.run()
    view = widget.history_view
    qtbot.waitUntil(lambda: view.checkpoint is not None and view.slider.maximum() >= 3,
                    timeout=test_widget.RUN_TIMEOUT_MS)
    assert not view.use_button.isEnabled()  # a result layer comes with the run's end
    view.slider.setValue(1)
    chosen = view.checkpoint.iteration
    history = widget.state.last.snapshot.history
    qtbot.waitUntil(lambda: history.checkpoints[-1].iteration > 8 * chosen,
                    timeout=test_widget.RUN_TIMEOUT_MS)  # thinned several times since
    qtbot.wait(200)
    widget.stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=test_widget.RUN_TIMEOUT_MS)
    shown = view.checkpoint
    assert view.slider.value() < view.slider.maximum()  # not dragged to the end by the run
    assert abs(shown.iteration - chosen) == min(abs(p.iteration - chosen)
                                                for p in history.checkpoints)
    np.testing.assert_array_equal(view.preview_layer.data, shown.estimate)
    assert view.use_button.isEnabled()
