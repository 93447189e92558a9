"""Shared fixtures: tiny images, so the whole suite stays fast on a 2-core CPU."""

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def noisy_cell():
    """(clean, noisy) 64x64 float32 crops of scikit-image's cell image, sigma 25/255."""
    from napari_dip._sample_data import make_noisy_cell

    return make_noisy_cell(64)


def fit_parts(config):
    """(observation, network, code) of a fit of ``config`` to a random 32x32 image on the CPU,
    for tests that drive :func:`napari_dip.engine.fit.fit` directly."""
    import torch

    from napari_dip.engine.fit import build_fit
    from napari_dip.engine.problem import prepare_observation

    observation, _ = prepare_observation(np.random.rand(32, 32).astype(np.float32), mask=None,
                                         factor=None, guide=None, channel_axis=None,
                                         size_multiple=16)
    network, code = build_fit(observation, config, seed=0, device=torch.device("cpu"))
    return observation, network, code


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA


def tiny(**overrides):
    """Settings for a very small, very short fit."""
    settings = dict(preset="quick", max_iterations=5, report_every=5)
    settings.update(overrides)
    return settings


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ----------------------------------------------------------------------------- a display for Qt

def _start_xvfb():
    """Start a private Xvfb server and point DISPLAY at it; return the process (or None)."""
    import os
    import shutil
    import subprocess

    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or not shutil.which("Xvfb"):
        return None
    read_end, write_end = os.pipe()
    # -displayfd: Xvfb picks a free display number and writes it to us once it is ready
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0",
                               "1280x1024x24", "-nolisten", "tcp"], pass_fds=(write_end,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as ready:
        number = ready.readline().strip()
    if not number:
        server.kill()
        return None
    os.environ["DISPLAY"] = f":{number}"
    return server


def pytest_configure(config):
    import os

    os.environ.setdefault("QT_API", "pyqt6")
    config._napari_dip_xvfb = _start_xvfb()


def pytest_unconfigure(config):
    server = getattr(config, "_napari_dip_xvfb", None)
    if server is not None:
        server.terminate()
        server.wait(timeout=10)


def pytest_collection_modifyitems(config, items):
    import os

    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason="needs a display for the napari viewer: install Xvfb "
                                   "(Debian: apt install xvfb libgl1-mesa-dri) or set DISPLAY")
    for item in items:
        if "qt" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test's fits, restored after: tiny fits gain nothing from
    threads, and on a busy machine OpenMP threads that wait for each other make them many
    times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
