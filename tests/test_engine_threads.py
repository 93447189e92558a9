"""The CPU threads of each fit: measured with threads="auto", recorded, and repeatable."""

import copy

import numpy as np
import pytest
import torch

from napari_dip import iter_restore, restore
from napari_dip.engine import threads as fit_threads

from .conftest import fit_parts


@pytest.fixture
def two_torch_threads():
    """Torch's own count at two (this suite runs at one), so that "auto" has two candidates."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _last(image, max_iterations=100, **options):
    last = None
    for last in iter_restore(image, preset="quick", max_iterations=max_iterations,
                             report_every=40, seed=3, device="cpu", **options):
        pass
    return last


def test_auto_records_the_count_it_ran_with_and_that_count_repeats_the_run_bit_for_bit(
        noisy_cell, two_torch_threads, monkeypatch):
    chosen = []
    measure = fit_threads.fastest_thread_count

    def counted(*args, **kwargs):
        chosen.append(measure(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(fit_threads, "fastest_thread_count", counted)
    image = noisy_cell[1][:32, :32]
    auto = _last(image, threads="auto")
    assert len(chosen) == 1 and auto.threads == chosen[0]  # measured once, before the fit
    assert auto.device == f"cpu ({chosen[0]} threads)"
    assert torch.get_num_threads() == 2  # the caller's count is back
    again = _last(image, threads=auto.threads)
    # the probe ran on a copy: the fit's network, optimiser and random streams are untouched
    np.testing.assert_array_equal(again.estimate, auto.estimate)
    assert len(chosen) == 1  # an explicit count is not measured


def test_an_explicit_count_is_not_measured_and_is_what_the_fit_runs_with(
        noisy_cell, two_torch_threads, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an explicit count must not be measured")

    monkeypatch.setattr(fit_threads, "fastest_thread_count", refuse)
    image = noisy_cell[1][:32, :32]
    for count, steps in ((1, 100), (2, 5)):  # 100 steps: long enough that "auto" would measure
        last = _last(image, max_iterations=steps, threads=count)
        assert last.threads == count and last.device == f"cpu ({count} threads)"


def test_a_probe_leaves_the_fit_it_measures_untouched():
    from napari_dip import get_config
    from napari_dip.engine.stepper import make_optimizer

    config = get_config("quick", "denoise", max_iterations=50)
    observation, network, code = fit_parts(config)
    state = make_optimizer(network, config).state_dict()
    weights, code_before = copy.deepcopy(network.state_dict()), code.clone()
    state_before = copy.deepcopy(state)
    step = fit_threads.probe_of_fit(observation, config, seed=0, device=torch.device("cpu"),
                                    network=network, code=code, optimizer_state=state)
    for threads in (1, 2, 1):
        step(threads)
    assert all(torch.equal(weights[k], v) for k, v in network.state_dict().items())
    assert torch.equal(code, code_before) and state == state_before


def test_short_fits_and_devices_other_than_the_cpu_are_not_measured(monkeypatch,
                                                                   two_torch_threads):
    def refuse(*args, **kwargs):
        raise AssertionError("not worth measuring")

    monkeypatch.setattr(fit_threads, "fastest_thread_count", refuse)
    cpu = fit_threads.FitThreads("auto", torch.device("cpu"))
    assert cpu.count_for(10, refuse) == 1  # the probe would cost more than the fit
    assert fit_threads.FitThreads("auto", torch.device("meta")).count_for(10**6, refuse) is None
    assert fit_threads.FitThreads(None, torch.device("cpu")).count_for(10**6, refuse) is None


def test_auto_measures_again_between_fits_once_the_recheck_time_passed(two_torch_threads):
    answers = iter([2, 1])
    cpu = fit_threads.FitThreads("auto", torch.device("cpu"), recheck_s=0.0)
    probes = []

    def probe():
        probes.append(1)
        return lambda threads: None

    original = fit_threads.fastest_thread_count
    fit_threads.fastest_thread_count = lambda *args, **kwargs: next(answers)
    try:
        assert [cpu.count_for(1000, probe) for _ in range(2)] == [2, 1] and len(probes) == 2
        patient = fit_threads.FitThreads("auto", torch.device("cpu"), recheck_s=3600.0)
        answers = iter([2, 1])
        assert [patient.count_for(1000, probe) for _ in range(2)] == [2, 2]  # kept
    finally:
        fit_threads.fastest_thread_count = original


def test_a_bad_thread_setting_is_refused_with_the_fix(noisy_cell):
    with pytest.raises(ValueError, match="threads must be a positive whole number or 'auto'"):
        restore(noisy_cell[1][:32, :32], preset="quick", max_iterations=2, threads="many")
