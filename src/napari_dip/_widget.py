"""The "Deep Image Prior" dock widget: restore an image layer live in napari.

The widget translates its controls into one call of :func:`napari_dip.iter_restore_stack`, run
in a napari thread worker (:func:`restoration_steps`), and routes the snapshots to a progress
bar, a loss plot and a throttled preview layer. Torch is imported only when a run starts (or
when the device list is opened), so opening napari and this widget stays fast.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QStandardPaths
from qtpy.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                            QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)
from superqt import QCollapsible

from ._qt_plot import LossPlot
from .config import (DEFAULT_PRESET, PRESETS, SUPPORTED_FACTORS, TASKS, describe_fields,
                     get_config, warm_start_config)
from .engine.layout import (Geometry, ImageAxes, RunPlan, mask_for_plan, output_geometry,
                            plan_run, stack_scopes)
from .io import split_alpha, with_alpha

PREVIEW_INTERVAL_S = 0.5
"""Least time between two preview-layer updates, so a fast GPU run cannot flood the GUI."""

PREVIEW_KEY = "napari_dip_preview"
"""Metadata flag of a run's preview layer, which is never offered as an input."""

SETTINGS_ENV = "NAPARI_DIP_SETTINGS"
"""Environment variable naming the settings file (tests point it at a temporary file)."""

CRITERION_FIELDS = ("criterion", "stopping_criterion", "stop_value")
"""Snapshot attributes that may carry the automatic stopping rule's value, when it has one."""


def task_label(task: str) -> str:
    """``"super_resolve"`` -> ``"super-resolve"``: the name users see and layers get."""
    return task.replace("_", "-")


# ----------------------------------------------------------------------------- settings file

def settings_path() -> Path:
    """Where the widget's settings live: ``$NAPARI_DIP_SETTINGS``, or ``napari-dip/widget.json``
    in the user's configuration folder."""
    if os.environ.get(SETTINGS_ENV):
        return Path(os.environ[SETTINGS_ENV])
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    return Path(base) / "napari-dip" / "widget.json"


def load_settings() -> dict[str, Any]:
    """The saved settings, or ``{}`` when there are none or the file is unreadable."""
    try:
        saved = json.loads(settings_path().read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def save_settings(settings: dict[str, Any]) -> None:
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1))
    except OSError:
        pass  # a read-only home must not break the widget


# ----------------------------------------------------------------------------- the worker

@dataclass
class RunRequest:
    """Everything a run needs, gathered on the GUI thread before the worker starts."""

    data: np.ndarray
    plan: RunPlan
    task: str
    mask: np.ndarray | None
    preset: str
    seed: int
    device: str
    overrides: dict[str, Any]
    alpha: Any = None  # an RGBA layer's alpha channel: kept as it is, not restored


@dataclass
class Progress:
    """What the worker reports to the GUI after each snapshot."""

    slice_number: int
    n_slices: int
    iteration: int
    max_iterations: int
    tile: int
    n_tiles: int
    steps_done: int
    steps_total: int
    loss: float
    criterion: float | None
    seconds_left: float | None
    device: str
    previews: tuple[tuple[tuple, np.ndarray], ...] = ()  # (stack index, estimate) per slice
    backward: bool = False  # the optional second pass over the slices (stack_passes=2)
    group_size: int = 1  # slices fitted together (slice_batch), ending at slice_number
    run: int = 0  # which of n_runs seeded runs (their results are averaged)
    n_runs: int = 1


@dataclass
class RunState:
    """The run's outcome so far, written by the worker and read by the GUI once it finished.

    ``last`` is the latest :class:`~napari_dip.StackSnapshot`; its ``result`` holds every
    finished slice and the current slice's latest estimate, which is what Stop keeps.
    ``config`` is the run's settings (a stack's later slices run a shorter schedule);
    ``threads`` the CPU threads torch ran with (None on a GPU).
    """

    last: Any = None
    error: str | None = None
    config: dict[str, Any] | None = None
    threads: int | None = None


def explain_error(error: BaseException) -> str:
    """A notification text for an error raised during a run: what happened and what to do."""
    text = str(error) or type(error).__name__
    if "out of memory" in text.lower() or type(error).__name__ == "OutOfMemoryError":
        return ("Deep Image Prior ran out of memory. Try the 'quick' preset, fewer channels or "
                "scales under Advanced, the current slice instead of the whole stack, a smaller "
                f"crop, or another device. ({text.splitlines()[0]})")
    if isinstance(error, ValueError):
        return f"Deep Image Prior cannot run: {text}"
    return (f"Deep Image Prior failed: {type(error).__name__}: {text}. The widget is ready for "
            f"another run; if this repeats, please report it with the settings you used.")


def _snapshot_criterion(snapshot) -> float | None:
    for name in CRITERION_FIELDS:
        value = getattr(snapshot, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def restoration_steps(request: RunRequest, state: RunState):
    """Run the restoration; yield a :class:`Progress` per snapshot (with a preview at most every
    PREVIEW_INTERVAL_S seconds and at the end of each slice); record the outcome in ``state``.

    Errors are caught and stored in ``state.error`` rather than raised: napari's generator
    worker treats a raised ``RuntimeError`` (which is what torch raises) as a deleted worker and
    drops it, so the GUI would never hear of it.
    """
    try:
        import napari_dip  # the first torch import happens here, on the worker thread

        with cpu_threads_leaving_one_for_the_gui(request.device) as threads:
            state.threads = threads
            yield from _restoration_steps(napari_dip, request, state)
    except Exception as error:  # noqa: BLE001 (every failure becomes a notification)
        state.error = explain_error(error)
    return state


@contextmanager
def cpu_threads_leaving_one_for_the_gui(device: str):
    """On the CPU, fit with one thread fewer than the machine has, so the GUI thread keeps a
    core: with every core busy, torch's worker threads and napari's event loop contend, and
    both slow down (on 2 busy cores a 40-step fit took 16-35 s with 2 threads, 1.4-1.9 s with
    1). The previous thread count is restored afterwards. Yields the count (None off the
    CPU): a CPU result depends on it."""
    import torch

    from .device import select_device, torch_threads

    if select_device(device).type != "cpu":
        yield None
        return
    with torch_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))) as n:
        yield n


def _restoration_steps(napari_dip, request: RunRequest, state: RunState):
    """The body of :func:`restoration_steps`: snapshots in, :class:`Progress` out."""
    config = get_config(request.preset, request.task, request.plan.factor or None,
                        **request.overrides)
    state.config = config.to_dict()
    later_slice_steps = warm_start_config(config, config.max_iterations).max_iterations
    steps = napari_dip.iter_restore_stack(
        np.asarray(request.data), task=request.task, mask=request.mask,
        factor=request.plan.factor if request.plan.factor > 1 else None,
        preset=config, channel_axis=request.plan.axes.channel, seed=request.seed,
        device=request.device)
    start = time.perf_counter()
    last_preview = -np.inf
    steps_before_slice = 0
    for stack_step in steps:
        state.last = stack_step
        snapshot = stack_step.snapshot
        slices_left = stack_step.n_slices - stack_step.slice_number - 1
        if stack_step.pass_number == 0 and config.stack_passes == 2:
            slices_left += stack_step.n_slices - 1
        # a tiled plane is one fit per tile and run (n_runs), each with the slice's budget
        runs = config.n_runs
        fits_done = snapshot.tile * runs + snapshot.run
        done = steps_before_slice + fits_done * snapshot.max_iterations + snapshot.iteration
        fits_left = snapshot.n_tiles * runs - fits_done - 1
        total = done + (snapshot.max_iterations - snapshot.iteration) + \
            fits_left * snapshot.max_iterations + \
            -(-slices_left // config.slice_batch) * snapshot.n_tiles * runs * later_slice_steps
        elapsed = time.perf_counter() - start
        progress = Progress(
            slice_number=stack_step.slice_number, n_slices=stack_step.n_slices,
            iteration=snapshot.iteration, max_iterations=snapshot.max_iterations,
            tile=snapshot.tile, n_tiles=snapshot.n_tiles, backward=stack_step.pass_number == 1,
            steps_done=done, steps_total=total, loss=snapshot.loss,
            criterion=_snapshot_criterion(snapshot),
            seconds_left=elapsed / done * (total - done) if done else None,
            device=f"{snapshot.device}, {snapshot.precision}", group_size=len(stack_step.group),
            run=snapshot.run, n_runs=runs)
        now = time.perf_counter()
        if snapshot.done or now - last_preview >= PREVIEW_INTERVAL_S:
            progress.previews = tuple((index, member.estimate) for index, member in
                                      zip(stack_step.group, stack_step.group_snapshots))
            last_preview = now
        if snapshot.done:
            steps_before_slice = done
            first_fit = stack_step.slice_number + 1 == len(stack_step.group)
            if first_fit and stack_step.pass_number == 0 and \
                    config.warm_start_fraction > 0:  # later slices' schedule is known now
                later_slice_steps = warm_start_config(config, snapshot.iteration).max_iterations
        yield progress


# ----------------------------------------------------------------------------- the widget

class DeviceCombo(QComboBox):
    """Device choice. Lists "auto" and "cpu" until opened: finding CUDA or MPS means importing
    torch, which is deferred until the user looks (or a run has imported it anyway)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.addItems(["auto", "cpu"])
        self.detected = False
        self.setToolTip("where the fit runs: auto picks CUDA, then Apple MPS, then the CPU")

    def detect(self) -> None:
        """Add every device this machine has (imports torch)."""
        if self.detected:
            return
        from .device import available_devices

        for name in available_devices():
            if self.findText(name) < 0:
                self.addItem(name)
        self.detected = True

    def choose(self, name: str) -> None:
        if self.findText(name) < 0:
            self.addItem(name)
        self.setCurrentText(name)

    def showPopup(self) -> None:  # noqa: N802 (Qt's name)
        self.detect()
        super().showPopup()


class SettingsPanel(QWidget):
    """One control per field of :class:`~napari_dip.DIPConfig`, generated from
    :func:`~napari_dip.config.describe_fields` (so widget and engine cannot drift apart).

    It shows the preset's values; :meth:`overrides` is what the user changed."""

    FLOAT_DECIMALS = 6

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.controls: dict[str, QWidget] = {}
        self.preset_values: dict[str, Any] = {}
        for spec in describe_fields():
            control = self._make_control(spec)
            control.setToolTip(spec["doc"])
            control.setObjectName(spec["name"])
            self.controls[spec["name"]] = control
            layout.addRow(spec["name"].replace("_", " "), control)

    def _make_control(self, spec: dict[str, Any]) -> QWidget:
        if spec.get("choices"):
            control = QComboBox()
            control.addItems([str(c) for c in spec["choices"]])
            return control
        is_int = spec["type"] in ("int", int)
        control = QSpinBox() if is_int else QDoubleSpinBox()
        if not is_int:
            control.setDecimals(self.FLOAT_DECIMALS)
            control.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        low, high = spec.get("low"), spec.get("high")
        control.setRange(low if low is not None else -1e9, high if high is not None else 1e9)
        return control

    def value(self, name: str) -> Any:
        control = self.controls[name]
        if isinstance(control, QComboBox):
            return control.currentText()
        return control.value()

    def set_value(self, name: str, value: Any) -> None:
        control = self.controls[name]
        if isinstance(control, QComboBox):
            control.setCurrentText(str(value))
        else:
            control.setValue(value)

    def show_preset(self, values: dict[str, Any], overrides: dict[str, Any] | None = None):
        """Show a preset's values, then the given overrides on top."""
        self.preset_values = dict(values)
        for name, value in values.items():
            if name in self.controls:
                self.set_value(name, value)
        for name, value in (overrides or {}).items():
            if name in self.controls:
                self.set_value(name, value)

    def _same(self, name: str, value: Any) -> bool:
        preset = self.preset_values.get(name)
        if isinstance(value, float):
            return round(value, self.FLOAT_DECIMALS) == round(preset, self.FLOAT_DECIMALS)
        return value == preset

    def overrides(self) -> dict[str, Any]:
        """The settings the user changed from the preset."""
        if not self.preset_values:
            return {}  # no preset shown yet
        values = {name: self.value(name) for name in self.controls}
        return {name: value for name, value in values.items() if not self._same(name, value)}

    def connect_changed(self, slot) -> None:
        for control in self.controls.values():
            signal = (control.currentTextChanged if isinstance(control, QComboBox)
                      else control.valueChanged)
            signal.connect(slot)


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
        self._axes_layer = None  # the image layer the channel choices were made for
        self._whole_stack = False  # the scope last chosen, kept while no stack can take it

        self.image_combo = QComboBox(toolTip="the image layer to restore (it is never changed)")
        self.task_combo = QComboBox(toolTip="what to undo: noise, missing pixels, low resolution")
        self.task_combo.addItems([task_label(t) for t in TASKS])
        self.labels_combo = QComboBox(toolTip="Labels layer marking the missing pixels (label > 0)"
                                              "; 2D: every slice, nD: slice by slice")
        self.factor_combo = QComboBox(toolTip="the result is this many times larger per side")
        self.factor_combo.addItems([str(f) for f in SUPPORTED_FACTORS])
        self.preset_combo = QComboBox(toolTip="a named recipe; change single knobs under Advanced")
        self.preset_combo.addItems(list(PRESETS))
        self.channel_combo = QComboBox(toolTip="the axis holding channels, restored together")
        self.scope_combo = QComboBox(toolTip="the slice on screen, or every slice along an axis "
                                             "(slice k starts from slice k-1's fit)")
        self.device_combo = DeviceCombo()
        self.device_label = QLabel("runs on: chosen at Run")
        self.seed_spin = QSpinBox(toolTip="seeds the network, its input code and its noise")
        self.seed_spin.setRange(0, 2**31 - 1)
        self.settings_panel = SettingsPanel()
        self.reset_button = QPushButton("Reset to preset")
        self.run_button = QPushButton("Run")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("ready")
        self.progress_bar.setValue(0)
        self.loss_plot = LossPlot()

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("task", self.task_combo)
        form.addRow("mask (Labels)", self.labels_combo)
        form.addRow("factor", self.factor_combo)
        form.addRow("preset", self.preset_combo)
        form.addRow("channel axis", self.channel_combo)
        form.addRow("scope", self.scope_combo)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo)
        device_row.addWidget(self.device_label, 1)
        form.addRow("device", device_row)
        form.addRow("seed", self.seed_spin)
        self.form = form
        advanced = QCollapsible("Advanced")
        advanced.addWidget(self.settings_panel)
        advanced.addWidget(self.reset_button)
        self.advanced = advanced
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(advanced)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.loss_plot)
        layout.addStretch(1)

        layers = self.viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.reordered):
            event.connect(self._refresh_layers)
        self.image_combo.currentIndexChanged.connect(self._refresh_axes)
        self.channel_combo.currentIndexChanged.connect(self._refresh_scopes)
        for combo in (self.task_combo, self.factor_combo, self.preset_combo):
            combo.currentIndexChanged.connect(self._show_preset)
        self.task_combo.currentIndexChanged.connect(self._show_task_controls)
        self.reset_button.clicked.connect(lambda: self._show_preset(overrides={}))
        self.run_button.clicked.connect(self._run_or_stop)
        self.scope_combo.currentIndexChanged.connect(self._scope_chosen)
        for signal in (self.device_combo.currentTextChanged, self.seed_spin.valueChanged):
            signal.connect(self._save)
        self.settings_panel.connect_changed(self._save)

        self._refresh_layers()
        self._restore_settings(load_settings())
        self._loading = False

    # ------------------------------------------------------------------ choices

    @property
    def task(self) -> str:
        return TASKS[self.task_combo.currentIndex()]

    @property
    def factor(self) -> int | None:
        return int(self.factor_combo.currentText()) if self.task == "super_resolve" else None

    def image_layer(self):
        from napari.layers import Image

        return self._chosen(self.image_combo, Image)

    def labels_layer(self):
        from napari.layers import Labels

        return self._chosen(self.labels_combo, Labels)

    def _chosen(self, combo: QComboBox, kind):
        """The layer a combo shows (held by identity, so a rename or a namesake cannot swap
        it), if it is still in the viewer."""
        layer = combo.currentData()
        return layer if isinstance(layer, kind) and layer in self.viewer.layers else None

    def set_scope(self, whole_stack: bool, axis: int | None = None) -> None:
        """Choose the current slice, or the whole stack along ``axis`` (default: the leading
        axis nearest the image plane, usually Z)."""
        for i in range(self.scope_combo.count()):
            scope = self.scope_combo.itemData(i)
            if not whole_stack and scope is None:
                break
            if whole_stack and scope is not None and (axis is None or scope == (axis,)):
                if axis is None and i + 1 < self.scope_combo.count() and len(scope) == 1 \
                        and len(self.scope_combo.itemData(i + 1)) == 1:
                    continue  # keep looking for the last single axis
                break
        else:
            raise ValueError(f"no such scope for this layer: whole_stack={whole_stack}, "
                             f"axis={axis}")
        self.scope_combo.setCurrentIndex(i)

    # ------------------------------------------------------------------ refreshing controls

    def _refresh_layers(self, event=None) -> None:
        from napari.layers import Image, Labels

        for layer in self.viewer.layers:  # follow renames (connecting twice is a no-op)
            layer.events.name.connect(self._refresh_layers)
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentData()
            layers = [layer for layer in self.viewer.layers if isinstance(layer, kind)
                      and not layer.metadata.get(PREVIEW_KEY)]
            combo.blockSignals(True)
            combo.clear()
            for layer in layers:
                combo.addItem(layer.name, layer)
            kept = next((i for i, layer in enumerate(layers) if layer is current), None)
            if kept is not None:
                combo.setCurrentIndex(kept)
            elif kind is Image and layers:
                combo.setCurrentIndex(len(layers) - 1)  # the newest image
            combo.blockSignals(False)
        self._refresh_axes()

    def _axis_name(self, layer, axis: int) -> str:
        labels = getattr(layer, "axis_labels", None)
        # napari's default labels are numbers counted from the end ('-3'): not names
        if labels is not None and axis < len(labels) and \
                not str(labels[axis]).lstrip("-").isdigit():
            return str(labels[axis])
        return f"axis {axis}"

    def _refresh_axes(self, *_) -> None:
        layer = self.image_layer()
        # a channel axis chosen for one layer means nothing for another
        current = self.channel_combo.currentData() if layer is self._axes_layer else None
        self._axes_layer = layer
        self.channel_combo.blockSignals(True)
        self.channel_combo.clear()
        if layer is not None and getattr(layer, "rgb", False):
            self.channel_combo.addItem("RGB(A), last axis", None)
        else:
            self.channel_combo.addItem("none", None)
            if layer is not None and layer.data.ndim >= 3:
                for axis in range(layer.data.ndim - 2):
                    self.channel_combo.addItem(self._axis_name(layer, axis), axis)
            index = self.channel_combo.findData(current)
            self.channel_combo.setCurrentIndex(max(index, 0))
        self.channel_combo.setEnabled(self.channel_combo.count() > 1)
        self.channel_combo.blockSignals(False)
        self._refresh_scopes()

    def image_axes(self) -> ImageAxes | None:
        layer = self.image_layer()
        if layer is None:
            return None
        return ImageAxes.of(layer.data.ndim, rgb=bool(getattr(layer, "rgb", False)),
                            channel=self.channel_combo.currentData())

    def _refresh_scopes(self, *_) -> None:
        previous = self.scope_combo.currentData()
        layer = self.image_layer()
        self.scope_combo.blockSignals(True)
        self.scope_combo.clear()
        self.scope_combo.addItem("current slice", None)
        try:
            axes = self.image_axes()
        except ValueError:
            axes = None
        if axes is not None:
            for scope in stack_scopes(axes):
                names = " × ".join(self._axis_name(layer, a) for a in scope)
                self.scope_combo.addItem(f"whole stack along {names}", scope)
        same = None if previous is None and self._whole_stack else \
            next((i for i in range(self.scope_combo.count())
                  if self.scope_combo.itemData(i) == previous), None)
        if same is not None:  # the user's choice, kept while the layer list changes
            self.scope_combo.setCurrentIndex(same)
        self.scope_combo.blockSignals(False)
        if same is None and self._whole_stack and self.scope_combo.count() > 1:
            self.set_scope(True)  # whole stack was chosen (or saved) for another layer
        self.scope_combo.setEnabled(self.scope_combo.count() > 1)

    def _scope_chosen(self, *_) -> None:
        """Remember a scope chosen in the combo (not the combo's rebuilding for another
        layer), so that a stack picked later opens in the same scope."""
        self._whole_stack = self.scope_combo.currentData() is not None
        self._save()

    def _show_task_controls(self, *_) -> None:
        self.form.setRowVisible(self.labels_combo, self.task == "inpaint")
        self.form.setRowVisible(self.factor_combo, self.task == "super_resolve")

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
                "whole_stack": self._whole_stack,
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
        self._whole_stack = saved.get("whole_stack") is True
        if self._whole_stack and self.scope_combo.count() > 1:
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
            self.progress_bar.setFormat("stopping…")
            self.worker.quit()

    def _request(self) -> RunRequest:
        """Gather the run's inputs; ``ValueError`` with a user-facing message if they do not fit."""
        layer = self.image_layer()
        if layer is None:
            raise ValueError("choose an image layer to restore (open one, or a sample from "
                             "File > Open Sample > Deep Image Prior)")
        if getattr(layer, "multiscale", False):
            raise ValueError(f"'{layer.name}' is a multiscale (pyramid) layer; open one level "
                             f"of it as a plain image layer to restore it")
        axes = self.image_axes()
        shape = tuple(layer.data.shape)
        self._check_view_shows_the_plane(layer, axes)
        position = np.round(_shown_point(layer, self.viewer.dims.point)).astype(int)
        position = dict(zip(axes.layer_dims, position))
        plan = plan_run(axes, shape, tuple(position.get(a, 0) for a in range(axes.ndim)),
                        stack_axes=self.scope_combo.currentData(), factor=self.factor)
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
        device = self.device_combo.currentText()
        # the region as the layer holds it: a lazy (dask, zarr) array is read on the worker
        data, alpha = layer.data[plan.region], None
        if plan.axes.rgb and data.shape[-1] == 4:  # RGBA: the colours are restored, not alpha
            data, alpha = split_alpha(data, -1)
        return RunRequest(data=data, plan=plan, task=self.task, alpha=alpha,
                          mask=mask, preset=self.preset_combo.currentText(),
                          seed=self.seed_spin.value(), device=device,
                          overrides=self.settings_panel.overrides())

    def _check_view_shows_the_plane(self, layer, axes: ImageAxes) -> None:
        """Refuse a current-slice run while a 2D view shows another plane of the layer than the
        one restored (its last two non-channel axes), e.g. after transposing the view."""
        dims = self.viewer.dims
        if self.scope_combo.currentData() is not None or dims.ndisplay != 2:
            return
        offset = dims.ndim - layer.ndim  # the layer's dimensions are the viewer's last ones
        shown = sorted(v - offset for v in dims.displayed)
        plane = sorted(axes.layer_dims.index(a) for a in axes.plane)
        if shown != plane:
            names = " × ".join(self._axis_name(layer, axes.layer_dims[d]) for d in shown
                               if 0 <= d < len(axes.layer_dims))
            raise ValueError(f"the view shows the {names} plane, but a slice is restored in "
                             f"the image's last two axes; restore the usual axis order (the "
                             f"viewer's transpose button) or run on the whole stack")

    def run(self) -> None:
        """Start a run with the current choices (errors become notifications)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        if self.running:
            return
        try:
            request = self._request()
        except ValueError as error:
            show_error(f"Deep Image Prior: {error}")
            return
        layer = self.image_layer()
        self._save()
        self.state = RunState()
        self._run_context = {"layer": layer, "request": request,
                             "geometry": output_geometry(Geometry(tuple(layer.scale),
                                                                  tuple(layer.translate)),
                                                         request.plan, _linear_part(layer))}
        self.preview_layer = self.viewer.add_image(
            np.zeros(request.plan.output_shape(request.data.shape), dtype=request.data.dtype),
            name=f"{layer.name} [preview]", metadata={PREVIEW_KEY: True},
            **self._layer_style(layer))
        self.loss_plot.clear()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("starting (loading torch)…")
        self.run_button.setText("Stop")
        worker = create_worker(restoration_steps, request, self.state, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def _layer_style(self, layer) -> dict[str, Any]:
        """Geometry and look of an output layer: overlays ``layer`` and looks like it."""
        geometry = self._run_context["geometry"]
        style = {"scale": geometry.scale, "translate": geometry.translate,
                 "rotate": layer.rotate, "shear": layer.shear, "affine": layer.affine,
                 "rgb": bool(getattr(layer, "rgb", False)), "blending": "translucent"}
        if getattr(layer, "axis_labels", None) is not None:
            style["axis_labels"] = tuple(layer.axis_labels)
        if getattr(layer, "units", None) is not None:
            style["units"] = tuple(str(u) for u in layer.units)
        if not style["rgb"]:
            style["colormap"] = layer.colormap
        style["contrast_limits"] = tuple(layer.contrast_limits)
        return style

    def _on_progress(self, progress: Progress) -> None:
        self.device_label.setText(f"runs on: {progress.device}")
        text = "backward pass · " if progress.backward else ""
        position = slice_position(progress.slice_number, progress.n_slices, progress.backward)
        if progress.group_size > 1:
            first = position + 1 - progress.group_size
            text += f"slices {first}-{position}/{progress.n_slices} · "
        else:
            text += f"slice {position}/{progress.n_slices} · "
        if progress.n_tiles > 1:
            text += f"tile {progress.tile + 1}/{progress.n_tiles} · "
        if progress.n_runs > 1:
            text += f"run {progress.run + 1}/{progress.n_runs} · "
        text += f"iteration {progress.iteration}/{progress.max_iterations}"
        if progress.seconds_left is not None:
            text += f" · ~{format_duration(progress.seconds_left)} left"
        self.progress_bar.setValue(int(1000 * min(1.0, progress.steps_done
                                                  / max(1, progress.steps_total))))
        self.progress_bar.setFormat(text)
        self.loss_plot.add(progress.steps_done, progress.loss, progress.criterion)
        if progress.previews and self.preview_layer is not None:
            axes = self._run_context["request"].plan.axes
            for stack_index, estimate in progress.previews:
                self.preview_layer.data[_slice_index(axes, stack_index)] = estimate
            self.preview_layer.refresh()

    def _on_finished(self) -> None:
        from napari.utils.notifications import show_error, show_info

        state, context = self.state, self._run_context
        self.worker = None
        self.run_button.setText("Run")
        preview, self.preview_layer = self.preview_layer, None
        if preview is not None and preview not in self.viewer.layers:
            preview = None
        if state.error is None and state.last is not None:
            self._add_result(state, context, preview)
        else:
            if preview is not None:
                self.viewer.layers.remove(preview)
            if state.error is not None:
                self.progress_bar.setFormat("failed: see the notification")
                show_error(state.error)
            else:
                self.progress_bar.setFormat("stopped before the first result")
                show_info("Deep Image Prior: stopped before the first snapshot; no result to "
                          "keep.")
        self._refresh_layers()

    def _add_result(self, state: RunState, context: dict[str, Any], preview=None) -> None:
        """Turn the preview layer into the result layer (or add one): re-using the layer
        spares the GUI thread the cost of building a new one at the end of the run."""
        from napari.utils.notifications import show_info

        layer, request, last = context["layer"], context["request"], state.last
        finished = bool(last.done)
        from napari_dip import run_record

        metadata = {"napari_dip": {
            "source_layer": layer.name, "task": request.task, "factor": request.plan.factor,
            "preset": request.preset, "seed": request.seed, "device_choice": request.device,
            "overrides": request.overrides, "region": {str(a): i for a, i in
                                                      request.plan.fixed.items()},
            "stack_axes": list(request.plan.looped), "finished": finished,
            # in the backward pass (stack_passes=2) every slice has its forward result already
            "slices_done": last.n_slices if last.pass_number else
            last.slice_number + 1 - (0 if last.snapshot.done else len(last.group)),
            "n_slices": last.n_slices, **run_record(last.snapshot),
            # the run's settings, not the shorter schedule of a stack's later slices
            "config": state.config, "threads": state.threads,
            "channel_axis": request.plan.axes.channel, "rgb": request.plan.axes.rgb,
            "intensity_range": list(last.intensity_range)}}
        suffix = f"[{task_label(request.task)}]"
        name = f"{layer.name} {suffix}"
        result = last.result.copy()
        if request.alpha is not None:  # the input's alpha back, enlarged like the colours
            result = with_alpha(result, np.asarray(request.alpha), -1,
                                tuple(request.plan.axes.plane), request.plan.factor)
        if preview is not None:
            preview.data = result
            preview.name, preview.metadata = name, metadata
            self.result_layer = preview
        else:
            self.result_layer = self.viewer.add_image(result, name=name,
                                                      metadata=metadata,
                                                      **self._layer_style(layer))
        self.uncertainty_layer = None
        if last.uncertainty is not None:
            self.uncertainty_layer = self._add_uncertainty(last.uncertainty, layer, suffix,
                                                           metadata)
        if finished:
            self.progress_bar.setValue(1000)
            self.progress_bar.setFormat(f"done: {last.n_slices} slice(s), "
                                        f"{format_duration(last.snapshot.elapsed)} on last")
        else:
            position = slice_position(last.slice_number, last.n_slices, last.pass_number == 1)
            self.progress_bar.setFormat(f"stopped {'in the backward pass ' * last.pass_number}"
                                        f"at slice {position}/{last.n_slices}, iteration "
                                        f"{last.snapshot.iteration}")
            unreached = "" if last.n_slices == 1 or last.pass_number else \
                " Slices not reached are left at 0."
            show_info(f"Deep Image Prior: stopped; kept the result so far as "
                      f"'{self.result_layer.name}'.{unreached}")

    def _add_uncertainty(self, uncertainty: np.ndarray, layer, suffix: str, metadata):
        """An uncertainty layer from the run's map (Bayesian DIP; slices not reached are 0)."""
        axes = self._run_context["request"].plan.axes
        # one map for the colour image: the channels' mean; else the layer's own copy
        stack = uncertainty.mean(axis=axes.channel) if axes.rgb else uncertainty.copy()
        style = self._layer_style(layer)
        style.update(colormap="magma", rgb=False, blending="additive")
        style.pop("contrast_limits", None)
        return self.viewer.add_image(stack, name=f"{layer.name} {suffix[:-1]} uncertainty]",
                                     metadata=metadata, **style)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.stop()
        super().closeEvent(event)

    def event(self, event) -> bool:
        # napari closes a dock widget by taking it out of its dock (no close event): a widget
        # left without a parent stops its run, as the Stop button would
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.stop()
        return super().event(event)


def _linear_part(layer):
    """A layer's data-to-world map without its translate and extra affine (scale, then shear,
    then rotate): where a shift of the data lands, for the output layer's translate."""
    from napari.utils.transforms import CompositeAffine

    transform = CompositeAffine(scale=layer.scale, translate=np.zeros(layer.ndim),
                                rotate=layer.rotate, shear=layer.shear, ndim=layer.ndim)
    return lambda shift: np.asarray(transform(np.asarray(shift, dtype=float)))


def _slice_index(axes: ImageAxes, stack_index: tuple[int, ...]) -> tuple:
    """Index of one 2D slice in the output region, from the engine's index over the leading
    (non-channel, non-plane) axes."""
    index: list[Any] = [slice(None)] * axes.ndim
    for axis, i in zip(axes.leading, stack_index):
        index[axis] = i
    return tuple(index)


def _shown_point(layer, world_point) -> np.ndarray:
    """The data coordinates of the slice the layer shows at the viewer's ``world_point``: as
    napari slices it, with the viewer's units applied to the layer's (a layer in um beside
    one in nm), where napari says; else the layer's plain world-to-data transform."""
    shown = getattr(getattr(layer, "_data_slice", None), "point", None)
    if shown is not None and len(shown) == layer.ndim and \
            not np.isnan(np.asarray(shown, dtype=float)).all():
        return np.nan_to_num(np.asarray(shown, dtype=float))  # displayed axes may be NaN
    return np.asarray(layer.world_to_data(world_point), dtype=float)


def slice_position(slice_number: int, n_slices: int, backward: bool) -> int:
    """Where a slice lies in the stack (1-based), from its number within its pass: the
    backward pass (``stack_passes=2``) counts from the second-to-last slice down."""
    return n_slices - slice_number if backward else slice_number + 1


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``"1 min 15 s"``; short and readable in a progress bar."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
