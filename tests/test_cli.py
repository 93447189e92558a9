import numpy as np
import pytest
from skimage.io import imread

from napari_dip._sample_data import make_noisy_cell
from napari_dip.cli import build_parser, labelled_panels, main
from napari_dip.config import describe_fields


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
    assert panel.dtype == np.uint8 and panel.shape[1] == 3 * 64 + 8 and panel.shape[0] > 64
    clean, noisy = make_noisy_cell(64, seed=0)
    images, labels = panel[-64:], panel[:-64]
    np.testing.assert_array_equal(images[:, :64], (np.clip(noisy, 0, 1) * 255).round())
    np.testing.assert_array_equal(images[:, -64:], (clean * 255).round())
    for left in (0, 68, 136):  # noisy, restored, clean: each has its label written above it
        assert (labels[:, left:left + 64] < 128).any()
    assert not list(tmp_path.glob(".*part*"))  # no temporary file left behind


def test_cli_errors_are_one_line_and_exit_2(capsys):
    assert main(["demo", "--size", "2"]) == 2
    assert "at least 4x4" in capsys.readouterr().err


def test_the_demo_labels_each_panel_with_its_name_and_psnr():
    images = [np.full((40, 60), 0.5), np.zeros((40, 60)), np.ones((40, 60))]
    one_line = labelled_panels(images, [("a",), ("b",), ("c",)])
    two_lines = labelled_panels(images, [("noisy", "PSNR 20.00 dB"), ("restored", "PSNR 25.00 dB"),
                                         ("clean", "reference")])
    assert two_lines.shape[1] == one_line.shape[1] == 3 * 60 + 8
    assert two_lines.shape[0] > one_line.shape[0] > 40  # a row of text per label line
    header = two_lines[:-40]
    for left in (0, 64, 128):
        assert (header[:, left:left + 60] < 128).any()  # black text on white
    assert (header[:, 60:64] == 255).all()  # the gap between panels stays white
    np.testing.assert_array_equal(two_lines[-40:, 64:124], 0)


def _help(capsys, *flags):
    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", *flags])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_shows_the_everyday_options_and_points_to_help_all(capsys):
    text = _help(capsys, "--help")
    assert len(text.splitlines()) <= 70 and "--help-all" in text
    for everyday in ("--out", "--preset", "--max-iterations", "--seed", "--device", "--config",
                     "--resume", "--dask"):
        assert everyday in text
    assert "--learning-rate" not in text and "--cuda-graph" not in text
    everything = _help(capsys, "--help-all")
    assert everything.startswith(text.split("\n\n")[0])  # the same short usage line
    for section in ("network", "noise model", "stacks and tiles", "speed and hardware"):
        assert f"expert settings: {section}:" in everything


def test_every_config_field_is_still_accepted_as_an_option():
    parser = build_parser()
    for field in describe_fields():
        value = field["choices"][-1] if field["choices"] else field["default"]
        flag = f"--{field['name'].replace('_', '-')}"
        args = parser.parse_args(["denoise", "in.tif", "--out", "out", flag, str(value)])
        assert getattr(args, field["name"]) == value, flag
