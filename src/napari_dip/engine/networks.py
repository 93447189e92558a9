"""Generator architectures: the paper's hourglass (with or without skip connections) and a Deep
Decoder.

Every generator maps a fixed input code ``z`` of shape ``(N, C_in, H / r, W / r)`` to an image
``(N, C_out, H, W)`` in [0, 1] (sigmoid output), where ``r = generator.input_reduction``
(1 for the hourglasses, ``2**scales`` for the Deep Decoder). ``H`` and ``W`` must be multiples of
``generator.size_multiple``; the engine pads images to that.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DIPConfig


class ReflectionPad(nn.ReflectionPad2d):
    """Reflection padding that keeps its input's dtype under autocast.

    CPU autocast lists reflection padding among the operations it runs in float32, so a
    bfloat16 activation would be widened to float32, padded, and narrowed again by the next
    convolution, forward and backward. Padding only copies values, so doing it in the input's
    own dtype gives the same numbers without the two conversions.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


class _ConcatChannels(torch.autograd.Function):
    """``torch.cat`` along channels whose backward hands each input a gradient in that input's
    own memory layout. In channels-last memory each input's share of the concatenation's
    gradient is a strided view, which sent the backward kernels of upsampling, BatchNorm and
    LeakyReLU behind it down slow paths."""

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [t.shape[1] for t in tensors]
        ctx.formats = [torch.channels_last if t.is_contiguous(memory_format=torch.channels_last)
                       and not t.is_contiguous() else torch.contiguous_format for t in tensors]
        return torch.cat(tensors, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(part.contiguous(memory_format=layout)
                     for part, layout in zip(grad.split(ctx.sizes, dim=1), ctx.formats))


def concat_channels(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate ``(N, C_i, H, W)`` tensors along channels (see :class:`_ConcatChannels`)."""
    return _ConcatChannels.apply(*tensors)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Convolution with reflection padding, so that borders carry no zero-padding artefacts."""
    pad = (kernel - 1) // 2
    layers: list[nn.Module] = [ReflectionPad(pad)] if pad else []
    layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride=stride))
    return nn.Sequential(*layers)


def _conv_bn_act(in_channels: int, out_channels: int, kernel: int,
                 stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, out_channels, kernel, stride),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2, inplace=True))


class _HourglassLevel(nn.Module):
    """One scale: stride-2 encoder, the deeper levels, upsampling, optional skip, decoder."""

    def __init__(self, in_channels: int, down: int, up: int, config: DIPConfig,
                 inner: nn.Module | None, inner_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(_conv_bn_act(in_channels, down, config.kernel_down, stride=2),
                                     _conv_bn_act(down, down, config.kernel_down))
        self.inner = inner
        self.upsample = nn.Upsample(scale_factor=2, mode=config.upsample)
        self.skip = (_conv_bn_act(in_channels, skip_channels, config.kernel_skip)
                     if skip_channels else None)
        merged = skip_channels + inner_channels
        self.decoder = nn.Sequential(nn.BatchNorm2d(merged),
                                     _conv_bn_act(merged, up, config.kernel_up),
                                     _conv_bn_act(up, up, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.encoder(x)
        if self.inner is not None:
            y = self.inner(y)
        y = self.upsample(y)
        if self.skip is not None:
            y = concat_channels(self.skip(x), y)
        return self.decoder(y)


class Hourglass(nn.Module):
    """The Deep Image Prior encoder-decoder ("skip" network of the paper).

    Each of ``scales`` levels halves the resolution with a stride-2 convolution and doubles it
    back with bilinear or nearest upsampling; ``channels_skip > 0`` adds a skip connection per
    level. Convolutions use reflection padding, BatchNorm and LeakyReLU(0.2); the output goes
    through a sigmoid.
    """

    input_reduction = 1

    def __init__(self, in_channels: int, out_channels: int, config: DIPConfig,
                 use_skips: bool = True) -> None:
        super().__init__()
        self.size_multiple = size_multiple(config)
        skip = config.channels_skip if use_skips else 0
        inner: nn.Module | None = None
        inner_channels = 0
        for level in reversed(range(config.scales)):
            down = level_width(config.channels_down, level, config)
            up = level_width(config.channels_up, level, config)
            level_in = in_channels if level == 0 else level_width(config.channels_down, level - 1,
                                                                  config)
            # the deepest level upsamples its own encoder output
            inner = _HourglassLevel(level_in, down, up, config, inner, inner_channels or down, skip)
            inner_channels = up
        self.body = inner
        self.head = nn.Sequential(nn.Conv2d(level_width(config.channels_up, 0, config),
                                            out_channels, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


class DeepDecoder(nn.Module):
    """Deep Decoder (Heckel & Hand, 2019): 1x1 convolutions, upsampling, ReLU and BatchNorm.

    Under-parameterised (about 100k weights at 128 channels and 5 scales), so it fits noise
    slowly. Its input code has ``channels_up`` channels at ``1 / 2**scales`` of the output size.
    """

    def __init__(self, out_channels: int, config: DIPConfig) -> None:
        super().__init__()
        k = config.channels_up
        self.size_multiple = self.input_reduction = size_multiple(config)
        layers: list[nn.Module] = []
        for _ in range(config.scales):
            layers += [nn.Conv2d(k, k, 1), nn.Upsample(scale_factor=2, mode=config.upsample),
                       nn.ReLU(inplace=True), nn.BatchNorm2d(k)]
        layers += [nn.Conv2d(k, k, 1), nn.ReLU(inplace=True), nn.BatchNorm2d(k),
                   nn.Conv2d(k, out_channels, 1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


def level_width(channels: int, level: int, config: DIPConfig) -> int:
    """Feature channels at hourglass ``level`` (0: full resolution): ``channels`` everywhere, or
    with ``top_channels`` set, ``top_channels * 2**level`` capped at ``channels``; narrow
    full-resolution levels are where most of the arithmetic is saved."""
    if config.top_channels == 0:
        return channels
    return min(channels, config.top_channels * 2 ** level)


def size_multiple(config: DIPConfig) -> int:
    """The generators' output sides must be multiples of this (``2**scales``)."""
    return 2 ** config.scales


def input_channels(config: DIPConfig) -> int:
    """Channels of the random input code the configured generator expects."""
    if config.network == "deep_decoder":
        return config.channels_up
    return 2 if config.input_type == "meshgrid" else config.input_channels


def build_generator(config: DIPConfig, out_channels: int,
                    in_channels: int | None = None) -> nn.Module:
    """The generator named by ``config.network``.

    ``in_channels`` overrides the input code's channel count (a guide image as input).
    """
    if config.network == "deep_decoder":
        if in_channels is not None:
            raise ValueError("the Deep Decoder takes no guide image; use network='skip' or "
                             "'hourglass' with guide=")
        return DeepDecoder(out_channels, config)
    in_channels = input_channels(config) if in_channels is None else in_channels
    return Hourglass(in_channels, out_channels, config, use_skips=config.network == "skip")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
