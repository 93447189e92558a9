"""The per-image optimisation loop of Deep Image Prior, as a generator of snapshots.

:func:`fit` fits a randomly initialised generator ``f(z)`` to one :class:`~.stack.Observation`
and yields a :class:`FitStep` every ``report_every`` iterations and after the last one. The
consumer may stop between any two yields (``break`` or ``generator.close()``): that is how
previews, progress bars, the stop button and tests that run 20 steps all work.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .config import RAMP_REFERENCE_SIDE, SGLD_REFERENCE_NOISE, SGLD_SCALE_LIMITS, DIPConfig
from .device import autocast_dtype, use_channels_last
from .networks import build_generator, input_channels
from .operators import DataTerm, Degradation, estimate_noise_std, total_variation
from .engine.problem import Observation
from .stopping import HoldoutStop, VarianceStop, split_holdout


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


def _dtype_name(dtype: torch.dtype | None) -> str:
    """"bfloat16", "float16", or "float32" for no autocast."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


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
    """
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


class _MovingAverage:
    """Exponential moving average of the outputs; ``start`` says how it begins.

    - ``"first"`` (the paper's code) starts the average at the first output, so for the first few
      hundred steps the estimate still carries the untrained network's grey output (weight
      ``weight**n``).
    - ``"debiased"`` starts from zero and divides by ``1 - weight**n`` (as Adam does for its
      moments): every output counts by its own weight, the untrained ones included, until the
      average's horizon ``1 / (1 - weight)`` has passed over them.
    - ``"recent"`` lets the weight grow with the run, ``min(weight, 1 - RECENT_SHARE / n)``: the
      average spans about the latest quarter of the steps taken so far (up to the weight's own
      horizon), so the first outputs are forgotten within a few dozen steps. Needs no bias
      correction: the first ``RECENT_SHARE`` steps take the output as it is.
    """

    RECENT_SHARE = 4.0

    def __init__(self, weight: float, start: str = "first") -> None:
        self.weight, self.start = weight, start
        self.value: torch.Tensor | None = None
        self.count = 0

    def update(self, sample: torch.Tensor) -> torch.Tensor:
        self.count += 1
        if self.weight == 0:
            return sample
        weight = self.weight
        if self.start == "recent":
            weight = min(weight, max(0.0, 1.0 - self.RECENT_SHARE / self.count))
        if self.value is None:
            self.value = sample * (1.0 - weight) if self.start == "debiased" else sample
        else:
            self.value = self.value * weight + sample * (1.0 - weight)
        if self.start == "debiased":
            return self.value / (1.0 - weight ** self.count)
        return self.value


class _Posterior:
    """Running mean and standard deviation of sampled outputs (Welford's algorithm)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.sum_sq: torch.Tensor | None = None

    def add(self, sample: torch.Tensor) -> None:
        self.count += 1
        if self.mean is None:
            self.mean, self.sum_sq = sample.clone(), torch.zeros_like(sample)
            return
        delta = sample - self.mean
        self.mean.add_(delta / self.count)
        self.sum_sq.add_(delta * (sample - self.mean))

    @property
    def std(self) -> torch.Tensor | None:
        return None if self.count < 2 else (self.sum_sq / self.count).sqrt()


def sgld_weight_noise(config: DIPConfig, noise_std: float | None) -> float:
    """Std of the Gaussian noise SGLD adds to the weights after each step.

    ``sgld_noise`` x the learning rate; with ``sgld_noise_scaling="noise"`` also times the
    observation's noise std (``noise_std``, e.g. from :func:`estimate_noise_std`) over
    :data:`SGLD_REFERENCE_NOISE`, clipped to :data:`SGLD_SCALE_LIMITS` (factor 1 when
    ``noise_std`` is None). Langevin dynamics on a squared error samples the posterior of
    Gaussian noise of one level; the same weight noise on data with a tenth of that noise
    swamps the fit (docs/benchmarks.md, "Bayesian DIP").
    """
    std = config.sgld_noise * config.learning_rate
    if config.sgld_noise_scaling == "none" or noise_std is None:
        return std
    low, high = SGLD_SCALE_LIMITS
    return std * min(max(noise_std / SGLD_REFERENCE_NOISE, low), high)


def input_noise_ramp(config: DIPConfig, size: tuple[int, int]) -> int:
    """Iterations over which the input-code perturbation grows to ``reg_noise_std`` for an
    estimate of ``size`` pixels: ``reg_noise_ramp``, with ``reg_noise_ramp_scaling="pixels"``
    times the image's share of :data:`RAMP_REFERENCE_SIDE` squared pixels (at most 1).

    Without the perturbation the generator climbs faster at first; on 256x256 images that
    brought the best result sooner, while on 64x64 crops, which peak within a few hundred
    iterations, a 500-iteration ramp returned less (docs/benchmarks.md, "Speed")."""
    if config.reg_noise_ramp_scaling == "none":
        return config.reg_noise_ramp
    share = min(1.0, size[0] * size[1] / RAMP_REFERENCE_SIDE ** 2)
    return round(config.reg_noise_ramp * share)


def _inject_weight_noise(network: nn.Module, std: float, generator: torch.Generator) -> None:
    """SGLD: Gaussian noise on the convolution kernels after an optimiser step."""
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.dim() == 4:
                parameter.add_(torch.randn(parameter.shape, generator=generator,
                                           device=parameter.device, dtype=parameter.dtype) * std)


def _restore(network: nn.Module, saved: list[torch.Tensor] | None) -> None:
    """Copy saved weights back into the network (no-op when nothing was saved yet)."""
    if saved is None:
        return
    with torch.no_grad():
        for parameter, value in zip(network.parameters(), saved):
            parameter.copy_(value)


GRAPH_WARMUP = 3
"""Eager steps before a step is recorded as a CUDA graph (lazy initialisations happen there)."""


class GraphedStep:
    """The forward pass, loss and backward pass of a training step, recorded once as a CUDA graph
    and replayed for every later step.

    A step of the slim generators launches about a thousand small kernels; launched one by one
    from Python they keep a large GPU idle most of the time (docs/benchmarks.md, "GPU"). A replay
    is one launch. The input code is copied into the recorded input before each replay, and the
    gradients land in the same buffers every time (they are overwritten, not accumulated). The
    optimiser's update stays outside the graph, so a non-finite loss is still caught before it
    reaches the weights, and weights restored in place (backtracking) are what the next replay
    reads.
    """

    def __init__(self, step_loss: Callable, network: nn.Module, net_input: torch.Tensor,
                 warmup: int = 2) -> None:
        self.input = net_input.detach().clone()
        # PyTorch's recipe: warm up on the stream the graph is recorded on, so that autograd's
        # per-weight gradient nodes belong to that stream (the warm-up's gradients are dropped;
        # no update is taken)
        stream = torch.cuda.Stream(net_input.device)
        stream.wait_stream(torch.cuda.current_stream(net_input.device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                step_loss(self.input)[1].backward()
        network.zero_grad(set_to_none=True)  # the recorded backward writes fresh gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=stream):
            self.output, self.loss = step_loss(self.input, recording=True)
            self.loss.backward()
        torch.cuda.current_stream(net_input.device).wait_stream(stream)

    def __call__(self, net_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.input.copy_(net_input)
        self.graph.replay()
        # copies: the recorded buffers are overwritten by the next replay
        return self.output.clone(), self.loss.clone()


def record_step(step_loss: Callable, network: nn.Module,
                net_input: torch.Tensor) -> GraphedStep | None:
    """A :class:`GraphedStep`, or None (after a warning) where recording fails: the fit then goes
    on launching kernels one by one, as it would with ``cuda_graph="off"``."""
    try:
        return GraphedStep(step_loss, network, net_input)
    except Exception as error:  # e.g. an operation that cannot be recorded on this PyTorch
        warnings.warn(f"could not record the training step as a CUDA graph ({error}); "
                      f"continuing without (set cuda_graph='off' to skip the attempt)",
                      RuntimeWarning, stacklevel=3)
        network.zero_grad(set_to_none=True)
        return None


def make_optimizer(network: nn.Module, config: DIPConfig) -> torch.optim.Adam:
    """Adam over the generator's weights, as one fused kernel where this PyTorch and device
    have it (CPU from PyTorch 2.4, CUDA): the same update as the per-tensor loop, without the
    loop over the generator's hundred-odd weight tensors, which took 4.2 ms of a 0.1 s step of
    preset auto at 256x256 on one CPU thread, against 0.64 ms fused (docs/benchmarks.md)."""
    options = dict(lr=config.learning_rate, weight_decay=config.weight_decay)
    try:
        return torch.optim.Adam(network.parameters(), fused=True, **options)
    except RuntimeError:  # an older PyTorch without fused Adam on this device
        return torch.optim.Adam(network.parameters(), **options)


def fit(observation: Observation, config: DIPConfig, *, seed: int = 0,
        device: torch.device | str = "cpu", network: nn.Module | None = None,
        code: torch.Tensor | None = None,
        optimizer_state: dict | None = None) -> Iterator[FitStep]:
    """Fit a generator to ``observation``; yield a :class:`FitStep` every ``report_every`` steps.

    Each step perturbs the input code with Gaussian noise (``reg_noise_std``), runs the
    generator, maps its output through the degradation (identity or Lanczos downsampler) and
    takes an Adam step on the data term (plus ``tv_weight`` x total variation). Alongside it
    keeps the exponential moving average of the outputs (``ema_weight``), feeds the stopping
    rule (``stopping``), and with ``sgld_noise > 0`` injects weight noise after every step and
    averages posterior samples after ``burn_in``. Every ``backtrack_every`` steps the loss is
    compared with the last good one; if the fit to the data dropped by more than
    ``backtrack_drop_db``, the last good weights are restored (the paper's guard against
    divergence). With the same seed and number of CPU threads (their sums are split by
    thread), CPU runs are bit-for-bit repeatable.

    The generator runs in channels-last memory format where ``memory_format`` says so (by
    default on CUDA and on CPUs with native bfloat16); ``precision`` may run its forward
    pass under bfloat16 or float16 autocast (the loss, weights and optimiser stay float32; a
    non-finite loss sends the fit back to float32 for good), and ``compile`` wraps it in
    ``torch.compile``.

    ``network`` and ``code`` continue from an earlier fit (warm start) instead of a fresh,
    seeded initialisation; ``optimizer_state`` (that fit's ``optimizer.state_dict()``) carries
    on its Adam moment estimates too. A fresh Adam moves every weight by about the learning
    rate in each of its first steps, which knocks a fitted network far off before it settles
    (measured in docs/benchmarks.md, "Stacks").
    """
    device = torch.device(device)
    if network is None or code is None:
        network, code = build_fit(observation, config, seed, device)
    network.train()
    channels_last = use_channels_last(config.memory_format, device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
        code = code.contiguous(memory_format=torch.channels_last)
    forward = network if config.compile == "off" else torch.compile(network, mode=config.compile)
    pixels = observation.target.shape[0] * observation.size[0] * observation.size[1]  # per step
    amp_dtype = autocast_dtype(config.precision, device, pixels)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    target = observation.target.to(device)
    weight = observation.weight
    degrade = Degradation(observation.factor).to(device)
    rule: VarianceStop | HoldoutStop | None = None
    if config.stopping == "holdout":
        weight, held = split_holdout(weight, tuple(target.shape), config.holdout_fraction,
                                     torch.Generator().manual_seed(seed + 2))
        rule = HoldoutStop(target, held.to(device), degrade, patience=config.patience)
    elif config.stopping == "variance":
        rule = VarianceStop(window=config.variance_window, patience=config.patience)
    weight = None if weight is None else weight.to(device)
    data_term = DataTerm(config.data_term, to_input=observation.to_input, gain=config.gain,
                         read_noise=config.read_noise, offset=config.offset)
    noise_rng = torch.Generator(device=device).manual_seed(seed + 1)
    optimizer = make_optimizer(network, config)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        for group in optimizer.param_groups:  # this fit's settings, the earlier fit's moments
            group.update(lr=config.learning_rate, weight_decay=config.weight_decay)
    threshold = 10.0 ** (config.backtrack_drop_db / 10.0)
    posterior = _Posterior() if config.sgld_noise > 0 else None
    weight_noise = 0.0 if posterior is None else sgld_weight_noise(
        config, estimate_noise_std(observation.target, observation.weight))

    def step_loss(net_input: torch.Tensor,
                  recording: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        # autocast's cache of cast weights must not outlive a recorded graph's replays
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None, cache_enabled=not recording):
            output = forward(net_input)
        output = output.float()
        loss = data_term(degrade(output), target, weight)
        if config.tv_weight > 0:
            loss = loss + config.tv_weight * total_variation(output)
        return output, loss

    ramp_length = input_noise_ramp(config, observation.size)
    ema = _MovingAverage(config.ema_weight, config.ema_init)
    average: torch.Tensor | None = None
    good_weights: list[torch.Tensor] | None = None
    good_loss = math.inf
    backtracks = 0
    graph: GraphedStep | None = None
    graphable = (device.type == "cuda" and config.cuda_graph == "auto" and scaler is None
                 and config.compile == "off")
    start = time.perf_counter()
    for iteration in range(1, config.max_iterations + 1):
        net_input = code
        if config.reg_noise_std > 0:
            noise = torch.randn(code.shape, generator=noise_rng, device=device)
            ramp = min(1.0, iteration / ramp_length) if ramp_length else 1.0
            net_input = code + (ramp * config.reg_noise_std) * noise
        if graphable and graph is None and iteration > GRAPH_WARMUP:
            graph = record_step(step_loss, network, net_input)
            graphable = graph is not None
        if graph is not None:  # forward and backward in one replay
            output, loss = graph(net_input)
        else:
            optimizer.zero_grad(set_to_none=True)
            output, loss = step_loss(net_input)
        if amp_dtype is not None and not torch.isfinite(loss):
            # reduced precision broke down: redo the step in float32, from now on
            amp_dtype, scaler, graph, graphable = None, None, None, False
            optimizer.zero_grad(set_to_none=True)
            output, loss = step_loss(net_input)
            if not torch.isfinite(loss):  # the weights themselves went bad
                _restore(network, good_weights)
                output, loss = step_loss(net_input)
        checking = config.backtrack_drop_db > 0 and iteration % config.backtrack_every == 0
        if checking and loss.item() > threshold * good_loss and good_weights is not None:
            _restore(network, good_weights)
            backtracks += 1
        else:
            if checking:
                good_loss = loss.item()
                good_weights = [p.detach().clone() for p in network.parameters()]
            if scaler is None:
                if graph is None:  # a replay has already computed the gradients
                    loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            if posterior is not None:
                _inject_weight_noise(network, weight_noise, noise_rng)
            output = output.detach()
            average = ema.update(output)
            if posterior is not None and iteration > config.burn_in and \
                    (iteration - config.burn_in) % config.sample_every == 0:
                posterior.add(output)

        # nothing may keep this step's autograd graph alive into the next one (the loss, or the
        # output of a step that backtracked): a CUDA graph recorded then would meet its stale
        # per-weight gradient nodes and fail
        output, loss = output.detach(), loss.detach()
        current = average if config.result == "ema" else output
        stopped = rule is not None and rule.update(iteration, output, current)
        last = stopped or iteration == config.max_iterations
        if iteration % config.report_every == 0 or last:
            estimate = current
            if posterior is not None and posterior.count:
                estimate = posterior.mean
            elif rule is not None and rule.best_estimate is not None:
                estimate = rule.best_estimate
            yield FitStep(iteration=iteration, loss=float(loss.item()), output=output.detach(),
                          average=average, estimate=estimate,
                          uncertainty=None if posterior is None else posterior.std,
                          criterion=None if rule is None else rule.criterion,
                          best_iteration=None if rule is None else rule.best_iteration,
                          stopped=stopped, elapsed=time.perf_counter() - start,
                          backtracks=backtracks, done=last, network=network, code=code,
                          optimizer=optimizer, precision=_dtype_name(amp_dtype),
                          weight_noise=weight_noise,
                          memory_format="channels_last" if channels_last else "contiguous")
        if stopped:
            return
