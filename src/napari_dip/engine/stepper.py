"""One optimisation step of the generator, as fast as the device allows.

:class:`Stepper` owns the machinery of a step, none of which changes what the step computes
beyond the rounding: the arithmetic of the forward pass (autocast to bfloat16 or float16, with
a gradient scaler for float16, and a fall-back to float32 for good when it breaks down), the
memory layout (channels-last), ``torch.compile``, replay of the recorded forward and backward
pass as a CUDA graph (:class:`GraphedStep`), and the optimiser (:func:`make_optimizer`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from ..config import DIPConfig
from .device import autocast_dtype, use_channels_last

GRAPH_WARMUP = 3
"""Eager steps before a step is recorded as a CUDA graph (lazy initialisations happen there)."""


class GraphedStep:
    """The forward pass, loss and backward pass of a training step, recorded once as a CUDA graph
    and replayed for every later step.

    A step of the slim generators launches about a thousand small kernels; launched one by one
    from Python they keep a large GPU idle most of the time (``docs/benchmarks/gpu.md``). A
    replay is one launch. The input code is copied into the recorded input before each replay,
    and the gradients land in the same buffers every time (they are overwritten, not
    accumulated). The optimiser's update stays outside the graph, so a non-finite loss is still
    caught before it reaches the weights, and weights restored in place (backtracking) are what
    the next replay reads.
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


def make_optimizer(network: nn.Module, config: DIPConfig,
                   state: dict | None = None) -> torch.optim.Adam:
    """Adam over the generator's weights, as one fused kernel where this PyTorch and device
    have it (CPU from PyTorch 2.4, CUDA): the same update as the per-tensor loop, without the
    loop over the generator's hundred-odd weight tensors (``docs/benchmarks/speed.md``).

    ``state`` (an earlier fit's ``optimizer.state_dict()``) carries on its moment estimates,
    with this config's learning rate and weight decay.
    """
    options = dict(lr=config.learning_rate, weight_decay=config.weight_decay)
    try:
        optimizer = torch.optim.Adam(network.parameters(), fused=True, **options)
    except RuntimeError:  # an older PyTorch without fused Adam on this device
        optimizer = torch.optim.Adam(network.parameters(), **options)
    if state is not None:
        optimizer.load_state_dict(state)
        for group in optimizer.param_groups:  # this fit's settings, the earlier fit's moments
            group.update(options)
    return optimizer


class Stepper:
    """Forward pass, loss, backward pass and optimiser update of ``network``.

    ``loss_of`` maps the generator's output (float32) to the loss. The network (and ``code``,
    see :attr:`code`) is put in channels-last memory where ``config.memory_format`` says so,
    wrapped in ``torch.compile`` where ``config.compile`` asks, and run under autocast where
    ``config.precision`` picks a reduced precision for ``device`` and ``pixels`` output pixels
    per step. On CUDA, with ``cuda_graph="auto"`` (and neither float16 nor compile), steps after
    :data:`GRAPH_WARMUP` are replayed from a recorded CUDA graph.

    Each step is :meth:`forward_backward`, then (unless the step is rejected) :meth:`update`.
    """

    def __init__(self, network: nn.Module, code: torch.Tensor,
                 loss_of: Callable[[torch.Tensor], torch.Tensor], config: DIPConfig,
                 device: torch.device, *, pixels: int, optimizer_state: dict | None = None,
                 ) -> None:
        self.channels_last = use_channels_last(config.memory_format, device)
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
            code = code.contiguous(memory_format=torch.channels_last)
        self.network, self.code, self.loss_of, self.device = network, code, loss_of, device
        self.forward = network if config.compile == "off" else \
            torch.compile(network, mode=config.compile)
        self.amp_dtype = autocast_dtype(config.precision, device, pixels)
        self.scaler = torch.amp.GradScaler(device.type) \
            if self.amp_dtype == torch.float16 else None
        self.optimizer = make_optimizer(network, config, optimizer_state)
        self.graph: GraphedStep | None = None
        self.graphable = (device.type == "cuda" and config.cuda_graph == "auto"
                          and self.scaler is None and config.compile == "off")

    @property
    def precision(self) -> str:
        """The arithmetic of the forward pass now: "bfloat16", "float16" or "float32"."""
        return "float32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.")

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    def step_loss(self, net_input: torch.Tensor,
                  recording: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's output (float32) for ``net_input`` and its loss."""
        # autocast's cache of cast weights must not outlive a recorded graph's replays
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None, cache_enabled=not recording):
            output = self.forward(net_input)
        output = output.float()
        return output, self.loss_of(output)

    def forward_backward(self, iteration: int, net_input: torch.Tensor,
                         restore_weights: Callable[[], None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and loss of step ``iteration`` (gradients computed where a graph replays).

        A non-finite loss under reduced precision redoes the step in float32, from then on; if
        the loss is still not finite, the weights themselves went bad: ``restore_weights`` puts
        good ones back and the step is redone once more.
        """
        if self.graphable and self.graph is None and iteration > GRAPH_WARMUP:
            self.graph = record_step(self.step_loss, self.network, net_input)
            self.graphable = self.graph is not None
        if self.graph is not None:  # forward and backward in one replay
            output, loss = self.graph(net_input)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            output, loss = self.step_loss(net_input)
        if self.amp_dtype is not None and not torch.isfinite(loss):
            self.amp_dtype, self.scaler, self.graph, self.graphable = None, None, None, False
            self.optimizer.zero_grad(set_to_none=True)
            output, loss = self.step_loss(net_input)
            if not torch.isfinite(loss):
                restore_weights()
                output, loss = self.step_loss(net_input)
        return output, loss

    def update(self, loss: torch.Tensor) -> None:
        """Backward pass (unless a replay has computed the gradients) and optimiser step."""
        if self.scaler is None:
            if self.graph is None:
                loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
