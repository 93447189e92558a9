"""The README's before/after picture: the demo's noisy cell crop, its restoration and the clean
crop, each labelled with its PSNR.

It restores the image ``napari-dip demo`` restores (the 128x128 cell crop with Gaussian noise of
sigma 25/255, seed 0), with preset "fast" (``napari-dip demo --preset fast`` gives the same), and
writes docs/images/before-after.png. Needs matplotlib (``pip install ".[bench]"``).

    OMP_NUM_THREADS=1 python benchmarks/readme_figure.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import napari_dip
from napari_dip._sample_data import make_noisy_cell
from napari_dip.engine.measures import psnr

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "before-after.png"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean, noisy = make_noisy_cell(args.size, seed=0)
    start = time.perf_counter()
    restored = napari_dip.restore(noisy, preset=args.preset, seed=0)
    seconds = time.perf_counter() - start
    panels = [(noisy, f"noisy input: {psnr(noisy, clean):.2f} dB"),
              (restored, f'preset "{args.preset}": {psnr(restored, clean):.2f} dB'),
              (clean, "clean (for reference)")]
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, (image, title) in zip(axes, panels):
        ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({seconds:.1f} s to restore)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
