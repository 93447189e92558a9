"""``--save-history``: each output's checkpoints in a TIFF beside it, openable in Fiji."""

import json

import numpy as np
import pytest
import tifffile

from napari_dip.cli import main

FAST = ["--preset", "quick", "--max-iterations", "12", "--report-every", "2", "--scales", "2",
        "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _record(output):
    return json.loads(output.with_name(output.name + ".json").read_text())


def test_history_file_of_a_stack_is_a_hyperstack_whose_last_checkpoint_is_the_output(tmp_path):
    rng = np.random.default_rng(0)
    data = (1000 + 200 * rng.standard_normal((2, 16, 16))).clip(0, 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells.tif", data, imagej=True, resolution=(10.0, 10.0),
                     metadata={"axes": "ZYX", "unit": "micron"})
    assert main(["denoise", str(tmp_path / "cells.tif"), "--out", str(tmp_path / "out"),
                 "--save-history", *FAST]) == 0
    output = tmp_path / "out" / "cells.tif"
    with tifffile.TiffFile(output.with_name("cells.history.tif")) as tif:
        assert tif.is_imagej and tif.series[0].axes == "TZYX"
        history = tif.asarray()
        info = json.loads(tif.imagej_metadata["Info"])
    result = tifffile.imread(output)
    assert history.shape[1:] == result.shape and history.dtype == result.dtype
    np.testing.assert_array_equal(history[-1], result)
    record = _record(output)["history"]
    assert record["axes"] == "TZYX" and record["slices"] == info
    assert [p["iteration"] for p in info["[0]"]][-1] == 12 and info["[0]"][-1]["note"] == "last"
    assert not any(name.startswith(".") for name in (p.name for p in output.parent.iterdir()))


def test_history_file_of_an_image_labels_each_plane_with_its_iteration(tmp_path):
    rng = np.random.default_rng(1)
    tifffile.imwrite(tmp_path / "image.tif", rng.random((16, 16), dtype=np.float32))
    assert main(["denoise", str(tmp_path / "image.tif"), "--out", str(tmp_path / "out"),
                 "--save-history", "--history", "4", *FAST]) == 0
    with tifffile.TiffFile(tmp_path / "out" / "image.history.tif") as tif:
        labels = tif.imagej_metadata["Labels"]
        assert tif.series[0].axes == "TYX" and len(labels) == tif.series[0].shape[0] <= 4
    assert labels[-1] == "iteration 12 (last)"


def test_history_file_is_not_written_without_save_history(tmp_path):
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((16, 16), np.float32) + 0.5)
    assert main(["denoise", str(tmp_path / "image.tif"), "--out", str(tmp_path / "out"),
                 *FAST]) == 0
    assert not (tmp_path / "out" / "image.history.tif").exists()
    assert "history" not in _record(tmp_path / "out" / "image.tif")
