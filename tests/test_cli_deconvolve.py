"""``napari-dip deconvolve``: the PSF flags, their refusals and the run record's PSF."""

import json

import numpy as np
import pytest
import tifffile

from napari_dip.cli import main
from napari_dip.engine.psf import gaussian_psf

FAST = ["--preset", "quick", "--max-iterations", "4", "--report-every", "2", "--scales", "2",
        "--threads", "1", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_stack(path, *, metadata=True, shape=(2, 32, 32)):
    """A ZYX uint16 stack; with ``metadata``, ImageJ's pixel size of 0.1 micron (100 nm)."""
    data = (1000 + 200 * np.random.default_rng(0).standard_normal(shape)).astype(np.uint16)
    if metadata:
        tifffile.imwrite(path, data, imagej=True, resolution=(10.0, 10.0),
                         metadata={"axes": "ZYX", "unit": "micron"})
    else:
        tifffile.imwrite(path, data)


def _record(path):
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_a_gaussian_psf_runs_and_its_record_repeats_the_run(tmp_path):
    _write_stack(tmp_path / "a.tif")
    assert main(["deconvolve", str(tmp_path / "a.tif"), "--out", str(tmp_path / "first"),
                 "--psf-sigma", "1.5", *FAST]) == 0
    output = tmp_path / "first" / "a.tif"
    record = _record(output)
    assert record["psf"] == {"model": "gaussian", "sigma": 1.5, "shape": [13, 13]}
    assert record["task"] == "deconvolve"
    assert main(["deconvolve", str(tmp_path / "a.tif"), "--out", str(tmp_path / "again"),
                 "--config", str(output) + ".json", "--quiet"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again" / "a.tif"),
                                  tifffile.imread(output))


def test_a_psf_file_is_recorded_by_path_shape_and_digest(tmp_path):
    _write_stack(tmp_path / "a.tif")
    tifffile.imwrite(tmp_path / "psf.tif", gaussian_psf(1.0).astype(np.float32))
    assert main(["deconvolve", str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"),
                 "--psf", str(tmp_path / "psf.tif"), *FAST]) == 0
    psf = _record(tmp_path / "out" / "a.tif")["psf"]
    assert psf["path"] == str(tmp_path / "psf.tif") and psf["shape"] == [9, 9]
    assert len(psf["sha256"]) == 64


def test_the_airy_psf_takes_the_pixel_size_from_the_file(tmp_path):
    _write_stack(tmp_path / "a.tif")
    assert main(["deconvolve", str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"),
                 "--na", "1.4", "--wavelength", "520", "--confocal", *FAST]) == 0
    psf = _record(tmp_path / "out" / "a.tif")["psf"]
    assert psf["model"] == "airy" and psf["pixel_size_nm"] == pytest.approx(100.0)
    assert psf["confocal"] is True and psf["numerical_aperture"] == 1.4


@pytest.mark.parametrize("flags, words", [
    ([], "needs the microscope's PSF"),
    (["--na", "1.4"], "--wavelength"),
    (["--wavelength", "520"], "give --na"),
    (["--na", "1.4", "--wavelength", "520"], "--pixel-size"),
    (["--psf-sigma", "-1"], "sigma must be a positive"),
    (["--psf", "PSF"], "the PSF is 3D"),
])
def test_bad_or_missing_psfs_are_one_line_usage_errors(tmp_path, capsys, flags, words):
    _write_stack(tmp_path / "a.tif", metadata=False)
    tifffile.imwrite(tmp_path / "psf3d.tif", np.ones((3, 5, 5), np.float32),
                     photometric="minisblack")
    flags = [str(tmp_path / "psf3d.tif") if flag == "PSF" else flag for flag in flags]
    code = main(["deconvolve", str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"),
                 *flags, *FAST])
    message = capsys.readouterr().err
    assert code == 2 and words in message and message.count("\n") == 1
    assert not (tmp_path / "out" / "a.tif").exists()


def test_a_psf_larger_than_an_input_fails_that_input_with_the_reason(tmp_path, capsys):
    _write_stack(tmp_path / "a.tif", metadata=False)
    code = main(["deconvolve", str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"),
                 "--psf-sigma", "9", *FAST])
    assert code == 1 and "larger than the image plane" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.tif").exists()
