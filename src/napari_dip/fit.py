"""The per-image optimisation loop of Deep Image Prior, as a generator of snapshots.

:func:`fit` fits a randomly initialised generator ``f(z)`` to one :class:`~.stack.Observation`
with Adam and yields a :class:`FitStep` every ``report_every`` iterations and after the last one.
The consumer may stop between any two yields (``break`` or ``generator.close()``): that is how
previews, progress bars, the stop button and tests that run 20 steps all work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .config import DIPConfig
from .networks import build_generator, input_channels
from .operators import Degradation, data_loss
from .stack import Observation


@dataclass
class FitStep:
    """The state of a fit after ``iteration`` optimisation steps (tensors in model space)."""

    iteration: int
    loss: float
    output: torch.Tensor
    average: torch.Tensor
    elapsed: float
    backtracks: int
    done: bool
    network: nn.Module
    code: torch.Tensor


def make_input_code(config: DIPConfig, size: tuple[int, int], reduction: int,
                    generator: torch.Generator) -> torch.Tensor:
    """The fixed random input ``z``: uniform noise times ``input_scale``, or a meshgrid."""
    h, w = size[0] // reduction, size[1] // reduction
    if config.input_type == "meshgrid" and config.network != "deep_decoder":
        ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        return torch.stack([xs, ys])[None]
    code = torch.rand((1, input_channels(config), h, w), generator=generator)
    return code * config.input_scale


def build_fit(observation: Observation, config: DIPConfig, seed: int,
              device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """The seeded generator network and its input code, on ``device``."""
    out_channels = observation.target.shape[1]
    guide_channels = None if observation.guide is None else observation.guide.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_generator(config, out_channels, guide_channels)
    rng = torch.Generator().manual_seed(seed)
    if observation.guide is not None:
        code = observation.guide
    else:
        code = make_input_code(config, observation.size, network.input_reduction, rng)
    return network.to(device), code.to(device)


def fit(observation: Observation, config: DIPConfig, *, seed: int = 0,
        device: torch.device | str = "cpu", network: nn.Module | None = None,
        code: torch.Tensor | None = None) -> Iterator[FitStep]:
    """Fit a generator to ``observation``; yield a :class:`FitStep` every ``report_every`` steps.

    Each step perturbs the input code with Gaussian noise (``reg_noise_std``), runs the
    generator, maps its output through the degradation (identity or Lanczos downsampler) and
    takes an Adam step on the weighted squared error. The exponential moving average of the
    outputs (``ema_weight``) is kept alongside. Every ``backtrack_every`` steps the loss is
    compared with the last good one; if the fit to the data dropped by more than
    ``backtrack_drop_db``, the last good weights are restored (the paper's guard against
    divergence). With the same seed, CPU runs are bit-for-bit repeatable.

    ``network`` and ``code`` continue from an earlier fit (warm start) instead of a fresh,
    seeded initialisation.
    """
    device = torch.device(device)
    if network is None or code is None:
        network, code = build_fit(observation, config, seed, device)
    network.train()
    target = observation.target.to(device)
    weight = None if observation.weight is None else observation.weight.to(device)
    degrade = Degradation(observation.factor).to(device)
    noise_rng = torch.Generator(device=device).manual_seed(seed + 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    threshold = 10.0 ** (config.backtrack_drop_db / 10.0)

    average: torch.Tensor | None = None
    good_weights: list[torch.Tensor] | None = None
    good_loss = float("inf")
    backtracks = 0
    start = time.perf_counter()
    for iteration in range(1, config.max_iterations + 1):
        net_input = code
        if config.reg_noise_std > 0:
            noise = torch.randn(code.shape, generator=noise_rng, device=device)
            net_input = code + config.reg_noise_std * noise
        optimizer.zero_grad(set_to_none=True)
        output = network(net_input)
        loss = data_loss(degrade(output), target, weight)

        checking = config.backtrack_drop_db > 0 and iteration % config.backtrack_every == 0
        if checking and loss.item() > threshold * good_loss and good_weights is not None:
            with torch.no_grad():
                for parameter, saved in zip(network.parameters(), good_weights):
                    parameter.copy_(saved)
            backtracks += 1
        else:
            if checking:
                good_loss = loss.item()
                good_weights = [p.detach().clone() for p in network.parameters()]
            loss.backward()
            optimizer.step()
            output = output.detach()
            if average is None or config.ema_weight == 0:
                average = output
            else:
                average = average * config.ema_weight + output * (1.0 - config.ema_weight)

        last = iteration == config.max_iterations
        if iteration % config.report_every == 0 or last:
            yield FitStep(iteration=iteration, loss=float(loss.item()), output=output.detach(),
                          average=average, elapsed=time.perf_counter() - start,
                          backtracks=backtracks, done=last, network=network, code=code)

