"""The history slider: look back over a run's checkpoints and choose one as the result.

During and after a run, the slider moves over the current slice's checkpoints (the run's
:class:`~napari_dip.engine.history.History`): moving it shows that checkpoint in a preview
layer and marks it on the loss plot, beside the point where the automatic rule stopped;
"Use this" puts it into the result layer, whose metadata then say which iteration was chosen
and why. The widget asks every run for a history (:data:`WIDGET_HISTORY` checkpoints).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from ..engine.run_history import AUTOMATIC_STOP
from .output_layers import PREVIEW_KEY, output_style, slice_index

CHOSEN_KEY = "chosen"
"""Key of the result metadata's list of hand-chosen checkpoints, one per slice."""


class HistoryView(QWidget):
    """A slider over the current slice's checkpoints, a line describing the one shown, and
    "Use this". ``owner`` is the dock widget, whose run, loss plot and layers it reads."""

    def __init__(self, owner) -> None:
        super().__init__()
        self.owner = owner
        self.slider = QSlider(Qt.Orientation.Horizontal, toolTip=(
            "move through the run's checkpoints: the chosen one is shown in a preview layer"))
        self.slider.setRange(0, 0)
        self.label = QLabel("no history yet", wordWrap=True)
        self.use_button = QPushButton("Use this", enabled=False, toolTip=(
            "make the checkpoint shown the result (for a stack: this slice's)"))
        self.preview_layer = None
        self._checkpoints: list = []
        self._index: tuple[int, ...] | None = None
        self._offsets: dict[tuple[int, ...], int] = {}  # slice -> plot steps before its history
        self._following = True  # the slider stays on the latest checkpoint until moved
        row = QHBoxLayout()
        row.addWidget(self.slider, 1)
        row.addWidget(self.use_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self._show)
        self.use_button.clicked.connect(self.use_shown)
        self.setVisible(False)

    def watch(self, worker) -> None:
        """Follow a new run of ``worker`` (after the dock widget's own connections, so that
        its result layer exists when the run ends)."""
        if self.preview_layer is not None and self.preview_layer in self.owner.viewer.layers:
            self.owner.viewer.layers.remove(self.preview_layer)
        self._checkpoints, self._index, self._offsets = [], None, {}
        self._following, self.preview_layer = True, None
        self.use_button.setEnabled(False)
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.blockSignals(False)
        worker.yielded.connect(lambda progress: self.follow(progress.steps_done))
        worker.finished.connect(lambda: self.follow(finished=True))

    @property
    def checkpoint(self):
        """The checkpoint the slider is on (None without a history)."""
        return self._checkpoints[self.slider.value()] if self._checkpoints else None

    def follow(self, steps_done: int | None = None, *, finished: bool = False) -> None:
        """Take in the run's latest snapshot: the current slice's checkpoints so far."""
        state = self.owner.state
        last = None if state is None else state.last
        history = None if last is None else last.snapshot.history
        if history is None or not len(history):
            return
        checkpoints = history.checkpoints
        if steps_done is not None and last.index not in self._offsets:
            self._offsets[last.index] = steps_done - checkpoints[-1].iteration
        if last.index != self._index:
            self._following = True
        shown = None if self._following or self.checkpoint is None else self.checkpoint.iteration
        self._index, self._checkpoints = last.index, checkpoints
        self.setVisible(True)
        self.use_button.setEnabled(finished and state.error is None
                                   and self.owner.result_layer is not None)
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(checkpoints) - 1)
        # a moved slider stays on its checkpoint while the history thins around it
        self.slider.setValue(len(checkpoints) - 1 if shown is None else min(
            range(len(checkpoints)), key=lambda k: abs(checkpoints[k].iteration - shown)))
        self.slider.blockSignals(False)
        if shown is not None and self.checkpoint.iteration != shown:  # it was thinned out
            self._show()
            self._following = False
        self._describe()

    def _plot_step(self, iteration: int) -> float:
        return iteration + self._offsets.get(self._index, 0)

    def _describe(self) -> None:
        """The label and the loss plot's marks for the checkpoint shown."""
        point = self.checkpoint
        stops = [p.iteration for p in self._checkpoints
                 if p.note and p.note.startswith(AUTOMATIC_STOP)]
        self.owner.loss_plot.set_marks(
            stop=self._plot_step(stops[-1]) if stops else None,
            chosen=self._plot_step(point.iteration))
        where = "" if self._index in (None, ()) else f"slice {list(self._index)}, "
        note = f" ({point.note})" if point.note else ""
        self.label.setText(f"{where}checkpoint {self.slider.value() + 1}/"
                           f"{len(self._checkpoints)}: iteration {point.iteration}{note}, "
                           f"loss {point.loss:.3g}")

    def _show(self, *_) -> None:
        """The slider moved: show its checkpoint in the history preview layer."""
        self._following = self.slider.value() == self.slider.maximum()
        point = self.checkpoint
        if point is None:
            return
        self._describe()
        layer = self._preview()
        if layer is None:
            return
        _put(layer.data[slice_index(self._axes(), self._index)], point.estimate)
        layer.refresh()

    def _axes(self):
        return self.owner._run_context["request"].region.axes

    def _preview(self):
        """The layer that shows the checkpoint: made on first use from the run's result so
        far (the other slices as they stand), never offered as an input."""
        viewer, state = self.owner.viewer, self.owner.state
        if self.preview_layer is not None and self.preview_layer in viewer.layers:
            return self.preview_layer
        if state is None or state.last is None:
            return None
        source = self.owner._run_context["layer"]
        plan = self.owner._run_context["request"].region
        self.preview_layer = viewer.add_image(
            np.array(state.last.result, copy=True), name=f"{source.name} [history]",
            metadata={PREVIEW_KEY: True}, **output_style(source, plan))
        return self.preview_layer

    def use_shown(self) -> None:
        """Put the checkpoint shown into the result layer (for a stack, into its slice) and
        say in the layer's metadata which iteration was chosen, and why."""
        point, layer = self.checkpoint, self.owner.result_layer
        if point is None or layer is None:
            return
        data = np.array(layer.data, copy=True)
        _put(data[slice_index(self._axes(), self._index)], point.estimate)
        layer.data = data
        record: dict[str, Any] = layer.metadata.setdefault("napari_dip", {})
        chosen = [entry for entry in record.get(CHOSEN_KEY, [])
                  if entry["slice"] != list(self._index)]
        chosen.append({"slice": list(self._index), "iteration": point.iteration,
                       "elapsed": round(point.elapsed, 3), "loss": point.loss,
                       "reason": f"chosen by hand at iteration {point.iteration}"
                                 + (f" (the run's {point.note!r} checkpoint)"
                                    if point.note else "")})
        record[CHOSEN_KEY] = chosen
        self.label.setText(self.label.text() + " — now the result")


def _put(target: np.ndarray, estimate: np.ndarray) -> None:
    """Write a checkpoint into a layer's slice (an RGBA layer's colours only: its alpha is the
    input's)."""
    if estimate.shape == target.shape:
        target[...] = estimate
    else:
        target[..., :estimate.shape[-1]] = estimate
