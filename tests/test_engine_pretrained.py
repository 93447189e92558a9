"""The learned starting point of the generator (``init="learned"``)."""

import socket

import numpy as np
import pytest
import torch

from napari_dip.api import restore
from napari_dip.engine import pretrained
from napari_dip.engine.fit import fit
from napari_dip.presets import get_config
from napari_dip.engine.problem import Observation


def _blobs(side: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny fluorescence-like scene (a few Gaussian blobs) and a noisy copy of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    clean = np.zeros((side, side))
    for y, x in rng.uniform(4, side - 4, (6, 2)):
        clean += 0.8 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 2.0 ** 2))
    clean = np.clip(clean + 0.05, 0, 1)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    return noisy.astype(np.float32), clean.astype(np.float32)


def _mean_loss(init: str, noisy: np.ndarray, steps: int = 20, last: int = 5) -> float:
    """Mean loss of the last ``last`` of ``steps`` steps of preset auto's denoising fit."""
    side = noisy.shape[0]
    config = get_config("auto", "denoise", init=init, report_every=1, max_iterations=steps,
                        data_term="gaussian")  # fit() directly: no plan to choose it
    observation = Observation(torch.from_numpy(noisy)[None, None], None, 1, (side, side),
                              (side, side))
    losses = [step.loss for step in fit(observation, config, seed=0)]
    assert len(losses) == steps
    return float(np.mean(losses[-last:]))


def _no_network(*args, **kwargs):
    raise OSError("network access attempted")


def test_learned_start_loads_offline_and_fits_faster_than_random(monkeypatch):
    monkeypatch.setattr(socket, "socket", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    pretrained._load.cache_clear()
    noisy, _ = _blobs(64)  # the generator's five levels need 64 pixels or more per side
    assert _mean_loss("learned", noisy) < _mean_loss("random", noisy)


def test_auto_greyscale_denoiser_has_shipped_weights():
    config = get_config("auto", "denoise")
    arch = pretrained.architecture(config, out_channels=1, in_channels=config.input_channels)
    assert pretrained.architecture_key(arch) in pretrained.available_architectures()
    state = pretrained.learned_state(arch)
    assert all(torch.isfinite(value).all() for value in state.values()
               if value.is_floating_point())


@pytest.mark.parametrize("preset, extra", [("auto", {}), ("fast", {"seed": 3}),
                                           ("quick", {"channel_axis": -1})])
def test_random_init_is_the_default_bit_for_bit(preset, extra):
    rng = np.random.default_rng(1)
    image = rng.random((32, 32, 3) if "channel_axis" in extra else (32, 32)).astype(np.float32)
    unset = restore(image, preset=preset, max_iterations=15, **extra)
    explicit = restore(image, preset=preset, max_iterations=15, init="random", **extra)
    assert np.array_equal(unset, explicit)


def test_learned_start_changes_the_result_but_the_seed_still_matters():
    noisy, _ = _blobs()
    learned = restore(noisy, max_iterations=10, init="learned")
    assert not np.array_equal(learned, restore(noisy, max_iterations=10))
    assert not np.array_equal(learned, restore(noisy, max_iterations=10, init="learned", seed=1))


@pytest.mark.parametrize("preset, kwargs", [
    ("quick", {}),  # another network
    ("auto", {"channel_axis": -1}),  # colour: three output channels
])
def test_learned_start_for_an_architecture_without_weights_is_refused(preset, kwargs):
    image = np.zeros((32, 32, 3) if kwargs else (32, 32), np.float32)
    with pytest.raises(ValueError, match="init='random'") as error:
        restore(image, preset=preset, max_iterations=2, init="learned", **kwargs)
    assert "learned weights exist for skip-s5-d128-u128" in str(error.value)
