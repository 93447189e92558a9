"""The ``napari-dip`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    from skimage.io import imsave

    from . import iter_restore
    from ._sample_data import make_noisy_cell
    from .io import atomic_write
    from .operators import psnr

    clean, noisy = make_noisy_cell(args.size, seed=args.seed)
    print(f"napari-dip demo: denoising a {args.size}x{args.size} crop of scikit-image's cell "
          f"image with Gaussian noise (sigma 25/255), preset {args.preset!r}")
    start = time.perf_counter()
    last = None
    for last in iter_restore(noisy, preset=args.preset, seed=args.seed, device=args.device,
                             max_iterations=args.max_iterations):
        print(f"  iteration {last.iteration:5d}/{last.max_iterations}  loss {last.loss:.5f}  "
              f"PSNR {psnr(last.estimate, clean):6.2f} dB", flush=True)
    seconds = time.perf_counter() - start
    before, after = psnr(noisy, clean), psnr(last.estimate, clean)
    print(f"PSNR input : {before:.2f} dB")
    print(f"PSNR result: {after:.2f} dB  ({after - before:+.2f} dB)")
    print(f"time       : {seconds:.1f} s for {last.iteration} iterations")
    print(f"device     : {last.device}")
    gap = np.ones((args.size, 4), dtype=np.float32)
    panel = np.concatenate([noisy, gap, last.estimate, gap, clean], axis=1)
    png = (np.clip(panel, 0, 1) * 255).round().astype(np.uint8)
    atomic_write(args.out, lambda tmp: imsave(tmp, png, check_contrast=False))
    print(f"wrote {args.out} (noisy | restored | clean)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS
    from .device import DEVICE_CHOICES

    parser = argparse.ArgumentParser(
        prog="napari-dip",
        description="Deep Image Prior restoration: denoising, inpainting and super-resolution.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="restore a bundled sample image and report PSNR, time and device",
        description="Denoise a crop of scikit-image's bundled cell image (synthetic Gaussian "
                    "noise, no download), print the PSNR of input and result, the time and the "
                    "device, and write a before/after PNG.")
    demo.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                      help="settings preset (default: quick)")
    demo.add_argument("--size", type=int, default=128, help="crop side in pixels (default: 128)")
    demo.add_argument("--max-iterations", type=int, default=None,
                      help="override the preset's number of iterations")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--device", default=None, choices=DEVICE_CHOICES,
                      help="compute device (default: best available)")
    demo.add_argument("--out", type=Path, default=Path("napari-dip-demo.png"),
                      help="before/after PNG to write (default: napari-dip-demo.png)")
    demo.set_defaults(run=_demo)
    return parser


def _version() -> str:
    from . import __version__

    return f"napari-dip {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"napari-dip: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
