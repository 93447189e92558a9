"""The widget's "deconvolve" task and its PSF picker, in a real napari viewer."""

import numpy as np
import pytest
import torch

from napari_dip.engine.convolution import convolve
from napari_dip.engine.psf import gaussian_psf

from .test_widget import configure, dock, qt, run_to_end  # noqa: F401 - dock is a fixture


def _blurred(side=32):
    yy, xx = np.mgrid[:side, :side]
    clean = (0.2 + 0.6 * ((yy // 8 + xx // 8) % 2)).astype(np.float32)
    psf = torch.from_numpy(gaussian_psf(1.0)).float()
    return convolve(torch.from_numpy(clean)[None, None], psf)[0, 0].numpy()


@qt
def test_a_gaussian_model_psf_deconvolves_and_is_recorded(dock, qtbot):  # noqa: F811
    viewer, widget = dock
    viewer.add_image(_blurred(), name="blurred")
    configure(widget, task="deconvolve", max_iterations=10)
    assert widget.psf_picker.isVisibleTo(widget)
    widget.psf_picker.source_combo.setCurrentText("Gaussian")
    widget.psf_picker.sigma_spin.setValue(1.0)
    result = run_to_end(qtbot, widget)
    assert result.name == "blurred [deconvolve]" and result.data.shape == (32, 32)
    record = result.metadata["napari_dip"]
    assert record["task"] == "deconvolve" and record["iterations"] == 10
    assert record["psf"] == {"model": "gaussian", "sigma": 1.0, "shape": [9, 9]}


@qt
def test_the_airy_psf_takes_the_pixel_size_from_the_layer_scale(dock):  # noqa: F811
    viewer, widget = dock
    picker = widget.psf_picker
    picker.source_combo.setCurrentText("Airy, widefield")
    in_microns = viewer.add_image(_blurred(), scale=(0.1, 0.1), units=("um", "um"))
    assert picker.psf(in_microns)["pixel_size_nm"] == pytest.approx(100.0)
    in_pixels = viewer.add_image(_blurred())
    with pytest.raises(ValueError, match="pixel size"):
        picker.psf(in_pixels)
    picker.pixel_spin.setValue(65.0)
    assert picker.psf(in_pixels)["pixel_size_nm"] == pytest.approx(65.0)
    picker.source_combo.setCurrentText("image layer")
    viewer.add_image(np.zeros((5, 5)), name="bead")
    assert picker.layer_combo.count() == 3  # a layer opened while it is shown is listed too
    picker.layer_combo.setCurrentText(in_pixels.name)
    assert picker.psf(in_microns).shape == (32, 32)
