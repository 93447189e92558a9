"""The per-image optimisation loop of Deep Image Prior, as a generator of snapshots.

:func:`fit` fits a randomly initialised generator ``f(z)`` to one
:class:`~napari_dip.engine.problem.Observation` through the task's degradation operator
(:mod:`.operators`) under the data's likelihood (:mod:`.likelihoods`), one
:class:`~.stepper.Stepper` step at a time, with :mod:`.trackers` watching, and yields a
:class:`FitStep` every ``report_every`` iterations and after the last one. The consumer may stop
between any two yields (``break`` or ``generator.close()``): that is how previews, progress
bars, the stop button and tests that run 20 steps all work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config import RAMP_REFERENCE_SIDE, DIPConfig
from .problem import Observation
from .likelihoods import Likelihood, likelihood_from_config
from .measures import estimate_noise_std, total_variation
from .networks import build_generator, input_channels
from .convolution import Convolution
from .operators import Identity, LanczosDownsampler, Mask, Operator
from .pretrained import architecture, learned_state, load_learned_weights
from .stepper import Stepper
from .trackers import (Backtracking, HoldoutStop, MovingAverage, PosteriorSampler, VarianceStop,
                       sgld_weight_noise, split_holdout)


@dataclass
class FitStep:
    """The state of a fit after ``iteration`` optimisation steps (tensors in model space).

    ``estimate`` is what the fit returns if it ends here: the best-point estimate of the
    stopping rule, the SGLD posterior mean, or the moving average / last output (per
    ``config.result``). ``uncertainty`` is the SGLD posterior standard deviation (None without
    SGLD or before two samples). ``criterion`` is the stopping rule's current value.
    ``precision`` is the arithmetic the generator's forward pass ran in at this step.
    ``weight_noise`` is the std of the SGLD noise added to the weights after each step (0: none).
    ``memory_format`` is the generator's layout: ``"channels_last"`` or ``"contiguous"``.
    ``threads`` is the CPU threads the fit ran with (None off the CPU, or when its caller did
    not set them: the plane runner does, per :class:`~.threads.FitThreads`).
    """

    iteration: int
    loss: float
    output: torch.Tensor
    average: torch.Tensor
    estimate: torch.Tensor
    uncertainty: torch.Tensor | None
    criterion: float | None
    best_iteration: int | None
    stopped: bool
    elapsed: float
    backtracks: int
    done: bool
    network: nn.Module
    code: torch.Tensor
    optimizer: torch.optim.Optimizer
    precision: str = "float32"
    weight_noise: float = 0.0
    memory_format: str = "contiguous"
    threads: int | None = None


# ----------------------------------------------------------------------------- the generator

def make_input_code(config: DIPConfig, size: tuple[int, int], reduction: int,
                    generator: torch.Generator, batch: int = 1) -> torch.Tensor:
    """The fixed random input ``z``: uniform noise times ``input_scale`` (one independent code
    per item of a ``batch`` of slices), or a meshgrid."""
    h, w = size[0] // reduction, size[1] // reduction
    if config.input_type == "meshgrid" and config.network != "deep_decoder":
        ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        return torch.stack([xs, ys])[None]
    code = torch.rand((batch, input_channels(config), h, w), generator=generator)
    return code * config.input_scale


def seeded_generator_network(config: DIPConfig, out_channels: int, in_channels: int | None,
                             rng: torch.Generator) -> nn.Module:
    """Build the generator and initialise its weights from ``rng`` alone.

    The layers are created on the meta device (no memory, no random numbers), then given
    PyTorch's default initialisation drawn from the local generator. The global RNG is neither
    read nor changed, so fits running in parallel threads cannot take each other's seeds.
    With ``config.init="learned"`` the weights are then replaced by the learned ones shipped
    for this architecture (:mod:`.pretrained`; a ``ValueError`` if there are none): ``rng`` is
    drawn from as with random weights, so a seed gives the same input code either way.
    """
    arch = architecture(config, out_channels,
                        input_channels(config) if in_channels is None else in_channels)
    if config.init == "learned":
        learned_state(arch)  # refuse an architecture without learned weights before any work
    with torch.device("meta"):
        network = build_generator(config, out_channels, in_channels)
    network = network.to_empty(device="cpu")
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=rng)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(module.bias, -bound, bound, generator=rng)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
    if config.init == "learned":
        load_learned_weights(network, arch)
    return network


def build_fit(observation: Observation, config: DIPConfig, seed: int,
              device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """The seeded generator network and its input code, on ``device``."""
    out_channels = observation.target.shape[1]
    guide_channels = None if observation.guide is None else observation.guide.shape[1]
    rng = torch.Generator().manual_seed(seed)
    network = seeded_generator_network(config, out_channels, guide_channels, rng)
    if observation.guide is not None:
        code = observation.guide
    else:
        code = make_input_code(config, observation.size, network.input_reduction, rng,
                               batch=observation.target.shape[0])
    return network.to(device), code.to(device)


def input_noise_ramp(config: DIPConfig, size: tuple[int, int]) -> int:
    """Iterations over which the input-code perturbation grows to ``reg_noise_std`` for an
    estimate of ``size`` pixels: ``reg_noise_ramp``, with ``reg_noise_ramp_scaling="pixels"``
    times the image's share of :data:`~napari_dip.config.RAMP_REFERENCE_SIDE` squared pixels
    (at most 1): small images peak early, while a full ramp would still be on
    (``docs/benchmarks/speed.md``)."""
    if config.reg_noise_ramp_scaling == "none":
        return config.reg_noise_ramp
    share = min(1.0, size[0] * size[1] / RAMP_REFERENCE_SIDE ** 2)
    return round(config.reg_noise_ramp * share)


class InputPerturbation:
    """The input of step ``t``: the code plus Gaussian noise of std ``reg_noise_std``, grown
    linearly over the first :func:`input_noise_ramp` steps, drawn from ``rng``."""

    def __init__(self, config: DIPConfig, size: tuple[int, int], rng: torch.Generator) -> None:
        self.std, self.ramp, self.rng = config.reg_noise_std, input_noise_ramp(config, size), rng

    def __call__(self, code: torch.Tensor, iteration: int) -> torch.Tensor:
        if not self.std > 0:
            return code
        noise = torch.randn(code.shape, generator=self.rng, device=code.device)
        ramp = min(1.0, iteration / self.ramp) if self.ramp else 1.0
        return code + (ramp * self.std) * noise


# ----------------------------------------------------------------------------- the problem

def task_operator(factor: int, psf: np.ndarray | None = None) -> Operator:
    """The degradation of a task: the blur by ``psf`` (a checked PSF, see
    :func:`~.psf.check_psf`) for deconvolution, the Lanczos downsampler for super-resolution
    by ``factor``, else the identity."""
    if psf is not None:
        return Convolution(torch.from_numpy(psf).float())
    return LanczosDownsampler(factor) if factor > 1 else Identity()


def _data_fit(observation: Observation, config: DIPConfig, seed: int, device: torch.device,
              psf: np.ndarray | None = None,
              ) -> tuple[Operator, Likelihood, torch.Tensor, VarianceStop | HoldoutStop | None]:
    """The operator (the task's, then the mask of the pixels the loss sees), the likelihood,
    the observation on ``device`` and the stopping rule. The hold-out rule takes its pixels out
    of the mask."""
    target = observation.target.to(device)
    task = task_operator(observation.factor, psf).to(device)
    known, rule = observation.weight, None
    if config.stopping == "holdout":
        known, held = split_holdout(known, tuple(target.shape), config.holdout_fraction,
                                    torch.Generator().manual_seed(seed + 2))
        rule = HoldoutStop(target, held.to(device), task, patience=config.patience)
    elif config.stopping == "variance":
        rule = VarianceStop(window=config.variance_window, patience=config.patience)
    operator = task if known is None else task.then(Mask(known.to(device)))
    return operator, likelihood_from_config(config, observation.to_input), target, rule


# ----------------------------------------------------------------------------- the loop


def _stepper_config(config: DIPConfig, psf) -> DIPConfig:
    """``config`` for the generator's steps: a deconvolution under the Poisson deviance keeps
    float32 where ``precision="auto"`` would pick bfloat16. Its gradient, ``1 - y / rate``,
    follows the output's rounding where the blurred rate is small, and under bfloat16 such a
    fit stopped early, below its own observation (docs/benchmarks/deconvolution.md)."""
    if psf is not None and config.data_term == "poisson" and config.precision == "auto":
        return config.replace(precision="float32")
    return config


def fit(observation: Observation, config: DIPConfig, *, seed: int = 0,
        device: torch.device | str = "cpu", network: nn.Module | None = None,
        code: torch.Tensor | None = None,
        optimizer_state: dict | None = None, psf: np.ndarray | None = None,
        ) -> Iterator[FitStep]:
    """Fit a generator to ``observation``; yield a :class:`FitStep` every ``report_every`` steps.

    Each step perturbs the input code (:class:`InputPerturbation`), runs the generator, maps
    its output through the degradation operator and takes an Adam step on the likelihood (plus
    ``tv_weight`` x total variation, in the data term's noise units with
    ``tv_scaling="noise"``). The trackers keep the moving average of the outputs, draw
    posterior samples (SGLD, with ``sgld_noise > 0``), undo steps after which the fit diverged
    (backtracking) and stop the fit (``stopping``). With the same seed and number of CPU
    threads, CPU runs are bit-for-bit repeatable.

    ``network`` and ``code`` continue from an earlier fit (warm start) instead of a fresh,
    seeded initialisation; ``optimizer_state`` (that fit's ``optimizer.state_dict()``) carries
    on its Adam moment estimates too: a fresh Adam knocks a fitted network far off before it
    settles (``docs/benchmarks/stacks.md``). ``psf`` (checked by
    :func:`~.psf.check_psf`) makes the fit a deconvolution: the data term compares the blurred
    output with the observation.
    """
    device = torch.device(device)
    if network is None or code is None:
        network, code = build_fit(observation, config, seed, device)
    network.train()
    operator, likelihood, target, rule = _data_fit(observation, config, seed, device, psf)
    tv_weight = config.tv_weight
    if tv_weight > 0 and config.tv_scaling == "noise":
        tv_weight *= likelihood.noise_unit(observation.target, observation.weight)

    def loss_of(output: torch.Tensor) -> torch.Tensor:
        loss = likelihood(operator(output), target, operator.measured)
        if tv_weight > 0:
            loss = loss + tv_weight * total_variation(output)
        return loss

    pixels = observation.target.shape[0] * observation.size[0] * observation.size[1]  # per step
    stepper = Stepper(network, code, loss_of, _stepper_config(config, psf), device, pixels=pixels,
                      optimizer_state=optimizer_state)
    noise_rng = torch.Generator(device=device).manual_seed(seed + 1)
    perturbed = InputPerturbation(config, observation.size, noise_rng)
    guard = Backtracking(network, config.backtrack_drop_db, config.backtrack_every)
    average, posterior = MovingAverage(config.ema_weight, config.ema_init), None
    if config.sgld_noise > 0:
        noise_std = estimate_noise_std(observation.target, observation.weight)
        posterior = PosteriorSampler(network, sgld_weight_noise(config, noise_std), noise_rng,
                                     burn_in=config.burn_in, sample_every=config.sample_every)
    trackers = [tracker for tracker in (average, posterior) if tracker is not None]
    start = time.perf_counter()
    for iteration in range(1, config.max_iterations + 1):
        output, loss = stepper.forward_backward(iteration, perturbed(stepper.code, iteration),
                                                guard.restore)
        if not guard.update(iteration, output, loss=loss):  # True: diverged, weights put back
            stepper.update(loss)
            output = output.detach()
            for tracker in trackers:
                tracker.update(iteration, output)
        # nothing may keep this step's autograd graph alive into the next one (the loss, or the
        # output of a step that backtracked): a CUDA graph recorded then would meet its stale
        # per-weight gradient nodes and fail
        output, loss = output.detach(), loss.detach()
        current = average.estimate if config.result == "ema" else output
        stopped = rule is not None and rule.update(iteration, output, current)
        last = stopped or iteration == config.max_iterations
        if iteration % config.report_every == 0 or last:
            yield _fit_step(iteration, output, loss, current, average, posterior, rule, guard,
                            stepper, stopped=stopped, done=last,
                            elapsed=time.perf_counter() - start)
        if stopped:
            return


def _fit_step(iteration: int, output: torch.Tensor, loss: torch.Tensor, current: torch.Tensor,
              average: MovingAverage, posterior: PosteriorSampler | None,
              rule: VarianceStop | HoldoutStop | None, guard: Backtracking, stepper: Stepper,
              *, stopped: bool, done: bool, elapsed: float) -> FitStep:
    """The snapshot of a fit: the estimate is the posterior mean once there are samples, else
    the stopping rule's best point, else ``current`` (the moving average or the output)."""
    estimate = current
    if posterior is not None and posterior.count:
        estimate = posterior.mean
    elif rule is not None and rule.best_estimate is not None:
        estimate = rule.best_estimate
    return FitStep(iteration=iteration, loss=float(loss.item()), output=output,
                   average=average.estimate, estimate=estimate,
                   uncertainty=None if posterior is None else posterior.std,
                   criterion=None if rule is None else rule.criterion,
                   best_iteration=None if rule is None else rule.best_iteration,
                   stopped=stopped, elapsed=elapsed, backtracks=guard.count, done=done,
                   network=stepper.network, code=stepper.code, optimizer=stepper.optimizer,
                   precision=stepper.precision,
                   weight_noise=0.0 if posterior is None else posterior.weight_noise,
                   memory_format=stepper.memory_format)
