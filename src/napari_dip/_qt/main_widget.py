"""The "Deep Image Prior" dock widget: restore an image layer live in napari.

It composes the small widgets of this package, turns their choices into one
:class:`~napari_dip.spec.RunSpec` (with the data beside it: a
:class:`~napari_dip._qt.worker.RunInput`), runs :func:`~napari_dip._qt.worker.restoration_steps`
in a napari thread worker and routes each :class:`~napari_dip._qt.status.Progress` to the run's
status (progress bar, status line), the loss plot and a throttled preview layer. Torch is
imported only when a run starts (or when the device list is opened), so opening napari and this
widget stays fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import (QComboBox, QFormLayout, QPushButton, QScrollArea, QSpinBox,
                            QVBoxLayout, QWidget)
from superqt import QCollapsible

from ..engine.layout import ImageAxes, mask_for_plan, plan_run
from ..engine.psf import described_psf
from ..config import SUPPORTED_FACTORS, TASKS
from ..presets import DEFAULT_PRESET, PRESETS, get_config
from ..io.tiff import split_alpha, with_alpha
from ..spec import RunSpec
from .device_combo import DeviceCombo
from .history_view import HistoryView
from .layer_choices import LayerChoices, axis_name
from .loss_plot import LossPlot
from .output_layers import (PREVIEW_KEY, add_uncertainty, output_style, result_metadata,
                            shown_point, slice_index)
from .progress_view import ProgressView
from .psf_picker import PsfPicker
from .settings_file import load_settings, save_settings
from .settings_form import SettingsPanel
from .status import (Progress, RunStatus, format_duration, slice_position, stopped_early_text,
                     task_label)
from .worker import RunInput, RunState, restoration_steps

NOTIFICATION_TITLE = "Deep Image Prior: {what} (the widget shows the whole message)"
"""First line of an error notification: napari's toast shows one short line until expanded."""


def notify_error(what: str, message: str) -> None:
    """An error notification: a short title line a toast can show, then the whole message."""
    from napari.utils.notifications import show_error

    show_error(f"{NOTIFICATION_TITLE.format(what=what)}\n{message}")


class VerticalScrollArea(QScrollArea):
    """Scrolls its content up and down, never sideways: it is always as wide as the content
    needs (a section opened wider widens it), however short."""

    def __init__(self, content: QWidget) -> None:
        super().__init__(widgetResizable=True)
        self.setWidget(content)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content.installEventFilter(self)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        width = self.widget().minimumSizeHint().width() + \
            self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(width, super().minimumSizeHint().height())

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)


class RestoreWidget(QWidget):
    """Dock widget: pick a layer and a task, press Run, watch the result form, Stop any time."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.state: RunState | None = None
        self.preview_layer = None
        self.result_layer = None
        self.uncertainty_layer = None
        self._run_context: dict[str, Any] = {}
        self._loading = True
        self.status = RunStatus()
        self.layer_choices = LayerChoices(napari_viewer, self)
        self._build_controls()
        self._build_layout()
        self._connect()
        self._restore_settings(load_settings())
        self._loading = False

    def _build_controls(self) -> None:
        choices = self.layer_choices
        self.image_combo, self.labels_combo = choices.image_combo, choices.labels_combo
        self.channel_combo, self.scope_combo = choices.channel_combo, choices.scope_combo
        self.task_combo = QComboBox(toolTip="what to undo: noise, missing pixels, low resolution")
        self.task_combo.addItems([task_label(t) for t in TASKS])
        self.factor_combo = QComboBox(toolTip="the result is this many times larger per side")
        self.factor_combo.addItems([str(f) for f in SUPPORTED_FACTORS])
        self.psf_picker = PsfPicker(self.viewer)
        self.preset_combo = QComboBox(toolTip="a named recipe; change single knobs under Advanced")
        self.preset_combo.addItems(list(PRESETS))
        self.device_combo = DeviceCombo()
        self.seed_spin = QSpinBox(toolTip="seeds the network, its input code and its noise")
        self.seed_spin.setRange(0, 2**31 - 1)
        self.settings_panel = SettingsPanel()
        self.reset_button = QPushButton("Reset to preset")
        self.run_button = QPushButton("Run")
        self.progress_view = ProgressView(self.status)
        self.progress_bar = self.progress_view.progress_bar
        self.device_label = self.progress_view.device_label
        self.loss_plot = LossPlot()
        self.history_view = HistoryView(self)

    def _build_layout(self) -> None:
        """Choices and settings scroll; Run, the progress and the plot stay in view below."""
        form = QFormLayout()
        form.addRow("task", self.task_combo)
        form.addRow("factor", self.factor_combo)
        form.addRow("PSF", self.psf_picker)
        form.addRow("preset", self.preset_combo)
        for label, combo in self.layer_choices.rows().items():
            form.addRow(label, combo)
        form.addRow("device", self.device_combo)
        form.addRow("seed", self.seed_spin)
        self.form = form
        self.advanced = QCollapsible("Advanced settings")
        self.advanced.addWidget(self.settings_panel)
        self.advanced.addWidget(self.reset_button)
        choices = QWidget()
        column = QVBoxLayout(choices)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(form)
        column.addWidget(self.advanced)
        column.addStretch(1)
        self.scroll_area = scroll = VerticalScrollArea(choices)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress_view)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.history_view)

    def _connect(self) -> None:
        for combo in (self.task_combo, self.factor_combo, self.preset_combo):
            combo.currentIndexChanged.connect(self._show_preset)
        self.task_combo.currentIndexChanged.connect(self._show_task_controls)
        self.reset_button.clicked.connect(lambda: self._show_preset(overrides={}))
        self.run_button.clicked.connect(self._run_or_stop)
        self.layer_choices.scope_chosen.connect(self._save)
        for signal in (self.device_combo.currentTextChanged, self.seed_spin.valueChanged):
            signal.connect(self._save)
        self.settings_panel.connect_changed(self._save)

    # ------------------------------------------------------------------ choices

    @property
    def task(self) -> str:
        return TASKS[self.task_combo.currentIndex()]

    @property
    def factor(self) -> int | None:
        return int(self.factor_combo.currentText()) if self.task == "super_resolve" else None

    def image_layer(self):
        return self.layer_choices.image_layer()

    def labels_layer(self):
        return self.layer_choices.labels_layer()

    def set_scope(self, whole_stack: bool, axis: int | None = None) -> None:
        """Choose the current slice, or the whole stack along ``axis`` (default: the leading
        axis nearest the image plane, usually Z)."""
        self.layer_choices.set_scope(whole_stack, axis)

    def _show_task_controls(self, *_) -> None:
        self.form.setRowVisible(self.labels_combo, self.task == "inpaint")
        self.form.setRowVisible(self.factor_combo, self.task == "super_resolve")
        self.form.setRowVisible(self.psf_picker, self.task == "deconvolve")

    def _show_preset(self, *_, overrides: dict[str, Any] | None = None) -> None:
        """Show the chosen preset's values for the task, keeping the knobs the user changed
        (or ``overrides`` when given; ``{}`` resets every knob to the preset)."""
        if overrides is None:
            overrides = self.settings_panel.overrides()
        config = get_config(self.preset_combo.currentText(), self.task, self.factor)
        loading, self._loading = self._loading, True  # one save at the end, not one per knob
        self.settings_panel.show_preset(config.to_dict(), overrides)
        self._loading = loading
        self._save()

    # ------------------------------------------------------------------ persistence

    def current_settings(self) -> dict[str, Any]:
        return {"task": self.task, "factor": self.factor_combo.currentText(),
                "preset": self.preset_combo.currentText(),
                "whole_stack": self.layer_choices.whole_stack,
                "device": self.device_combo.currentText(), "seed": self.seed_spin.value(),
                "overrides": self.settings_panel.overrides()}

    def _save(self, *_) -> None:
        if not self._loading:
            save_settings(self.current_settings())

    def _restore_settings(self, saved: dict[str, Any]) -> None:
        if saved.get("task") in TASKS:
            self.task_combo.setCurrentIndex(TASKS.index(saved["task"]))
        if self.factor_combo.findText(str(saved.get("factor"))) >= 0:
            self.factor_combo.setCurrentText(str(saved["factor"]))
        preset = saved.get("preset")  # a hand-edited file may hold anything
        preset = preset if isinstance(preset, str) and preset in PRESETS else DEFAULT_PRESET
        self.preset_combo.setCurrentText(preset)
        self.layer_choices.whole_stack = saved.get("whole_stack") is True
        if self.layer_choices.whole_stack and self.scope_combo.count() > 1:
            self.set_scope(True)
        if isinstance(saved.get("device"), str) and saved["device"]:
            self.device_combo.choose(saved["device"])
        seed = saved.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool) and \
                0 <= seed <= self.seed_spin.maximum():
            self.seed_spin.setValue(seed)
        overrides = saved.get("overrides") if isinstance(saved.get("overrides"), dict) else {}
        try:  # settings saved by another version may no longer be valid
            get_config(preset, self.task, self.factor, **overrides)
        except (ValueError, TypeError):
            overrides = {}
        self._show_preset(overrides=overrides)
        self._show_task_controls()

    # ------------------------------------------------------------------ a run's request

    def run_spec(self, channel_axis: int | None = None, psf: dict | None = None) -> RunSpec:
        """The run the choices describe (every setting; the data goes beside it); ``psf``:
        deconvolution's PSF description."""
        return RunSpec(task=self.task, preset=self.preset_combo.currentText(),
                       factor=self.factor, overrides=self.settings_panel.overrides(),
                       seed=self.seed_spin.value(), device=self.device_combo.currentText(),
                       channel_axis=channel_axis, psf=psf)

    def _request(self) -> RunInput:
        """Gather the run's inputs; ``ValueError`` with a user-facing message if they do not fit."""
        layer = self.image_layer()
        if layer is None:
            raise ValueError("choose an image layer to restore (open one, or a sample from "
                             "File > Open Sample > Deep Image Prior)")
        if getattr(layer, "multiscale", False):
            raise ValueError(f"'{layer.name}' is a multiscale (pyramid) layer; open one level "
                             f"of it as a plain image layer to restore it")
        axes = self.layer_choices.image_axes()
        shape = tuple(layer.data.shape)
        self._check_view_shows_the_plane(layer, axes)
        position = np.round(shown_point(layer, self.viewer.dims)).astype(int)
        position = dict(zip(axes.layer_dims, position))
        plan = plan_run(axes, shape, tuple(position.get(a, 0) for a in range(axes.ndim)),
                        stack_axes=self.layer_choices.stack_axes(), factor=self.factor)
        mask = None
        if self.task == "inpaint":
            labels = self.labels_layer()
            if labels is None:
                raise ValueError("inpainting needs a Labels layer marking the missing pixels "
                                 "(label > 0): add one with New Labels, paint over the damage, "
                                 "and choose it as the mask")
            mask = mask_for_plan(labels.data, shape, plan)
            if not mask.any():
                raise ValueError(f"the Labels layer '{labels.name}' marks no pixels in the "
                                 f"region to restore; paint the missing pixels with a label > 0")
        # the region as the layer holds it: a lazy (dask, zarr) array is read on the worker
        data, alpha = layer.data[plan.region], None
        if plan.axes.rgb and data.shape[-1] == 4:  # RGBA: the colours are restored, not alpha
            data, alpha = split_alpha(data, -1)
        psf, described = described_psf(self.psf_picker.psf(layer)
                                       if self.task == "deconvolve" else None)
        return RunInput(spec=self.run_spec(plan.axes.channel, psf=described), data=data,
                        region=plan, mask=mask, alpha=alpha, psf=psf)

    def _check_view_shows_the_plane(self, layer, axes: ImageAxes) -> None:
        """Refuse a current-slice run while a 2D view shows another plane of the layer than the
        one restored (its last two non-channel axes), e.g. after transposing the view."""
        dims = self.viewer.dims
        if self.layer_choices.stack_axes() is not None or dims.ndisplay != 2:
            return
        offset = dims.ndim - layer.ndim  # the layer's dimensions are the viewer's last ones
        shown = sorted(v - offset for v in dims.displayed)
        plane = sorted(axes.layer_dims.index(a) for a in axes.plane)
        if shown != plane:
            names = " × ".join(axis_name(layer, axes.layer_dims[d]) for d in shown
                               if 0 <= d < len(axes.layer_dims))
            raise ValueError(f"the view shows the {names} plane, but a slice is restored in "
                             f"the image's last two axes; restore the usual axis order (the "
                             f"viewer's transpose button) or run on the whole stack")

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _run_or_stop(self) -> None:
        if self.running:
            self.stop()
        else:
            self.run()

    def stop(self) -> None:
        """Ask the run to stop after its current step; the best result so far is kept."""
        if self.worker is not None:
            self.status.progress = "stopping…"
            self.worker.quit()

    def run(self) -> None:
        """Start a run with the current choices (a refusal is shown, not raised)."""
        from napari.qt.threading import create_worker

        if self.running:
            return
        try:
            request = self._request()
        except ValueError as error:
            self.status.refused(f"Deep Image Prior cannot run: {error}")
            notify_error("cannot run", str(error))
            return
        layer = self.image_layer()
        self._save()
        self.state = RunState()
        self._run_context = {"layer": layer, "request": request}
        # hidden until the worker sends the input to show where no slice is fitted yet
        self.preview_layer = self.viewer.add_image(
            np.zeros(request.region.output_shape(request.data.shape), dtype=request.data.dtype),
            name=f"{layer.name} [preview]", metadata={PREVIEW_KEY: True}, visible=False,
            **output_style(layer, request.region))
        self.loss_plot.clear()
        self.status.starting()
        self.run_button.setText("Stop")
        worker = create_worker(restoration_steps, request, self.state, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        self.history_view.watch(worker)
        self.worker = worker
        worker.start()

    def _on_progress(self, progress: Progress) -> None:
        self.status.show(progress)
        self.loss_plot.add(progress.steps_done, progress.loss, progress.criterion)
        preview = self.preview_layer
        if preview is None:
            return
        if progress.background is not None:
            preview.data = progress.background
            preview.visible = True
        if progress.previews:
            axes = self._run_context["request"].region.axes
            for stack_index, estimate in progress.previews:
                preview.data[slice_index(axes, stack_index)] = estimate
            preview.refresh()

    def _on_finished(self) -> None:
        from napari.utils.notifications import show_info

        state = self.state
        self.worker = None
        self.run_button.setText("Run")
        preview, self.preview_layer = self.preview_layer, None
        if preview is not None and preview not in self.viewer.layers:
            preview = None
        if state.error is None and state.last is not None:
            self._add_result(state, preview)
        else:
            if preview is not None:
                self.viewer.layers.remove(preview)
            if state.error is not None:
                self.status.failure(state.error)
                notify_error("the run failed", state.error)
            else:
                self.status.stopped("stopped before the first result")
                show_info("Deep Image Prior: stopped before the first snapshot; no result to "
                          "keep.")
        self.layer_choices.refresh_layers()

    def _add_result(self, state: RunState, preview=None) -> None:
        """Turn the preview layer into the result layer (or add one): re-using the layer
        spares the GUI thread the cost of building a new one at the end of the run."""
        layer, request = self._run_context["layer"], self._run_context["request"]
        last, plan = state.last, request.region
        metadata = result_metadata(layer, request, state)
        suffix = f"[{task_label(request.spec.task)}]"
        name = f"{layer.name} {suffix}"
        result = last.result.copy()
        if request.alpha is not None:  # the input's alpha back, enlarged like the colours
            result = with_alpha(result, np.asarray(request.alpha), -1, tuple(plan.axes.plane),
                                plan.factor)
        if preview is not None:
            preview.data = result
            preview.name, preview.metadata, preview.visible = name, metadata, True
            self.result_layer = preview
        else:
            self.result_layer = self.viewer.add_image(result, name=name, metadata=metadata,
                                                      **output_style(layer, plan))
        self.uncertainty_layer = None
        if last.uncertainty is not None:
            self.uncertainty_layer = add_uncertainty(
                self.viewer, last.uncertainty, layer, plan,
                f"{layer.name} {suffix[:-1]} uncertainty]", metadata)
        self._report_outcome(last)

    def _report_outcome(self, last) -> None:
        from napari.utils.notifications import show_info

        if last.done:
            self.status.finished(f"done: {last.n_slices} slice(s), "
                                 f"{format_duration(last.snapshot.elapsed)} on last",
                                 stopped_early_text(last.snapshot))
            return
        position = slice_position(last.slice_number, last.n_slices, last.pass_number == 1)
        self.status.stopped(f"stopped {'in the backward pass ' * last.pass_number}at slice "
                            f"{position}/{last.n_slices}, iteration {last.snapshot.iteration}")
        unreached = "" if last.n_slices == 1 or last.pass_number else \
            " Slices not reached are left at 0."
        show_info(f"Deep Image Prior: stopped; kept the result so far as "
                  f"'{self.result_layer.name}'.{unreached}")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.stop()
        super().closeEvent(event)

    def event(self, event) -> bool:
        # napari closes a dock widget by taking it out of its dock (no close event): a widget
        # left without a parent stops its run, as the Stop button would
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.stop()
        return super().event(event)
