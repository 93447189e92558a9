"""Likelihoods: Gaussian, Poisson and Poisson-Gaussian data terms."""

import numpy as np
import pytest
import torch

from napari_dip import restore
from napari_dip.engine.likelihoods import (LIKELIHOODS, Gaussian, Poisson, PoissonGaussian,
                                           generalized_anscombe, likelihood_from_config,
                                           make_likelihood, poisson_deviance, squared_error)
from napari_dip.engine.measures import psnr
from napari_dip.presets import get_config


def test_poisson_term_is_lower_for_the_true_intensity():
    rng = np.random.default_rng(0)
    rate = torch.from_numpy(rng.uniform(2, 50, (1, 1, 64, 64)))
    counts = torch.from_numpy(rng.poisson(rate.numpy()).astype(np.float64))
    true = poisson_deviance(rate, counts)
    for wrong in (rate * 1.3, rate * 0.7, rate + 5):
        assert poisson_deviance(wrong, counts) > true


@pytest.mark.parametrize("data_term", ["poisson", "poisson_gaussian"])
def test_photon_limited_data_terms_denoise_poisson_data(data_term, noisy_cell):
    clean, _ = noisy_cell
    rng = np.random.default_rng(1)
    photons = clean * 30 + 2
    counts = rng.poisson(photons).astype(np.uint16)
    result = restore(counts, preset="quick", max_iterations=60, data_term=data_term,
                     gain=1.0, read_noise=0.5)
    assert psnr(result.astype(float), photons, data_range=32) > \
        psnr(counts.astype(float), photons, data_range=32) + 3


def test_squared_error_ignores_values_under_the_mask():
    torch.manual_seed(0)
    target = torch.rand(1, 1, 8, 8)
    missing = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    missing[..., 2:5, 3:7] = True
    prediction = target.clone()
    prediction[missing] = torch.rand(int(missing.sum())) * 100  # wildly wrong, but masked
    assert squared_error(prediction, target, (~missing).float()).item() == 0.0
    prediction[0, 0, 0, 0] += 1.0  # a known pixel is wrong: the loss sees it
    assert squared_error(prediction, target, (~missing).float()).item() > 0.0


def test_squared_error_without_weight_is_mse():
    a, b = torch.rand(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    torch.testing.assert_close(squared_error(a, b), torch.nn.functional.mse_loss(a, b))


def _pair(shape=(2, 3, 6, 6), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=dtype) * 0.8 + 0.1,
            torch.rand(shape, generator=g, dtype=dtype) * 0.8 + 0.1)


UNITS = (40.0, 2.0)  # the model's [0, 1] is 2 to 42 intensity units
LIKELIHOOD_CASES = {
    "gaussian": lambda: Gaussian(),
    "poisson": lambda: Poisson(to_input=UNITS, gain=1.5, offset=1.0),
    "poisson_gaussian": lambda: PoissonGaussian(to_input=UNITS, gain=1.5, read_noise=0.7,
                                                offset=1.0),
}


def _by_function(name, prediction, observed, measured=None):
    """What the plain functions give for each likelihood, in input units."""
    if name == "gaussian":
        return squared_error(prediction, observed, measured)
    pred, obs = (x * UNITS[0] + UNITS[1] for x in (prediction, observed))
    if name == "poisson":
        return poisson_deviance((pred - 1.0) / 1.5, (obs - 1.0) / 1.5, measured)
    return squared_error(generalized_anscombe(pred, 1.5, 0.7, 1.0),
                         generalized_anscombe(obs, 1.5, 0.7, 1.0), measured)


@pytest.mark.parametrize("name", LIKELIHOOD_CASES)
def test_likelihoods_give_one_scalar_per_observation(name):
    prediction, observed = _pair()
    value = LIKELIHOOD_CASES[name]()(prediction, observed)
    assert value.shape == () and value.dtype == torch.float64 and torch.isfinite(value)


@pytest.mark.parametrize("name", LIKELIHOOD_CASES)
def test_likelihoods_have_exact_gradients(name):
    prediction, observed = _pair((1, 2, 4, 4))
    measured = (torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.3).double()
    likelihood = LIKELIHOOD_CASES[name]()
    prediction.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: likelihood(x, observed), (prediction,))
    assert torch.autograd.gradcheck(lambda x: likelihood(x, observed, measured), (prediction,))


@pytest.mark.parametrize("name", LIKELIHOOD_CASES)
def test_each_module_equals_its_functions(name):
    prediction, observed = _pair(dtype=torch.float32)
    measured = (torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    likelihood = LIKELIHOOD_CASES[name]()
    for weights in (None, measured):
        torch.testing.assert_close(likelihood(prediction, observed, weights),
                                   _by_function(name, prediction, observed, weights),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("name", LIKELIHOOD_CASES)
def test_likelihoods_are_lowest_at_the_observation_and_blind_to_unmeasured_values(name):
    likelihood = LIKELIHOOD_CASES[name]()
    prediction, observed = _pair()
    assert float(likelihood(observed, observed)) == pytest.approx(0.0, abs=1e-12)
    assert float(likelihood(prediction, observed)) > 0.0
    measured = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    measured[..., :3, :] = 1
    wrong_where_unmeasured = torch.where(measured > 0, observed, prediction)
    assert float(likelihood(wrong_where_unmeasured, observed, measured)) == \
        pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", LIKELIHOOD_CASES)
def test_likelihoods_refuse_mismatched_shapes_naming_the_fix(name):
    likelihood = LIKELIHOOD_CASES[name]()
    prediction, observed = _pair()
    with pytest.raises(ValueError, match="differ in shape.*degradation operator"):
        likelihood(prediction[..., :3, :3], observed)
    with pytest.raises(ValueError, match="measured has shape.*height and width"):
        likelihood(prediction, observed, torch.ones(1, 1, 3, 3))


@pytest.mark.parametrize("make, message", [
    (lambda: Poisson(gain=0.0), "gain=0.0 must be positive"),
    (lambda: PoissonGaussian(gain=-1.0), "gain=-1.0 must be positive"),
    (lambda: PoissonGaussian(read_noise=-0.5), "read_noise=-0.5 must be 0 or more"),
    (lambda: make_likelihood("laplace"), "unknown data term 'laplace'.*poisson_gaussian"),
])
def test_bad_likelihood_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_the_config_picks_the_likelihood_with_its_noise_parameters(name):
    config = get_config("quick", data_term=name, gain=2.0, read_noise=0.5, offset=3.0)
    likelihood = likelihood_from_config(config, to_input=(100.0, 5.0))
    assert type(likelihood) is LIKELIHOODS[name]
    if name != "gaussian":
        assert (likelihood.gain, likelihood.offset, likelihood.to_input) == \
            (2.0, 3.0, (100.0, 5.0))
    if name == "poisson_gaussian":
        assert likelihood.read_noise == 0.5


def test_the_anscombe_transform_makes_poisson_gaussian_noise_unit_variance():
    rng = np.random.default_rng(0)
    gain, read_noise = 2.0, 3.0
    for photons in (5.0, 50.0, 500.0):
        values = gain * rng.poisson(photons, 20000) + rng.normal(0, read_noise, 20000)
        stabilised = generalized_anscombe(torch.from_numpy(values), gain, read_noise)
        assert float(stabilised.std()) == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("data_term", ["gaussian", "poisson", "poisson_gaussian"])
def test_noise_unit_is_the_data_term_of_a_prediction_one_noise_std_off(data_term):
    # photon counts with a known noise std (the square root of the rate, plus read noise),
    # in the model's [0, 1] for a scale of 200 units
    rng = np.random.default_rng(3)
    rate, read_noise, scale = 100.0, 3.0, 200.0
    std = np.sqrt(rate + read_noise ** 2)
    observed = rng.poisson(rate, (1, 1, 128, 128)) + rng.normal(0, read_noise, (1, 1, 128, 128))
    observed = torch.from_numpy(observed / scale)
    likelihood = make_likelihood(data_term, to_input=(scale, 0.0), read_noise=read_noise)
    off_by_one_std = torch.full_like(observed, (rate + std) / scale)
    exact = likelihood(off_by_one_std, torch.full_like(observed, rate / scale))
    assert likelihood.noise_unit(observed) == pytest.approx(float(exact), rel=0.15)
