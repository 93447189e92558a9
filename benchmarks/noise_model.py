"""How well does the noise model estimated from one image match the real noise?

For each FMD confocal image (../shared/data/microscopy/fmd_confocal: one raw noisy frame and
the 50-frame average of the same field, read only), the noise standard deviation at three
signal levels is given three ways:

- measured: the robust standard deviation of (noisy - average) over the pixels whose average
  lies within 1 of the level: the truth, model-free (the average still holds 1/50 of a frame's
  noise, and whatever else differs between frame and average counts as noise here);
- reference: the Poisson-Gaussian model ``variance = gain * signal + read_variance`` fitted to
  the pair (``fit_noise_model`` on the average and the residual);
- estimated: the model napari-dip estimates from the noisy frame alone
  (``estimate_noise_model``), with the relative error against the measured value.

These images are clipped at their dark end (a spike at value 3), which hides part of the noise
of dim pixels; both fits therefore use only levels at which at most 2 % of the noisy pixels sit
on the floor ("unclipped from"), and the three levels are the lowest such level, the median
and the 99th percentile of the average's unclipped pixels. Values are in the images' own units
(0-255). The last columns are the time of the estimate and the data term ``choose_likelihood``
picks from it.

    OMP_NUM_THREADS=1 python benchmarks/noise_model.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_dip.engine.noise_model import (_robust_variance, choose_likelihood,
                                           estimate_noise_model, fit_noise_model)

ROOT = Path(__file__).resolve().parents[1]
# NAPARI_DIP_DATA points elsewhere, e.g. at a copy of the data taken to another machine
DATA = Path(os.environ.get("NAPARI_DIP_DATA", ROOT.parent / "shared" / "data"))
FOLDER = DATA / "microscopy" / "fmd_confocal"
IMAGES = ("BPAE_B", "BPAE_G", "BPAE_R", "fish", "mice")


def unclipped_pixels(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Pixels whose average lies at a level where at most 2 % of the noisy frame's pixels sit
    on the clipped floor (the lowest value) or at the top of the range."""
    clipped = (noisy <= np.bincount(noisy.ravel()).argmax()) | (noisy == 255)
    levels = np.round(clean).astype(int)
    fraction = np.bincount(levels.ravel(), clipped.ravel()) / np.maximum(
        np.bincount(levels.ravel()), 1)
    return fraction[levels] <= 0.02


def compare(name: str) -> tuple[str, tuple[str, ...]]:
    """One table row for image ``name``, and the estimate's notes."""
    noisy = tifffile.imread(FOLDER / "Confocal_gaussianpoisson" / f"{name}.tif")
    clean = tifffile.imread(FOLDER / "Confocal" / f"{name}.tif").astype(np.float64)
    residual = noisy - clean
    kept = unclipped_pixels(noisy, clean)
    reference = fit_noise_model(clean[kept], residual[kept])
    started = time.perf_counter()
    try:
        estimate = estimate_noise_model(noisy)
    except ValueError as error:
        return f"| {name} | refused: {error} |", ()
    seconds = time.perf_counter() - started
    cells = [name, f"{clean[kept].min():.0f}"]
    for level in (clean[kept].min(), *np.percentile(clean[kept], [50, 99])):
        near = np.abs(clean - level) <= 1
        measured = np.sqrt(_robust_variance(residual[near]))
        estimated = float(estimate.std(level))
        cells.append(f"{level:.0f}: {measured:.2f} / {float(reference.std(level)):.2f} / "
                     f"{estimated:.2f} ({100 * (estimated / measured - 1):+.0f} %)")
    cells += [f"{estimate.gain:.2f}, {estimate.read_variance:.1f}", f"{seconds:.2f}",
              choose_likelihood(estimate, noisy)]
    return "| " + " | ".join(cells) + " |", estimate.notes


def main() -> int:
    if not FOLDER.is_dir():
        print(f"evaluation data not found at {FOLDER}", file=sys.stderr)
        return 1
    print("| image | unclipped from | lowest level: std measured / reference / estimated | "
          "median | 99th percentile | estimated gain, read variance | seconds | "
          "likelihood chosen |")
    print("|---|---|---|---|---|---|---|---|")
    notes = {}
    for name in IMAGES:
        row, notes[name] = compare(name)
        print(row)
    print("\nNotes of the estimates:\n")
    for name, lines in notes.items():
        for line in lines:
            print(f"- {name}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
