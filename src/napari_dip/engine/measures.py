"""Measures of images: total variation (a regulariser), PSNR (a score) and the level of white
noise in an observation (which scales the weight noise of Bayesian DIP)."""

from __future__ import annotations

import math

import numpy as np
import torch


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of ``(N, C, H, W)``: mean absolute neighbour difference."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return dx + dy


def psnr(estimate: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB between two arrays of the same shape."""
    diff = np.asarray(estimate, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


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
