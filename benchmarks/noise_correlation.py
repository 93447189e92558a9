"""How correlated is the real noise of the FMD confocal images between neighbouring pixels?

Pixel-wise hold-out validation assumes that a held-out pixel's noise cannot be predicted from
its neighbours. For each FMD confocal image this measures the correlation coefficient of the
residual (one raw noisy frame minus the 50-frame average, the ground truth) with itself shifted
by one pixel along a row and along a column, on the whole 512x512 image, and writes a table to
docs/benchmarks/stopping.md. The residual also holds whatever differs between the average and
the frame besides noise, so the figures are an upper bound on the noise's own correlation.

Three more columns ask whether the average is the frame's noise-free value at all, which the
PSNR against it assumes: the residual's mean (a frame brighter than the average of 50, as
after bleaching, gives a positive mean), its correlation with the average (zero-mean noise,
even signal-dependent noise, gives none), and its low-frequency excess: the variance of the
residual smoothed with a Gaussian of 4 pixels, divided by what independent noise of the same
variance would give after the same smoothing (1 for independent noise; larger when the
residual holds structure such as drift or a changed sample).

    python benchmarks/noise_correlation.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import DATA, PAGES, command_line, missing_data, write_section  # noqa: E402

START, END = "<!-- noise_correlation:start -->", "<!-- noise_correlation:end -->"


def neighbour_correlation(residual: np.ndarray, axis: int) -> float:
    """Correlation coefficient of ``residual`` with itself shifted by one pixel along ``axis``."""
    residual = residual - residual.mean()
    a = np.delete(residual, -1, axis=axis)
    b = np.delete(residual, 0, axis=axis)
    return float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


def low_frequency_excess(residual: np.ndarray, sigma: float = 4.0) -> float:
    """Variance of the Gaussian-smoothed residual over what independent noise would give."""
    from scipy.ndimage import gaussian_filter

    residual = residual - residual.mean()
    impulse = np.zeros((8 * int(sigma) + 1,) * 2)
    impulse[impulse.shape[0] // 2, impulse.shape[1] // 2] = 1.0
    gain = float((gaussian_filter(impulse, sigma) ** 2).sum())  # variance kept for white noise
    return float(gaussian_filter(residual, sigma).var() / (residual.var() * gain))


def main() -> int:
    if missing_data():
        return 1
    folder = DATA / "microscopy" / "fmd_confocal"
    lines = ["", "| image | residual std (0-255) | along a row (horizontal neighbours) | "
             "along a column (vertical neighbours) | residual mean (0-255) | correlation with "
             "the average | low-frequency excess |", "|---|---|---|---|---|---|---|"]
    for path in sorted((folder / "Confocal").glob("*.tif")):
        clean = tifffile.imread(path).astype(np.float64)
        noisy = tifffile.imread(folder / "Confocal_gaussianpoisson" / path.name).astype(np.float64)
        residual = noisy - clean
        row, column = neighbour_correlation(residual, 1), neighbour_correlation(residual, 0)
        signal = np.corrcoef(residual.ravel(), clean.ravel())[0, 1]
        lines.append(f"| {path.stem} | {residual.std():.2f} | {row:.3f} | {column:.3f} | "
                     f"{residual.mean():+.2f} | {signal:.3f} | "
                     f"{low_frequency_excess(residual):.1f} |")
        print(lines[-1])
    lines += ["", f"`{command_line('noise_correlation.py')}`"]
    write_section(START, END, "Noise correlation of the FMD images", lines,
                  page=PAGES / "stopping.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
