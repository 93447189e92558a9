"""Smoke test of benchmarks/peers.py: every peer denoises a tiny image, the benchmark records
PSNR and seconds per image and method, and it skips cleanly without data or without bm3d."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_dip.engine.measures import psnr

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    path = list(sys.path)  # the script puts benchmarks/ on it to import its helpers
    spec = importlib.util.spec_from_file_location("benchmark_peers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    sys.path[:] = path
    return module


def smooth_pair(side=32, sigma=0.1, seed=0):
    """(clean, noisy): a smooth image in [0.2, 0.8] and it with Gaussian noise of ``sigma``."""
    y, x = np.mgrid[0:side, 0:side] / side
    clean = (0.5 + 0.3 * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return clean, (clean + noise).astype(np.float32)


# Few steps: enough for ZS-N2N to clean an easy image, a smoke run for the others.
STEPS = {"nl-means": None, "bm3d": None, "bm3d-unit": None, "zs-n2n": 200, "noise2fast": 20,
         "napari-dip": 20}


@pytest.mark.parametrize("name", list(STEPS))
def test_every_peer_denoises_a_tiny_image(peers, name):
    if name.startswith("bm3d"):
        pytest.importorskip("bm3d")
    clean, noisy = smooth_pair()
    before = noisy.copy()
    run = peers.peers(preset="quick")[name]
    estimate, details = run(noisy, steps=STEPS[name], seed=0)
    assert estimate.shape == noisy.shape
    assert np.isfinite(estimate).all()
    np.testing.assert_array_equal(noisy, before)
    if name in ("nl-means", "zs-n2n", "bm3d", "bm3d-unit"):
        assert psnr(estimate, clean) > psnr(noisy, clean) + 3


def test_bm3d_without_the_package_is_skipped_with_its_fix(peers, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)
    with pytest.raises(peers.PeerUnavailable, match="pip install bm3d"):
        peers.bm3d_vst(smooth_pair()[1])


def test_photon_noise_parameters_are_recovered(peers):
    rng = np.random.default_rng(0)
    ramp = 0.05 + 0.9 * np.mgrid[0:128, 0:128][1] / 128
    gain, read_sigma = 0.02, 0.01
    noisy = rng.poisson(ramp / gain) * gain + rng.normal(0, read_sigma, ramp.shape)
    estimated_gain, _ = peers.poisson_gaussian_noise(noisy)
    assert estimated_gain == pytest.approx(gain, rel=0.25)


def write_fmd_folder(root: Path, names=("a", "b"), side=64) -> Path:
    """A folder laid out as the FMD pairs: uint8 ground truth and noisy frames."""
    import tifffile

    for folder in ("Confocal", "Confocal_gaussianpoisson"):
        (root / folder).mkdir(parents=True)
    for index, name in enumerate(names):
        clean, noisy = smooth_pair(side, seed=index)
        tifffile.imwrite(root / "Confocal" / f"{name}.tif", (clean * 255).astype(np.uint8))
        tifffile.imwrite(root / "Confocal_gaussianpoisson" / f"{name}.tif",
                         (np.clip(noisy, 0, 1) * 255).astype(np.uint8))
    return root


def test_benchmark_records_psnr_and_seconds_per_image_and_method(peers, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # as where bm3d is not installed
    images = write_fmd_folder(tmp_path / "fmd")
    out, table = tmp_path / "results.json", tmp_path / "table.md"
    chosen = ["nl-means", "bm3d", "bm3d-unit", "zs-n2n", "noise2fast"]
    assert peers.main(["--images", str(images), "--peers", ",".join(chosen), "--steps", "10",
                       "--out", str(out), "--table", str(table)]) == 0
    record = json.loads(out.read_text())
    assert [entry["image"] for entry in record["images"]] == ["a", "b"]
    for entry in record["images"]:
        assert entry["shape"] == [64, 64]
        assert set(entry["methods"]) == set(chosen) - {"bm3d", "bm3d-unit"}
        for result in entry["methods"].values():
            assert np.isfinite(result["psnr"]) and result["cpu_seconds"] >= 0
    assert "pip install bm3d" in record["skipped"]["bm3d-unit"]
    text = table.read_text()
    assert "| mean |" in text and "ZS-N2N" in text and "BM3D" not in text
    assert record["command"] in text
    again = tmp_path / "again.md"
    assert peers.main(["--replot", str(out), "--table", str(again)]) == 0
    assert again.read_text() == text
    assert sorted(p.name for p in images.rglob("*")) == sorted(
        ["Confocal", "Confocal_gaussianpoisson", "a.tif", "b.tif", "a.tif", "b.tif"])


def test_runs_of_other_peers_on_the_same_images_share_one_table(peers, tmp_path):
    images = write_fmd_folder(tmp_path / "fmd", names=("a",))
    first, second, table = tmp_path / "1.json", tmp_path / "2.json", tmp_path / "table.md"
    assert peers.main(["--images", str(images), "--peers", "nl-means", "--out", str(first)]) == 0
    assert peers.main(["--images", str(images), "--peers", "zs-n2n", "--steps", "5",
                       "--out", str(second)]) == 0
    assert peers.main(["--replot", str(first), str(second), "--table", str(table)]) == 0
    lines = table.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| image |"))
    row = next(line for line in lines if line.startswith("| a |"))
    assert "NL-means" in header and "ZS-N2N" in header
    assert "–" not in row
    assert "--peers nl-means" in table.read_text() and "--peers zs-n2n" in table.read_text()


def test_named_images_only_and_napari_dip_data_term_recorded(peers, tmp_path):
    """``--names`` picks images; ``--data-term auto`` records what the engine chose."""
    images = write_fmd_folder(tmp_path / "fmd", names=("a", "b", "c"))
    out, table = tmp_path / "dip.json", tmp_path / "table.md"
    assert peers.main(["--images", str(images), "--names", "c,a", "--peers", "napari-dip",
                       "--preset", "quick", "--data-term", "auto", "--steps", "5",
                       "--out", str(out), "--table", str(table)]) == 0
    record = json.loads(out.read_text())
    assert [entry["image"] for entry in record["images"]] == ["a", "c"]
    for entry in record["images"]:
        result = entry["methods"]["napari-dip"]
        assert result["data_term"] == "auto"
        assert result["data_term_chosen"] in ("gaussian", "poisson", "poisson_gaussian")
    assert "napari-dip (quick, data term auto)" in table.read_text()


def test_benchmark_without_images_says_so_and_writes_nothing(peers, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert peers.main(["--images", str(tmp_path / "absent"), "--out", str(out)]) == 0
    assert "no FMD pairs" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_peer_is_refused_with_the_choices(peers, capsys):
    with pytest.raises(SystemExit):
        peers.main(["--peers", "nl-means,bm4d"])
    assert "zs-n2n" in capsys.readouterr().err


def test_plot_of_psnr_against_seconds(peers, tmp_path):
    pytest.importorskip("matplotlib")
    record = dict(preset="auto", images=[dict(
        image="a", shape=[64, 64], input_psnr=20.0,
        methods={"nl-means": dict(psnr=25.0, cpu_seconds=0.1),
                 "zs-n2n": dict(psnr=27.0, cpu_seconds=30.0)})])
    peers.plot(record, tmp_path / "peers.png")
    assert (tmp_path / "peers.png").stat().st_size > 0
