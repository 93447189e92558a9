import json
import re

import numpy as np
import pytest

from napari_dip.engine.noise_model import (NoiseModel, choose_likelihood, estimate_noise_model,
                                           estimate_noise_model_stack, fit_noise_model)


def _scene(size=256, seed=1):
    """A smooth ramp with Gaussian blobs, peak 1."""
    y, x = np.mgrid[:size, :size] / size
    image = 0.1 + 0.5 * x
    for cy, cx, r in np.random.default_rng(seed).random((12, 3)):
        image = image + 0.6 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2)
                                     / (2 * (0.02 + 0.06 * r) ** 2))
    return image / image.max()


def _noisy(signal, gain, read_variance, seed=0):
    rng = np.random.default_rng(seed)
    photons = rng.poisson(signal / gain) * gain if gain else signal
    return photons + rng.normal(0, np.sqrt(read_variance), signal.shape)


SETTINGS = [  # peak photons, gain (units per photon), read variance (units^2)
    (100, 1.0, 25.0), (500, 2.0, 900.0), (200, 0.5, 25.0)]


@pytest.mark.parametrize("photons, gain, read_variance", SETTINGS)
def test_recovers_known_gain_and_read_variance(photons, gain, read_variance):
    model = estimate_noise_model(_noisy(_scene() * photons * gain, gain, read_variance))
    assert model.gain == pytest.approx(gain, rel=0.15)
    assert model.read_variance == pytest.approx(read_variance, rel=0.15)


def test_pure_gaussian_noise_gives_no_gain():
    signal = _scene() * 1000
    model = estimate_noise_model(_noisy(signal, 0, 100.0))
    assert model.gain * signal.max() < 0.05 * 100  # the signal-dependent part is negligible
    assert model.read_variance == pytest.approx(100, rel=0.1)
    assert choose_likelihood(model, signal) == "gaussian"


@pytest.mark.parametrize("dtype, scale", [(np.uint16, 1.0), (np.uint8, 1.0), (np.float32, 1e-3)])
def test_works_in_the_image_units_of_integer_and_float_images(dtype, scale):
    gain, read_variance = 1.0, 25.0
    noisy = _noisy(_scene() * 200, gain, read_variance)
    if np.issubdtype(dtype, np.integer):
        image = np.clip(np.round(noisy), 0, np.iinfo(dtype).max).astype(dtype)
        read_variance += 1 / 12  # rounding adds its own variance
    else:
        image = (noisy * scale).astype(dtype)
    model = estimate_noise_model(image)
    assert model.gain == pytest.approx(gain * scale, rel=0.15)
    assert model.read_variance == pytest.approx(read_variance * scale ** 2, rel=0.15)


def test_saturated_pixels_are_left_out():
    noisy = _noisy(_scene() * 300, 1.0, 16.0)
    image = np.clip(np.round(noisy), 0, 255).astype(np.uint8)  # the blobs' tops saturate
    assert (image == 255).mean() > 0.01
    model = estimate_noise_model(image)
    assert model.gain == pytest.approx(1.0, rel=0.15)


def test_a_clipped_dark_floor_is_detected_and_left_out():
    signal = _scene() * 60 - 10  # the camera clips the darkest part at 0
    image = np.clip(np.round(_noisy(np.clip(signal, 0, None), 1.0, 4.0)), 0, None)
    image = image.astype(np.uint8)
    model = estimate_noise_model(image)
    assert model.gain == pytest.approx(1.0, rel=0.15)
    assert any("clipped at 0" in note for note in model.notes)


def test_masked_pixels_are_left_out():
    signal = _scene() * 200
    image = _noisy(signal, 1.0, 25.0)
    image[40:200, 40:200] = np.random.default_rng(5).normal(100, 60, (160, 160))  # not the model
    mask = np.zeros(image.shape, dtype=bool)
    mask[36:204, 36:204] = True
    model = estimate_noise_model(image, mask=mask)
    assert model.gain == pytest.approx(1.0, rel=0.15)
    assert model.read_variance == pytest.approx(25.0, rel=0.2)


def test_input_is_not_modified():
    image = _noisy(_scene(96) * 200, 1.0, 25.0)
    copy = image.copy()
    estimate_noise_model(image)
    np.testing.assert_array_equal(image, copy)


def test_a_stack_pools_its_planes():
    gain, read_variance = 1.0, 100.0
    stack = np.stack([_noisy(_scene(96, seed) * 300 * gain, gain, read_variance, seed)
                      for seed in range(6)])
    model = estimate_noise_model_stack(stack)
    assert model.gain == pytest.approx(gain, rel=0.15)
    assert model.read_variance == pytest.approx(read_variance, rel=0.15)
    plane_mask = np.zeros(stack.shape[1:], dtype=bool)
    plane_mask[:8] = True
    assert estimate_noise_model_stack(stack, mask=plane_mask).gain == pytest.approx(gain,
                                                                                    rel=0.15)


def test_a_constant_image_has_no_noise():
    model = estimate_noise_model(np.full((64, 64), 7.0))
    assert (model.gain, model.read_variance) == (0.0, 0.0)
    assert choose_likelihood(model, np.full((64, 64), 7.0)) == "gaussian"


@pytest.mark.parametrize("call, words", [
    (lambda: estimate_noise_model(np.zeros((4, 32, 32))), "estimate_noise_model_stack"),
    (lambda: estimate_noise_model(np.zeros((32, 32, 3))), "estimate each one"),
    (lambda: estimate_noise_model_stack(np.zeros((32, 32))), "(S, H, W)"),
    (lambda: estimate_noise_model(np.zeros((64, 64), dtype=bool)), "real intensities"),
    (lambda: estimate_noise_model(np.random.rand(20, 20)), "pass a larger image"),
    (lambda: estimate_noise_model(np.random.rand(64, 64), mask=np.zeros((32, 32), bool)),
     "must have the image's shape"),
    (lambda: fit_noise_model(np.zeros(3), np.zeros(4)), "same number"),
])
def test_refusals_name_the_problem_and_the_fix(call, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        call()


def test_fit_from_a_pair_holds_a_negative_read_variance_at_zero_and_says_why():
    rng = np.random.default_rng(0)
    clean = rng.uniform(60, 400, 200_000)
    residual = rng.normal(0, np.sqrt(2.0 * (clean - 50)))  # a dark offset of 50
    model = fit_noise_model(clean, residual)
    assert model.read_variance == 0.0 and model.gain > 0
    assert any("dark offset of about 5" in note for note in model.notes)


def test_fit_from_a_pair_holds_a_negative_gain_at_zero():
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 100, 100_000)
    model = fit_noise_model(clean, rng.normal(0, np.sqrt(50 - 0.2 * clean)))
    assert model.gain == 0.0 and model.read_variance == pytest.approx(40, rel=0.1)
    assert any("gain was negative" in note for note in model.notes)


def test_model_std_variance_and_record():
    model = NoiseModel(gain=2.0, read_variance=9.0)
    assert model.std(8.0) == pytest.approx(5.0)
    np.testing.assert_allclose(model.variance(np.array([-5.0, 0.0, 1.0])), [9.0, 9.0, 11.0])
    record = json.loads(json.dumps(model.as_dict()))
    assert record == {"gain": 2.0, "read_variance": 9.0, "notes": []}


@pytest.mark.parametrize("gain, read_variance, expected", [
    (0.0, 25.0, "gaussian"),
    (0.001, 25.0, "gaussian"),  # signal-dependent part negligible over the range
    (1.0, 0.0, "poisson"),
    (1.0, 2.0, "poisson"),  # read variance negligible at the median
    (1.0, 50.0, "poisson_gaussian"),
])
def test_choose_likelihood_follows_its_documented_rule(gain, read_variance, expected):
    image = np.linspace(0, 200, 10_000)  # median 100
    assert choose_likelihood(NoiseModel(gain, read_variance), image) == expected
