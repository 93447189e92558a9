"""Degradation models: what the observed image is, given the generator's clean estimate.

- denoising: the identity, ``x0 = x + n``;
- inpainting: a mask of known pixels, ``m * x0 = m * x``;
- super-resolution: the paper's Lanczos-2 antialiasing downsampler, ``x0 = d(x)``.

Each comes as a function and an ``nn.Module``. :func:`data_loss` is the weighted squared error
the fit minimises; the weight is 0 on unknown pixels (masked or padding).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def lanczos_kernel(factor: int, support: int = 2) -> np.ndarray:
    """1D taps of the paper's Lanczos antialiasing kernel for downsampling by ``factor``.

    ``4 * factor`` taps sampled at half-pixel phase (so an even-sized image maps onto the
    centres of the coarse grid), normalised to sum to 1. The 2D kernel is the outer product.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    size = 2 * support * factor
    positions = (np.arange(size) + 0.5 - size / 2) / factor
    taps = np.sinc(positions) * np.sinc(positions / support)
    return taps / taps.sum()


def lanczos_downsample(image: torch.Tensor, factor: int, support: int = 2) -> torch.Tensor:
    """Downsample ``(N, C, H, W)`` by ``factor`` with the Lanczos kernel; H and W must be multiples
    of ``factor``. Borders are replicated, so the output is exactly ``(N, C, H/f, W/f)``."""
    return LanczosDownsampler(factor, support).to(image.device, image.dtype)(image)


class LanczosDownsampler(nn.Module):
    """The super-resolution degradation ``d``: separable Lanczos-2 filter, then stride
    ``factor``."""

    def __init__(self, factor: int, support: int = 2) -> None:
        super().__init__()
        self.factor = int(factor)
        taps = torch.from_numpy(lanczos_kernel(self.factor, support)).float()
        self.register_buffer("taps", taps, persistent=False)
        self.pad = (taps.numel() - self.factor) // 2

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n, c, h, w = image.shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"image sides ({h}, {w}) must be multiples of the factor "
                             f"{self.factor}")
        x = F.pad(image.reshape(n * c, 1, h, w), (self.pad,) * 4, mode="replicate")
        taps = self.taps.to(image.dtype)
        x = F.conv2d(x, taps.view(1, 1, -1, 1), stride=(self.factor, 1))
        x = F.conv2d(x, taps.view(1, 1, 1, -1), stride=(1, self.factor))
        return x.reshape(n, c, h // self.factor, w // self.factor)


def data_loss(prediction: torch.Tensor, target: torch.Tensor,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the pixels with non-zero ``weight`` (all pixels when None).

    With a binary weight this is the inpainting loss ``||(f(z) - x0) * m||^2``, normalised by
    the number of known values: values under the mask do not influence it at all.
    """
    residual = (prediction - target) ** 2
    if weight is None:
        return residual.mean()
    weight = weight.expand_as(residual)
    return (residual * weight).sum() / weight.sum().clamp_min(1.0)


def inpainting_loss(prediction: torch.Tensor, target: torch.Tensor,
                    missing: torch.Tensor) -> torch.Tensor:
    """Squared error on known pixels only; ``missing`` is true where the pixel is unknown."""
    return data_loss(prediction, target, (~missing.bool()).to(prediction.dtype))


class Degradation(nn.Module):
    """Maps the generator's estimate to the space of the observation: identity or downsampler."""

    def __init__(self, factor: int | None = None) -> None:
        super().__init__()
        self.factor = factor or 1
        self.downsample = LanczosDownsampler(self.factor) if self.factor > 1 else nn.Identity()

    def forward(self, estimate: torch.Tensor) -> torch.Tensor:
        return self.downsample(estimate)


def psnr(estimate: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB between two arrays of the same shape."""
    diff = np.asarray(estimate, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of ``(N, C, H, W)``: mean absolute neighbour difference."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return dx + dy


def estimate_noise_std(image: torch.Tensor, weight: torch.Tensor | None = None) -> float | None:
    """Robust estimate of the standard deviation of white noise in ``(N, C, H, W)`` ``image``.

    The second difference ``x[i-1] - 2 x[i] + x[i+1]`` along rows and columns has standard
    deviation ``sqrt(6) sigma`` on white noise and almost cancels smooth image structure; the
    median absolute value over every run of three known pixels (``weight > 0``, broadcast over
    channels) is scaled to sigma (Gaussian MAD). Edges and fine texture add to it, so a clean
    image does not read zero. None when fewer than 16 runs of three known pixels exist (a tiny
    image or a mask that leaves no three neighbours known).
    """
    known = torch.ones_like(image, dtype=torch.bool) if weight is None \
        else (weight > 0).expand_as(image)
    residues = []
    for dim in (2, 3):
        n = image.shape[dim]
        if n < 3:
            continue
        left, mid, right = (image.narrow(dim, k, n - 2) for k in range(3))
        runs = known.narrow(dim, 0, n - 2) & known.narrow(dim, 1, n - 2) & \
            known.narrow(dim, 2, n - 2)
        residues.append((left - 2 * mid + right)[runs])
    if not residues or sum(r.numel() for r in residues) < 16:
        return None
    residue = torch.cat(residues).abs().float()
    return float(residue.median()) / (0.6745 * math.sqrt(6.0))


def poisson_deviance(rate: torch.Tensor, counts: torch.Tensor,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """Poisson negative log-likelihood of ``counts`` under ``rate``, as a deviance.

    ``rate - counts + counts * log(counts / rate)`` is the NLL up to a term that does not depend
    on the rate, shifted so that a perfect fit scores 0 (and the loss stays non-negative).
    """
    rate = rate.clamp_min(1e-6)
    counts = counts.clamp_min(0.0)
    log_ratio = torch.where(counts > 0, torch.log(counts.clamp_min(1e-12) / rate),
                            torch.zeros_like(rate))
    deviance = rate - counts + counts * log_ratio
    if weight is None:
        return deviance.mean()
    weight = weight.expand_as(deviance)
    return (deviance * weight).sum() / weight.sum().clamp_min(1.0)


def generalized_anscombe(values: torch.Tensor, gain: float, read_noise: float,
                         offset: float = 0.0) -> torch.Tensor:
    """Variance-stabilising transform for Poisson-Gaussian noise ``z = gain * P + N(offset, s^2)``.

    After it the noise is close to unit-variance Gaussian, so a squared error fits it well.
    """
    inside = gain * values + 0.375 * gain ** 2 + read_noise ** 2 - gain * offset
    return (2.0 / gain) * torch.sqrt(inside.clamp_min(0.0) + 1e-12)


class DataTerm:
    """The fit's data term, in the noise model the user chose.

    ``gaussian``: squared error (the paper's). ``poisson``: Poisson deviance on photon counts
    ``(x - offset) / gain``. ``poisson_gaussian``: squared error after the generalised
    Anscombe transform. ``to_input = (scale, shift)`` maps the model's [0, 1] back to the
    input's intensity units, in which ``gain``, ``read_noise`` and ``offset`` are given.
    """

    def __init__(self, model: str = "gaussian", *, to_input: tuple[float, float] = (1.0, 0.0),
                 gain: float = 1.0, read_noise: float = 0.0, offset: float = 0.0) -> None:
        if model not in ("gaussian", "poisson", "poisson_gaussian"):
            raise ValueError(f"unknown data term {model!r}")
        self.model, self.to_input = model, to_input
        self.gain, self.read_noise, self.offset = gain, read_noise, offset

    def _input_units(self, unit: torch.Tensor) -> torch.Tensor:
        scale, shift = self.to_input
        return unit * scale + shift

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
        if self.model == "gaussian":
            return data_loss(prediction, target, weight)
        pred, obs = self._input_units(prediction), self._input_units(target)
        if self.model == "poisson":
            return poisson_deviance((pred - self.offset) / self.gain,
                                    (obs - self.offset) / self.gain, weight)
        return data_loss(generalized_anscombe(pred, self.gain, self.read_noise, self.offset),
                         generalized_anscombe(obs, self.gain, self.read_noise, self.offset),
                         weight)
