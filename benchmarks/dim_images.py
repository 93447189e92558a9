"""Is a dim image restored as well as a bright one?

The noisy cell crop (sigma 25 on [0, 1]) is scaled by a brightness factor s, as float32 in
[0, s] and as uint8 in [0, 255 s], restored with a preset, and the result divided by s is
compared with the clean crop: the same PSNR at every s means the intensity scaling hides the
brightness from the fit, as it should.

    python benchmarks/dim_images.py --preset fast --size 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import napari_dip
from napari_dip._sample_data import make_noisy_cell


def psnr(estimate: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((estimate - clean) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scales", default="1,0.5,0.25,0.1,0.02")
    parser.add_argument("--dtypes", default="float32,uint8")
    args = parser.parse_args()
    clean, noisy = make_noisy_cell(args.size)
    print(f"noisy cell {args.size}x{args.size}, preset {args.preset}; input PSNR "
          f"{psnr(noisy, clean):.2f} dB")
    print("| dtype | brightness | intensities | PSNR of the result | iterations | seconds |")
    print("|---|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        for scale in (float(s) for s in args.scales.split(",")):
            top = 255.0 * scale if dtype == "uint8" else scale
            image = noisy * top
            if dtype == "uint8":
                image = np.rint(image)
            image = image.astype(dtype)
            start, last = time.perf_counter(), None
            for last in napari_dip.iter_restore(image, preset=args.preset, seed=0):
                pass
            result = last.estimate.astype(np.float64) / top
            print(f"| {dtype} | {scale:g} | 0 to {image.max():g} | {psnr(result, clean):.2f} dB | "
                  f"{last.iteration} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
