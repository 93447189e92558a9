"""Which data term ``data_term="auto"`` picks on the evaluation images, without fitting.

The noise model is estimated from each noisy image as the benchmarks make it (CBM3D9 colour and
Set12 greyscale images with Gaussian noise of sigma 25/255 clipped to [0, 1], seed 0 in file
order; the FMD confocal raw frames), whole and as centre crops, and the term it picks is counted
per set and size (``docs/benchmarks/noise-model.md``).

    python benchmarks/data_term_choice.py
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import DATA, center_crop, load, with_gaussian_noise  # noqa: E402
from stopping import fmd_pairs  # noqa: E402

from napari_dip.engine.noise_model import auto_data_term  # noqa: E402


def chosen(image: np.ndarray) -> str:
    hwc = image if image.ndim == 3 else image[..., None]
    return auto_data_term(np.asarray(hwc, dtype=np.float32))[0]["data_term"]


def images(name: str):
    """(file stem, noisy image) of one set, as the benchmarks add noise to it."""
    rng = np.random.default_rng(0)
    if name == "FMD":
        yield from ((stem, noisy) for stem, noisy, _ in fmd_pairs(0, None))
        return
    folder, grey = {"CBM3D9": ("CBM3D9_color", False), "Set12": ("Set12", True)}[name]
    for path in sorted((DATA / folder).glob("*.png")):
        yield path.stem, with_gaussian_noise(load(path, grey=grey), rng)


def main() -> int:
    if not DATA.is_dir():
        print(f"skipped: no evaluation data at {DATA}", file=sys.stderr)
        return 0
    print("| set | size | terms chosen | images not Gaussian |")
    print("|---|---|---|---|")
    for name in ("CBM3D9", "Set12", "FMD"):
        for crop in (0, 256, 128):
            picks = {stem: chosen(center_crop(image, crop) if crop else image)
                     for stem, image in images(name)}
            counts = Counter(picks.values())
            others = ", ".join(f"{s} ({t})" for s, t in picks.items() if t != "gaussian")
            size = f"{crop}x{crop}" if crop else "whole"
            print(f"| {name} | {size} | {dict(sorted(counts.items()))} | {others or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
