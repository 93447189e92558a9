import numpy as np
import pytest
import torch

from napari_dip import iter_restore, restore
from napari_dip.engine import fit as fit_module
from napari_dip.engine import likelihoods
from napari_dip.engine.measures import psnr
from napari_dip.engine.trackers import (HoldoutStop, MovingAverage, VarianceStop,
                                        split_holdout)
from napari_dip.presets import get_config

from .conftest import fit_parts


def _outputs(noise_levels, seed=0):
    """A synthetic fit: a fixed image plus noise whose amplitude follows ``noise_levels``."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand((1, 1, 16, 16), generator=g)
    for level in noise_levels:
        yield base + level * torch.randn((1, 1, 16, 16), generator=g)


def test_variance_rule_stops_once_outputs_stop_changing():
    rule = VarianceStop(window=10, patience=50, check_every=1)
    levels = [0.5 * 0.9 ** t for t in range(100)] + [0.0] * 1000
    stop = next((t for t, x in enumerate(_outputs(levels), 1) if rule.update(t, x, x)), None)
    assert stop is not None and 100 < stop < 400


def test_variance_rule_does_not_stop_while_variance_still_falls():
    rule = VarianceStop(window=10, patience=50, check_every=1)
    levels = [0.5 / (1 + 0.05 * t) for t in range(800)]  # slowly, steadily falling
    assert not any(rule.update(t, x, x) for t, x in enumerate(_outputs(levels), 1))


def test_variance_rule_returns_the_best_point_estimate():
    rule = VarianceStop(window=10, patience=100, check_every=1)
    levels = [0.5 * 0.97 ** t for t in range(150)] + [0.5 * 0.97 ** 150 * 1.02 ** t
                                                      for t in range(1, 500)]
    means = {}
    for t, x in enumerate(_outputs(levels), 1):
        stop = rule.update(t, x, x)
        means[t] = rule.mean.clone()
        if stop:
            break
    assert 140 <= rule.best_iteration <= 175  # the noise minimum (moving variance lags a bit)
    assert t == rule.best_iteration + 100
    # the estimate returned is the moving mean at the best point, not the last one
    torch.testing.assert_close(rule.best_estimate, means[rule.best_iteration])
    assert not torch.equal(rule.best_estimate, means[t])


def test_holdout_split_uses_only_known_pixels_and_partitions_them():
    weight = torch.ones(1, 1, 20, 20)
    weight[..., :5, :] = 0  # unknown rows
    train, held = split_holdout(weight, (1, 1, 20, 20), 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(train + held, weight)
    assert held[..., :5, :].sum() == 0
    assert 0.1 < float(held.sum() / weight.sum()) < 0.3


def test_holdout_rule_tracks_error_on_held_out_pixels():
    target = torch.rand(1, 1, 8, 8)
    held = torch.zeros(1, 1, 8, 8)
    held[..., ::2, ::2] = 1
    rule = HoldoutStop(target, held, lambda x: x, patience=3, check_every=1, min_iterations=1)
    errors = [0.5, 0.2, 0.1, 0.3, 0.4, 0.5, 0.6]
    stops = [rule.update(t, None, target + e) for t, e in enumerate(errors, 1)]
    assert rule.best_iteration == 3 and stops.index(True) == 5  # 3 checks after the best


def test_sgld_moves_weights_by_the_injected_noise_when_the_gradient_is_zero(monkeypatch):
    def zero_loss(self, prediction, target, weight=None):
        return (prediction * 0).sum()

    monkeypatch.setattr(likelihoods.Gaussian, "forward", zero_loss)
    config = get_config("quick", max_iterations=1, sgld_noise=2.0, reg_noise_std=0.0,
                        backtrack_drop_db=0)
    observation, network, code = fit_parts(config)
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    list(fit_module.fit(observation, config, network=network, code=code))
    expected_std = config.sgld_noise * config.learning_rate
    for name, p in network.named_parameters():
        change = p.detach() - before[name]
        if p.dim() == 4:  # convolution kernels get the Langevin noise
            assert float(change.std()) == pytest.approx(expected_std, rel=0.25), name
        else:
            assert float(change.abs().max()) == 0.0, name


def test_bayesian_preset_injects_less_weight_noise_on_less_noisy_data():
    """Preset "bayesian" scales its weight noise to the data's noise: the paper's sigma=25 gets
    2 x the learning rate; a dim fluorescence-like image with a tenth of that noise gets the
    floor (a quarter), instead of weight noise that swamps the fit (docs/benchmarks/bayesian.md)."""
    rng = np.random.default_rng(1)
    clean = np.tile(np.linspace(0.1, 0.9, 32, dtype=np.float32), (32, 1))  # spans most of [0, 1]
    noise = {}
    for sigma in (25 / 255, 2.5 / 255):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)
        last = list(iter_restore(noisy, preset="bayesian", max_iterations=2, burn_in=0,
                                 channels_down=8, channels_up=8))[-1]
        noise[sigma] = last.weight_noise / last.config.learning_rate
    assert noise[25 / 255] == pytest.approx(2.0, rel=0.1)
    assert noise[2.5 / 255] == pytest.approx(0.5)
    last = list(iter_restore(noisy, preset="bayesian", sgld_noise_scaling="none",
                             max_iterations=2, channels_down=8, channels_up=8))[-1]
    assert last.weight_noise / last.config.learning_rate == pytest.approx(2.0)


def test_uncertainty_map_is_nonnegative_image_shaped_and_larger_where_masked():
    from skimage import data

    clean = data.camera()[100:132, 220:252].astype(np.float32) / 255
    mask = np.zeros(clean.shape, dtype=bool)
    mask[6:26, 6:26] = True
    # a tenth of the preset's weight noise: with the preset's, the samples' own jitter, the
    # same everywhere, dominates this small a run (docs/benchmarks/bayesian.md)
    result, uncertainty = restore(clean, task="inpaint", mask=mask, preset="bayesian",
                                  sgld_noise=0.2, sgld_noise_scaling="none",
                                  max_iterations=500, burn_in=250, sample_every=5,
                                  reg_noise_std=0.0, channels_down=16, channels_up=16,
                                  channels_skip=4, return_uncertainty=True)
    assert uncertainty.shape == clean.shape and result.shape == clean.shape
    assert uncertainty.dtype == np.float32 and float(uncertainty.min()) >= 0.0
    # the data pin the known pixels; the posterior spreads where nothing was observed
    assert uncertainty[mask].mean() > 1.3 * uncertainty[~mask].mean()


def test_no_uncertainty_without_sgld(noisy_cell):
    _, noisy = noisy_cell
    _, uncertainty = restore(noisy, preset="quick", max_iterations=3, return_uncertainty=True)
    assert uncertainty is None


def test_auto_preset_stops_by_itself_before_its_cap_and_raises_psnr(noisy_cell):
    clean, noisy = noisy_cell
    # preset "auto" is the default; a narrower network keeps the test fast on a CPU
    last = list(iter_restore(noisy, channels_down=32, channels_up=32, input_channels=16))[-1]
    assert last.config.stopping != "none"
    assert last.stopped and last.iteration < last.max_iterations
    assert psnr(last.estimate, clean) > psnr(noisy, clean) + 5


def test_recent_average_forgets_the_untrained_output_that_debiased_keeps():
    # an untrained network's grey first outputs, then the fitted image: the estimate a stopping
    # rule sees after 80 steps must be the image, not a blend that still carries the grey
    image = torch.zeros((1, 1, 4, 4))
    grey = torch.full((1, 1, 4, 4), 0.5)
    errors = {}
    for start in ("first", "debiased", "recent"):
        average = MovingAverage(0.99, start)
        for step in range(1, 81):
            value = average.add(grey if step <= 10 else image)
        errors[start] = float(value.mean())  # the grey share left in the estimate
    assert errors["recent"] < 1e-3  # forgotten: the window spans the latest quarter
    assert errors["debiased"] > 0.03 and errors["first"] > errors["debiased"]


def test_recent_average_reaches_the_configured_weight():
    average = MovingAverage(0.9, "recent")
    first = average.add(torch.ones(1))
    assert float(first) == 1.0  # no bias: the first output is taken as it is
    for _ in range(100):
        average.add(torch.zeros(1))
    before = float(average.value)
    average.add(torch.zeros(1))  # past 40 steps the weight is capped at 0.9
    assert float(average.value) == pytest.approx(0.9 * before)


def test_backtracking_puts_the_last_good_weights_back_after_a_jump_in_the_loss():
    from napari_dip.engine.trackers import Backtracking

    network = torch.nn.Linear(2, 1)
    guard = Backtracking(network, drop_db=3.0, every=2)
    saved = [p.detach().clone() for p in network.parameters()]
    assert not guard.update(1, None, loss=torch.tensor(1.0))  # not a check
    assert not guard.update(2, None, loss=torch.tensor(1.0))  # first check: saves the weights
    with torch.no_grad():
        for p in network.parameters():
            p.add_(5.0)
    assert not guard.update(4, None, loss=torch.tensor(1.9))  # within 3 dB: new good weights
    changed = [p.detach().clone() for p in network.parameters()]
    with torch.no_grad():
        for p in network.parameters():
            p.mul_(0.0)
    assert guard.update(6, None, loss=torch.tensor(1.9 * 2.1))  # more than 3 dB: undone
    assert guard.count == 1
    for p, expected in zip(network.parameters(), changed):
        assert torch.equal(p, expected)
    assert not all(torch.equal(a, b) for a, b in zip(changed, saved))


def test_backtracking_off_never_checks_and_restores_nothing_before_a_check():
    from napari_dip.engine.trackers import Backtracking

    network = torch.nn.Linear(2, 1)
    off = Backtracking(network, drop_db=0.0, every=1)
    assert not any(off.update(t, None, loss=torch.tensor(10.0 ** t)) for t in range(1, 5))
    before = [p.detach().clone() for p in network.parameters()]
    Backtracking(network, drop_db=5.0, every=10).restore()  # nothing saved yet
    assert all(torch.equal(a, b) for a, b in zip(network.parameters(), before))
    with pytest.raises(ValueError, match="drop_db=-1 must be 0"):
        Backtracking(network, drop_db=-1, every=10)


def test_the_posterior_sampler_perturbs_kernels_and_keeps_mean_and_std_of_its_samples():
    from napari_dip.engine.trackers import PosteriorSampler

    network = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3), torch.nn.BatchNorm2d(1))
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    sampler = PosteriorSampler(network, 0.1, torch.Generator().manual_seed(0), burn_in=2,
                               sample_every=2)
    outputs = [torch.full((1, 1, 2, 2), float(v)) for v in range(1, 9)]
    for t, output in enumerate(outputs, 1):
        assert not sampler.update(t, output)
    samples = torch.stack([outputs[t - 1] for t in (4, 6, 8)])  # after burn-in, every 2nd
    assert sampler.count == 3
    torch.testing.assert_close(sampler.mean, samples.mean(0))
    torch.testing.assert_close(sampler.std, samples.std(0, unbiased=False))
    for name, p in network.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (p.dim() == 4), name  # only convolution kernels get Langevin noise


def test_no_uncertainty_before_two_samples():
    from napari_dip.engine.trackers import PosteriorSampler

    sampler = PosteriorSampler(torch.nn.Identity(), 0.0, torch.Generator())
    sampler.update(1, torch.ones(1))
    assert sampler.std is None and float(sampler.mean) == 1.0


@pytest.mark.parametrize("make, message", [
    (lambda: MovingAverage(1.0), r"weight must be in \[0, 1\)"),
    (lambda: MovingAverage(0.9, "last"), "unknown start 'last'.*recent"),
    (lambda: VarianceStop(window=0), "window=0 must be 1 or more"),
    (lambda: VarianceStop(patience=0), "patience=0 and check_every=10 must be 1 or more"),
    (lambda: split_holdout(None, (1, 1, 4, 4), 1.0, torch.Generator()),
     "held-out fraction must be between 0 and 1"),
])
def test_bad_tracker_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_every_tracker_takes_the_same_update_call():
    from napari_dip.engine.trackers import Backtracking, PosteriorSampler, Tracker

    network = torch.nn.Conv2d(1, 1, 1)
    output = torch.rand(1, 1, 4, 4)
    trackers = [MovingAverage(0.9), PosteriorSampler(network, 0.0, torch.Generator()),
                Backtracking(network, 5.0, 1), VarianceStop(window=2, check_every=1),
                HoldoutStop(output, torch.ones(1, 1, 4, 4), lambda x: x, min_iterations=1,
                            check_every=1)]
    for tracker in trackers:
        assert isinstance(tracker, Tracker)
        for t in (1, 2):
            assert tracker.update(t, output, estimate=output, loss=torch.tensor(0.5)) is False


def test_the_moving_average_tracker_keeps_the_estimate_it_returned():
    average = MovingAverage(0.5, "debiased")
    average.update(1, torch.tensor(2.0))
    assert float(average.estimate) == pytest.approx(2.0)  # bias-corrected, not 1.0
    plain = MovingAverage(0.0)
    plain.update(1, torch.tensor(3.0))
    assert float(plain.estimate) == 3.0  # no averaging: the latest output
