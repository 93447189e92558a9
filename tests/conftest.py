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
