"""Offline sample data, made from images that scikit-image ships (nothing is downloaded).

Each ``make_*`` function returns clean and degraded arrays with a fixed seed, so the demo, the
tests and the napari sample menu all see the same data.
"""

from __future__ import annotations

import numpy as np

NOISE_SIGMA = 25.0 / 255.0


def cell_image(size: int = 128) -> np.ndarray:
    """A ``(size, size)`` float32 crop in [0, 1] of scikit-image's bundled cell micrograph."""
    from skimage import data

    cell = data.cell().astype(np.float32)
    cell = (cell - cell.min()) / (cell.max() - cell.min())
    top = (cell.shape[0] - size) // 2
    left = (cell.shape[1] - size) // 2
    if top < 0 or left < 0:
        raise ValueError(f"size={size} is larger than the sample image {cell.shape}")
    return np.ascontiguousarray(cell[top:top + size, left:left + size])


def add_gaussian_noise(image: np.ndarray, sigma: float = NOISE_SIGMA, seed: int = 0) -> np.ndarray:
    """``clip(image + N(0, sigma), 0, 1)``, the paper's denoising protocol, as float32."""
    rng = np.random.default_rng(seed)
    noisy = image + rng.normal(0.0, sigma, image.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def make_noisy_cell(size: int = 128, sigma: float = NOISE_SIGMA, seed: int = 0):
    """Clean and noisy versions of the cell crop: ``(clean, noisy)``."""
    clean = cell_image(size)
    return clean, add_gaussian_noise(clean, sigma, seed)


def sample_noisy_cell():
    """napari sample: the noisy cell crop (256x256) as an image layer."""
    _, noisy = make_noisy_cell(256)
    return [(noisy, {"name": "noisy cell", "colormap": "gray"}, "image")]
