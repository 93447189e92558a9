"""The choice of what to restore: the image layer, the mask's Labels layer, the channel axis and
the scope (the slice on screen or a whole stack), kept in step with the viewer's layers."""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox

from ..engine.layout import ImageAxes, stack_scopes
from .output_layers import PREVIEW_KEY


def axis_name(layer, axis: int) -> str:
    """A layer axis as users know it: its label (``"z"``), or ``"axis 2"`` where napari's
    default labels are only numbers counted from the end (``"-3"``)."""
    labels = getattr(layer, "axis_labels", None)
    if labels is not None and axis < len(labels) and \
            not str(labels[axis]).lstrip("-").isdigit():
        return str(labels[axis])
    return f"axis {axis}"


class LayerChoices(QObject):
    """Image, mask, channel axis and scope combos, refreshed as layers come, go and change.

    Layers are held by identity, so a rename or a namesake cannot swap them. The scope the user
    chose (current slice or whole stack) is remembered across layers that cannot take it.
    ``scope_chosen`` is emitted when the user picks a scope.
    """

    scope_chosen = Signal()

    def __init__(self, viewer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.whole_stack = False  # the scope last chosen, kept while no stack can take it
        self._axes_layer = None  # the image layer the channel choices were made for
        self.image_combo = QComboBox(toolTip="the image layer to restore (it is never changed)")
        self.labels_combo = QComboBox(toolTip="Labels layer marking the missing pixels (label "
                                              "> 0); 2D: every slice, nD: slice by slice")
        self.channel_combo = QComboBox(toolTip="the axis holding channels, restored together")
        self.scope_combo = QComboBox(toolTip="the slice on screen, or every slice along an axis "
                                             "(slice k starts from slice k-1's fit)")
        layers = viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.reordered):
            event.connect(self.refresh_layers)
        self.image_combo.currentIndexChanged.connect(self._refresh_axes)
        self.channel_combo.currentIndexChanged.connect(self._refresh_scopes)
        self.scope_combo.currentIndexChanged.connect(self._scope_chosen)
        self.refresh_layers()

    def rows(self) -> dict[str, QComboBox]:
        """The form rows, labelled, in the order the form shows them."""
        return {"image": self.image_combo, "mask (Labels)": self.labels_combo,
                "channel axis": self.channel_combo, "scope": self.scope_combo}

    def image_layer(self):
        from napari.layers import Image

        return self._chosen(self.image_combo, Image)

    def labels_layer(self):
        from napari.layers import Labels

        return self._chosen(self.labels_combo, Labels)

    def _chosen(self, combo: QComboBox, kind):
        layer = combo.currentData()
        return layer if isinstance(layer, kind) and layer in self.viewer.layers else None

    def image_axes(self) -> ImageAxes | None:
        """The roles of the chosen image's axes (None without an image)."""
        layer = self.image_layer()
        if layer is None:
            return None
        return ImageAxes.of(layer.data.ndim, rgb=bool(getattr(layer, "rgb", False)),
                            channel=self.channel_combo.currentData())

    def stack_axes(self) -> tuple[int, ...] | None:
        """The axes a whole-stack run loops over; None for the current slice."""
        return self.scope_combo.currentData()

    def set_scope(self, whole_stack: bool, axis: int | None = None) -> None:
        """Choose the current slice, or the whole stack along ``axis`` (default: the leading
        axis nearest the image plane, usually Z)."""
        scopes = [self.scope_combo.itemData(i) for i in range(self.scope_combo.count())]
        if not whole_stack:
            matches = [i for i, scope in enumerate(scopes) if scope is None]
        elif axis is None:
            matches = [i for i, scope in enumerate(scopes) if scope is not None
                       and len(scope) == 1][-1:]
        else:
            matches = [i for i, scope in enumerate(scopes) if scope == (axis,)]
        if not matches:
            raise ValueError(f"no such scope for this layer: whole_stack={whole_stack}, "
                             f"axis={axis}")
        self.scope_combo.setCurrentIndex(matches[0])

    def refresh_layers(self, event=None) -> None:
        from napari.layers import Image, Labels

        for layer in self.viewer.layers:  # follow renames (connecting twice is a no-op)
            layer.events.name.connect(self.refresh_layers)
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

    def _refresh_axes(self, *_) -> None:
        layer = self.image_layer()
        # a channel axis chosen for one layer means nothing for another
        current = self.channel_combo.currentData() if layer is self._axes_layer else None
        self._axes_layer = layer
        combo = self.channel_combo
        combo.blockSignals(True)
        combo.clear()
        if layer is not None and getattr(layer, "rgb", False):
            combo.addItem("RGB(A), last axis", None)
        else:
            combo.addItem("none", None)
            for axis in range(layer.data.ndim - 2 if layer is not None else 0):
                combo.addItem(axis_name(layer, axis), axis)
            combo.setCurrentIndex(max(combo.findData(current), 0))
        combo.setEnabled(combo.count() > 1)
        combo.blockSignals(False)
        self._refresh_scopes()

    def _refresh_scopes(self, *_) -> None:
        previous = self.scope_combo.currentData()
        layer = self.image_layer()
        combo = self.scope_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem("current slice", None)
        try:
            axes = self.image_axes()
        except ValueError:
            axes = None
        for scope in stack_scopes(axes) if axes is not None else ():
            names = " × ".join(axis_name(layer, a) for a in scope)
            combo.addItem(f"whole stack along {names}", scope)
        same = None if previous is None and self.whole_stack else \
            next((i for i in range(combo.count()) if combo.itemData(i) == previous), None)
        if same is not None:  # the user's choice, kept while the layer list changes
            combo.setCurrentIndex(same)
        combo.blockSignals(False)
        if same is None and self.whole_stack and combo.count() > 1:
            self.set_scope(True)  # whole stack was chosen (or saved) for another layer
        combo.setEnabled(combo.count() > 1)

    def _scope_chosen(self, *_) -> None:
        """Remember a scope chosen in the combo (not the combo's rebuilding for another
        layer), so that a stack picked later opens in the same scope."""
        self.whole_stack = self.scope_combo.currentData() is not None
        self.scope_chosen.emit()
