"""Offline sample data, made from images that scikit-image ships (nothing is downloaded).

Each ``make_*`` function returns clean and degraded arrays with a fixed seed, so the demo, the
tests and the napari sample menu all see the same data.
"""

from __future__ import annotations

import numpy as np

NOISE_SIGMA = 25.0 / 255.0


CELL_CENTRE = (370, 420)  # row, column of the cell in scikit-image's cell image


def cell_image(size: int = 128) -> np.ndarray:
    """A ``(size, size)`` float32 crop in [0, 1] of scikit-image's bundled cell micrograph,
    centred on the cell (shifted inwards where the image ends)."""
    from skimage import data

    cell = data.cell().astype(np.float32)
    cell = (cell - cell.min()) / (cell.max() - cell.min())
    if not 0 < size <= min(cell.shape):
        raise ValueError(f"size={size} must be between 1 and {min(cell.shape)}")
    top, left = (int(np.clip(c - size // 2, 0, n - size))
                 for c, n in zip(CELL_CENTRE, cell.shape))
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
