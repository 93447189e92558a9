"""The fit loop: a generator of snapshots composing operator, likelihood, stepper and
trackers."""

import numpy as np
import pytest
import torch

from napari_dip import iter_restore, restore
from napari_dip.engine import fit as fit_module
from napari_dip.engine import likelihoods
from napari_dip.engine.problem import prepare_observation
from napari_dip.presets import get_config

from .conftest import fit_parts, tiny


def test_breaking_out_stops_the_fit_between_steps(noisy_cell):
    _, noisy = noisy_cell
    seen = []
    for snapshot in iter_restore(noisy, **tiny(max_iterations=1000, report_every=1)):
        seen.append(snapshot.iteration)
        if snapshot.iteration == 3:
            break
    assert seen == [1, 2, 3]


def test_divergence_guard_restores_good_weights(noisy_cell, monkeypatch):
    """A loss spike at a check makes the fit restore the last good weights."""
    calls = {"n": 0}
    real_loss = likelihoods.Gaussian.forward

    def spiking_loss(self, *args):
        calls["n"] += 1
        loss = real_loss(self, *args)
        return loss * 1000 if calls["n"] == 10 else loss

    monkeypatch.setattr(likelihoods.Gaussian, "forward", spiking_loss)
    _, noisy = noisy_cell
    last = list(iter_restore(noisy, **tiny(max_iterations=12, backtrack_every=5)))[-1]
    assert last.backtracks == 1


@pytest.mark.parametrize("ramp", [0, 4])
def test_the_input_perturbation_grows_linearly_over_its_ramp(ramp):
    """With ``reg_noise_ramp=R`` step t perturbs the input code by t/R of ``reg_noise_std``
    (then all of it); without a ramp by all of it from the first step."""
    config = get_config("quick", max_iterations=8, reg_noise_std=0.05, reg_noise_ramp=ramp)
    observation, network, code = fit_parts(config)
    seen = []
    network.register_forward_pre_hook(
        lambda module, args: seen.append(float((args[0] - code).std())))
    list(fit_module.fit(observation, config, network=network, code=code))
    expected = [0.05 * (min(1.0, t / ramp) if ramp else 1.0) for t in range(1, 9)]
    assert seen == pytest.approx(expected, rel=0.1)


def test_a_pixel_scaled_ramp_is_shorter_on_smaller_images():
    """``reg_noise_ramp_scaling="pixels"``: a 256x256 image (or larger) gets the whole ramp, a
    64x64 one a sixteenth of it; the perturbation the generator sees follows that length."""
    from napari_dip.engine.fit import input_noise_ramp

    config = get_config("quick", max_iterations=8, reg_noise_std=0.05, reg_noise_ramp=64,
                        reg_noise_ramp_scaling="pixels")
    assert [input_noise_ramp(config, (side, side)) for side in (32, 64, 256, 512)] == \
        [1, 4, 64, 64]
    assert input_noise_ramp(config.replace(reg_noise_ramp_scaling="none"), (32, 32)) == 64
    observation, network, code = fit_parts(config)  # a 32x32 image: a ramp of 1 iteration
    seen = []
    network.register_forward_pre_hook(
        lambda module, args: seen.append(float((args[0] - code).std())))
    list(fit_module.fit(observation, config, network=network, code=code))
    assert seen == pytest.approx([0.05] * 8, rel=0.1)


def test_total_variation_term_smooths(noisy_cell):
    _, noisy = noisy_cell
    plain = restore(noisy, preset="quick", max_iterations=30)
    smooth = restore(noisy, preset="quick", max_iterations=30, tv_weight=0.5)
    roughness = [np.abs(np.diff(x, axis=0)).mean() for x in (plain, smooth)]
    assert roughness[1] < roughness[0]


def test_total_variation_in_noise_units_is_scaled_by_the_data_terms_noise(noisy_cell):
    _, noisy = noisy_cell
    observation = prepare_observation(noisy, mask=None, factor=None, guide=None,
                                      channel_axis=None, size_multiple=32)[0]
    unit = likelihoods.Gaussian().noise_unit(observation.target, observation.weight)
    assert unit == pytest.approx((25 / 255) ** 2, rel=0.3)  # the cell's noise variance
    scaled = restore(noisy, preset="quick", max_iterations=20, tv_weight=2.0,
                     tv_scaling="noise")
    assert np.array_equal(scaled, restore(noisy, preset="quick", max_iterations=20,
                                          tv_weight=2.0 * unit))


def test_a_fit_can_be_closed_between_any_two_snapshots():
    config = get_config("quick", max_iterations=50, report_every=1)
    observation, network, code = fit_parts(config)
    steps = fit_module.fit(observation, config, network=network, code=code)
    first, second = next(steps), next(steps)
    assert (first.iteration, second.iteration) == (1, 2) and not second.done
    steps.close()
    assert next(steps, None) is None
    weights = [p.detach().clone() for p in network.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights, network.parameters()))


def test_the_last_snapshot_is_done_and_reports_every_part():
    config = get_config("quick", max_iterations=6, report_every=4, tv_weight=0.1)
    observation, network, code = fit_parts(config)
    snapshots = list(fit_module.fit(observation, config, network=network, code=code))
    assert [s.iteration for s in snapshots] == [4, 6] and snapshots[-1].done
    last = snapshots[-1]
    assert last.estimate.shape == last.output.shape == observation.target.shape
    assert last.network is network and last.backtracks == 0 and last.uncertainty is None
    assert last.precision == "float32" and last.memory_format in ("contiguous", "channels_last")
    assert last.optimizer.state  # Adam has taken steps


@pytest.mark.parametrize("factor, expected", [(1, "Identity"), (2, "LanczosDownsampler"),
                                              (8, "LanczosDownsampler")])
def test_the_task_operator_follows_the_factor(factor, expected):
    assert type(fit_module.task_operator(factor)).__name__ == expected


def test_the_fit_sees_the_observation_through_the_mask_of_known_pixels():
    """The loss of an inpainting fit is computed on A(x) = m * x: the likelihood gets the
    masked prediction and the mask as its measured values."""
    from napari_dip.engine.problem import prepare_observation

    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    missing = np.zeros((32, 32), bool)
    missing[8:16, 8:16] = True
    observation, _ = prepare_observation(image, mask=missing, factor=None, guide=None,
                                         channel_axis=None, size_multiple=16)
    config = get_config("quick", "inpaint", stopping="none")
    operator, likelihood, target, rule = fit_module._data_fit(observation, config, 0,
                                                              torch.device("cpu"))
    assert rule is None and isinstance(likelihood, likelihoods.Gaussian)
    prediction = operator(torch.ones_like(target))
    assert float(prediction[..., 8:16, 8:16].abs().max()) == 0.0
    assert torch.equal(operator.measured, observation.weight)
