"""Bayesian DIP on a stack: do the warm-started slices sample a posterior as good as a fit alone?

The bundled noisy nuclei stack (fluorescence-like, made from scikit-image's blobs) is cropped
to a few slices and restored with preset "bayesian": once as a stack (slice 1 gets the full
schedule, later slices continue from the slice before on the warm-start schedule, with the
burn-in shrunk to the same share) and once slice by slice, each fitted alone with the full
schedule. Prints, per slice, the PSNR of the posterior mean against the clean slice (used only
to measure), the mean of the uncertainty map, and the iterations run.

    python benchmarks/bayesian_stack.py --slices 3 --size 64
"""

from __future__ import annotations

import argparse
import time

import napari_dip
from napari_dip._sample_data import make_noisy_nuclei
from napari_dip.engine.measures import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-start-fraction", type=float, default=None,
                        help="the stack's warm_start_fraction (default: the preset's)")
    parser.add_argument("--stack-only", action="store_true",
                        help="skip fitting each slice alone")
    args = parser.parse_args()
    stack_settings = {} if args.warm_start_fraction is None else {
        "warm_start_fraction": args.warm_start_fraction}
    clean, noisy = make_noisy_nuclei((16, 128, 128))  # the napari sample's stack
    top = (noisy.shape[1] - args.size) // 2
    left = (noisy.shape[2] - args.size) // 2
    crop = (slice(noisy.shape[0] // 2, noisy.shape[0] // 2 + args.slices),
            slice(top, top + args.size), slice(left, left + args.size))
    clean, noisy = clean[crop], noisy[crop]
    rng = float(clean.max() - clean.min())

    start, stack_ends = time.process_time(), {}
    for step in napari_dip.iter_restore_stack(noisy, preset="bayesian", seed=args.seed,
                                              **stack_settings):
        if step.snapshot.done:
            stack_ends[step.index[0]] = (step.snapshot.estimate, step.snapshot.uncertainty,
                                         step.snapshot.iteration)
    stack_seconds = time.process_time() - start
    print(f"noisy nuclei stack, slices {crop[0].start}-{crop[0].stop - 1}, "
          f"{args.size}x{args.size}, preset bayesian {stack_settings}, seed {args.seed}")
    print("| slice | input PSNR | in the stack: posterior mean, mean uncertainty, iterations | "
          "fitted alone: posterior mean, mean uncertainty, iterations |")
    print("|---|---|---|---|")
    alone_seconds = 0.0
    for k in range(args.slices):
        runs = [stack_ends[k]]
        if not args.stack_only:
            start = time.process_time()
            last = None
            for last in napari_dip.iter_restore(noisy[k], preset="bayesian", seed=args.seed):
                pass
            alone_seconds += time.process_time() - start
            runs.append((last.estimate, last.uncertainty, last.iteration))
        cells = []
        for estimate, uncertainty, its in runs:
            spread = "none" if uncertainty is None else f"{float(uncertainty.mean()):.4f}"
            cells.append(f"{psnr(estimate, clean[k], data_range=rng):.2f} dB, {spread}, {its}")
        print(f"| {k} | {psnr(noisy[k], clean[k], data_range=rng):.2f} dB | "
              f"{' | '.join(cells)} |", flush=True)
    print(f"CPU time: the stack {stack_seconds:.0f} s, the slices alone {alone_seconds:.0f} s")


if __name__ == "__main__":
    main()
