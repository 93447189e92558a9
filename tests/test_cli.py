import numpy as np
from skimage.io import imread

from napari_dip.cli import main


def test_demo_reports_psnr_time_device_and_writes_a_png(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--size", "64", "--max-iterations", "30", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    lines = dict(line.split(":", 1) for line in text.splitlines()
                 if line.startswith(("PSNR", "time", "device")))
    before = float(lines["PSNR input "].split()[0])
    after = float(lines["PSNR result"].split()[0])
    assert after > before
    device = lines["device     "]
    assert "cpu" in device or "cuda" in device
    assert "channels_last" in device or "contiguous" in device  # the layout a rerun needs
    panel = imread(out)
    assert panel.dtype == np.uint8 and panel.shape == (64, 3 * 64 + 8)
    assert not list(tmp_path.glob(".*part*"))  # no temporary file left behind


def test_cli_errors_are_one_line_and_exit_2(capsys):
    assert main(["demo", "--size", "2"]) == 2
    assert "at least 4x4" in capsys.readouterr().err
