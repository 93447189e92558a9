"""The engine's settings as a form: one magicgui control per field of
:class:`~napari_dip.DIPConfig`, generated from :func:`~napari_dip.config.describe_fields` (so
widget and engine cannot drift apart), in groups a user can open one at a time."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, FloatSpinBox, SpinBox
from qtpy.QtWidgets import QFormLayout, QVBoxLayout, QWidget
from superqt import QCollapsible

from ..config import grouped_fields

FLOAT_DECIMALS = 6
UNBOUNDED = 1e9


def make_control(spec: dict[str, Any]):
    """A magicgui control for one config field: a choice, or a number within its bounds."""
    common = dict(name=spec["name"], label=spec["name"].replace("_", " "), tooltip=spec["doc"])
    # (the label is shown by the section's form, not by magicgui)
    if spec.get("choices"):
        return ComboBox(choices=[str(c) for c in spec["choices"]], **common)
    low, high = spec.get("low"), spec.get("high")
    low = -UNBOUNDED if low is None else low
    high = UNBOUNDED if high is None else high
    if spec["type"] in ("int", int):
        return SpinBox(min=int(low), max=int(high), **common)
    control = FloatSpinBox(min=low, max=high, step=None, **common)  # step None: adaptive
    control.native.setDecimals(FLOAT_DECIMALS)
    return control


class SettingsPanel(QWidget):
    """Every engine setting, in collapsible sections; shows a preset's values, and
    :meth:`overrides` is what the user changed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.controls: dict[str, Any] = {}
        self.sections: dict[str, QCollapsible] = {}
        self.preset_values: dict[str, Any] = {}
        for number, (title, fields) in enumerate(grouped_fields()):
            form = QWidget()
            rows = QFormLayout(form)  # one label column per section, aligned
            rows.setContentsMargins(8, 0, 0, 4)
            for spec in fields:
                control = self.controls[spec["name"]] = make_control(spec)
                rows.addRow(control.label, control.native)
            section = QCollapsible(title)
            section.addWidget(form)
            if number == 0:
                section.expand(animate=False)
            self.sections[title] = section
            layout.addWidget(section)

    def value(self, name: str) -> Any:
        return self.controls[name].value

    def set_value(self, name: str, value: Any) -> None:
        control = self.controls[name]
        control.value = str(value) if isinstance(control, ComboBox) else value

    def show_preset(self, values: dict[str, Any], overrides: dict[str, Any] | None = None):
        """Show a preset's values, then the given overrides on top."""
        self.preset_values = dict(values)
        for name, value in {**values, **(overrides or {})}.items():
            if name in self.controls:
                self.set_value(name, value)

    def _same(self, name: str, value: Any) -> bool:
        preset = self.preset_values.get(name)
        if isinstance(value, float):
            return round(value, FLOAT_DECIMALS) == round(preset, FLOAT_DECIMALS)
        return value == preset

    def overrides(self) -> dict[str, Any]:
        """The settings the user changed from the preset."""
        if not self.preset_values:
            return {}  # no preset shown yet
        values = {name: self.value(name) for name in self.controls}
        return {name: value for name, value in values.items() if not self._same(name, value)}

    def connect_changed(self, slot) -> None:
        for control in self.controls.values():
            control.changed.connect(slot)
