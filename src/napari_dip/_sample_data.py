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


# ----------------------------------------------------------------------------- fluorescence-like

def nuclei_image(shape: tuple[int, ...] = (256, 256), seed: int = 0) -> np.ndarray:
    """Fluorescence-like nuclei in [0, 1]: scikit-image's random blobs, blurred like an optical
    system would, on a dark background with a little autofluorescence. ``shape`` is ``(M, N)``
    or ``(Z, M, N)``; 3D blobs are blurred more along Z, as a widefield microscope does."""
    from scipy import ndimage
    from skimage import data

    side = max(shape)
    blobs = data.binary_blobs(side, blob_size_fraction=min(24.0 / side, 0.25),
                              n_dim=len(shape), volume_fraction=0.25,
                              rng=seed).astype(np.float32)
    # the central part of the cube, so that a thin stack still cuts through nuclei
    blobs = blobs[tuple(slice((side - n) // 2, (side - n) // 2 + n) for n in shape)]
    sigma = (2.0,) * len(shape) if len(shape) == 2 else (3.0, 1.5, 1.5)
    signal = ndimage.gaussian_filter(blobs, sigma)
    signal = 0.08 + 0.8 * signal / max(float(signal.max()), 1e-6)
    return np.ascontiguousarray(signal, dtype=np.float32)


def make_noisy_nuclei(shape: tuple[int, ...] = (256, 256), sigma: float = NOISE_SIGMA,
                      seed: int = 0):
    """Clean and noisy fluorescence-like nuclei (2D or a Z stack): ``(clean, noisy)``."""
    clean = nuclei_image(shape, seed)
    return clean, add_gaussian_noise(clean, sigma, seed + 1)


def make_damaged_cell(size: int = 256):
    """The cell crop with scratches and a blotch painted over it: ``(clean, damaged, mask)``.

    ``mask`` is a uint8 label image, 1 where the picture is damaged (the pixels to inpaint).
    """
    from scipy import ndimage
    from skimage.draw import disk, line_aa

    clean = cell_image(size)
    mask = np.zeros(clean.shape, dtype=np.uint8)
    s = size / 256.0
    for start, end in [((0.10, 0.05), (0.90, 0.70)), ((0.85, 0.10), (0.20, 0.95)),
                       ((0.05, 0.55), (0.60, 0.95))]:
        rows, cols, _ = line_aa(*(int(v * (size - 1)) for v in start + end))
        mask[rows, cols] = 1
    mask = ndimage.binary_dilation(mask, iterations=max(1, round(1.5 * s))).astype(np.uint8)
    rows, cols = disk((0.3 * size, 0.3 * size), 0.06 * size, shape=clean.shape)
    mask[rows, cols] = 1
    damaged = clean.copy()
    damaged[mask > 0] = 1.0
    return clean, damaged, mask


# ----------------------------------------------------------------------------- napari samples

_STACK_GEOMETRY = {"scale": (4.0, 1.0, 1.0), "axis_labels": ("z", "y", "x")}
"""Z steps four times the pixel size, in pixel units like every other sample: a physical unit
on one sample only would make napari warn "Inconsistent units across layers" whenever it is
opened beside another sample, and again on every layer a run adds."""


def sample_noisy_nuclei():
    """napari sample: noisy fluorescence-like nuclei (256x256)."""
    _, noisy = make_noisy_nuclei((256, 256))
    return [(noisy, {"name": "noisy nuclei", "colormap": "green"}, "image")]


def sample_noisy_nuclei_stack():
    """napari sample: a noisy fluorescence-like Z stack (16x128x128, Z steps 4 pixels)."""
    _, noisy = make_noisy_nuclei((16, 128, 128))
    return [(noisy, {"name": "noisy nuclei stack", "colormap": "green", **_STACK_GEOMETRY},
             "image")]


def sample_damaged_cell():
    """napari sample: the cell with painted-over damage, and a Labels layer marking it."""
    _, damaged, mask = make_damaged_cell(256)
    return [(damaged, {"name": "damaged cell", "colormap": "gray"}, "image"),
            (mask, {"name": "damage mask", "opacity": 0.4}, "labels")]
