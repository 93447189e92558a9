"""The PSF picker of the "Deconvolve" task: an image layer, or a model with its numbers.

A model is a Gaussian of a width in pixels, or the Airy-type PSF of a widefield or confocal
microscope from its numerical aperture, emission wavelength and pixel size; the pixel size is
taken from the image layer's scale where its units are lengths (napari's ``units``), unless
one is typed in. :meth:`PsfPicker.psf` gives what ``psf=`` of the API takes.
"""

from __future__ import annotations


import numpy as np
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QWidget

from ..engine.psf import psf_description

SOURCES = ("Gaussian", "Airy, widefield", "Airy, confocal", "image layer")
"""The picker's choices, in the order of its source list."""


def layer_pixel_size_nm(layer) -> float | None:
    """The layer's pixel size along its last axis in nanometres, where its scale is in a
    length unit (napari's ``units``); None in pixels or without units."""
    units = getattr(layer, "units", None)
    if layer is None or not units:
        return None
    try:
        return float((float(layer.scale[-1]) * units[-1]).to("nanometer").magnitude)
    except Exception:  # noqa: BLE001 - pint raises its own errors for pixels and unknown units
        return None


def _spin(low: float, high: float, value: float, decimals: int, suffix: str,
          tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox(toolTip=tip, decimals=decimals, suffix=suffix)
    spin.setRange(low, high)
    spin.setValue(value)
    return spin


class PsfPicker(QWidget):
    """The PSF of a deconvolution: a source list, then the rows that source needs."""

    def __init__(self, viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.source_combo = QComboBox(toolTip="the microscope's point-spread function: a model "
                                              "or a measured PSF opened as an image layer")
        self.source_combo.addItems(SOURCES)
        self.layer_combo = QComboBox(toolTip="a 2D image of the PSF (e.g. a bead), cropped "
                                             "around it; normalised and centred before use")
        self.sigma_spin = _spin(0.1, 50.0, 1.5, 2, " px", "standard deviation of the Gaussian")
        self.aperture_spin = _spin(0.05, 1.7, 1.4, 2, "", "the objective's numerical aperture")
        self.wavelength_spin = _spin(200.0, 2000.0, 520.0, 0, " nm", "emission wavelength")
        self.pixel_spin = _spin(0.0, 100000.0, 0.0, 1, " nm",
                                "pixel size at the sample (camera pixel / magnification); "
                                "'from layer': the image layer's scale, where it is a length")
        self.pixel_spin.setSpecialValueText("from layer")
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("source", self.source_combo), ("PSF layer", self.layer_combo),
                              ("sigma", self.sigma_spin), ("NA", self.aperture_spin),
                              ("wavelength", self.wavelength_spin),
                              ("pixel size", self.pixel_spin)):
            self.form.addRow(label, widget)
        self.source_combo.currentIndexChanged.connect(self._show_rows)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh_layers)
        self._show_rows()

    @property
    def source(self) -> str:
        return SOURCES[self.source_combo.currentIndex()]

    def refresh_layers(self, *_) -> None:
        """List the viewer's image layers, keeping the chosen one where it is still open."""
        chosen = self.layer_combo.currentText()
        self.layer_combo.clear()
        self.layer_combo.addItems([layer.name for layer in self.viewer.layers
                                   if layer._type_string == "image"])
        if self.layer_combo.findText(chosen) >= 0:
            self.layer_combo.setCurrentText(chosen)

    def _show_rows(self, *_) -> None:
        airy = self.source.startswith("Airy")
        for widget, shown in ((self.layer_combo, self.source == "image layer"),
                              (self.sigma_spin, self.source == "Gaussian"),
                              (self.aperture_spin, airy), (self.wavelength_spin, airy),
                              (self.pixel_spin, airy)):
            self.form.setRowVisible(widget, shown)
        self.refresh_layers()

    def psf(self, image_layer=None):
        """What ``psf=`` takes: the chosen layer's pixels, or the model's description.
        ``image_layer`` (the layer restored) gives the pixel size when none is typed in.
        Raises ValueError with the fix for a choice that cannot make a PSF."""
        if self.source == "image layer":
            name = self.layer_combo.currentText()
            if name not in self.viewer.layers:
                raise ValueError("choose the image layer that holds the PSF (open a measured "
                                 "PSF as an image), or a PSF model")
            return np.asarray(self.viewer.layers[name].data)
        if self.source == "Gaussian":
            return psf_description("gaussian", sigma=self.sigma_spin.value())
        pixel = self.pixel_spin.value() or layer_pixel_size_nm(image_layer)
        if not pixel:
            raise ValueError("the Airy PSF needs the pixel size at the sample: type it in "
                             "(nm), or give the image layer a scale in a length unit")
        return psf_description("airy", numerical_aperture=self.aperture_spin.value(),
                               wavelength_nm=self.wavelength_spin.value(),
                               pixel_size_nm=pixel, confocal=self.source.endswith("confocal"))
