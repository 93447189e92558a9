"""How the first slices of a warm-started stack get on, snapshot by snapshot: the PSNR of each
slice's estimate along its schedule, on the MRI stack of benchmarks/stack_speed.py.

With ``--fresh-optimiser`` each warm-started slice starts a new Adam optimiser, as the stack
did before it carried the previous slice's optimiser state on (the weights still carry on);
the two traces show what that changed. Nothing is written: the numbers are quoted in
docs/log.md ("Stacks").

    OMP_NUM_THREADS=1 python benchmarks/warm_start_trace.py --crop 128 --slices 3
    OMP_NUM_THREADS=1 python benchmarks/warm_start_trace.py --crop 128 --slices 3 --fresh-optimiser
"""

from __future__ import annotations

import argparse

import napari_dip
import napari_dip.api
from napari_dip.engine.measures import psnr
from reproduce_paper import missing_data, parse_setting
from stack_speed import noisy_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--crop", type=int, default=128, help="centre crop (0: whole slices)")
    parser.add_argument("--slices", type=int, default=3, help="trace the first N slices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh-optimiser", action="store_true",
                        help="start each slice's fit with a new Adam (the weights carry on)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a setting of the preset (repeatable)")
    args = parser.parse_args()
    if missing_data():
        return
    if args.fresh_optimiser:
        carrying = napari_dip.api.fit
        napari_dip.api.fit = lambda *a, optimizer_state=None, **k: carrying(*a, **k)
    settings = dict(parse_setting(text) for text in args.set)
    noisy, clean = noisy_stack(args.crop, args.seed)
    print("slice iteration estimate_psnr output_psnr")
    # the whole stack, so that its intensity scaling is the one stack_speed.py's runs use
    for step in napari_dip.iter_restore_stack(noisy, preset=args.preset, seed=args.seed,
                                              device="cpu", **settings):
        k, snapshot = step.slice_number, step.snapshot
        if k >= args.slices:
            break
        if k or snapshot.done:  # slice 0 is fitted from scratch: only its end matters here
            print(k, snapshot.iteration, f"{psnr(snapshot.estimate, clean[k]):.2f}",
                  f"{psnr(snapshot.image, clean[k]):.2f}", "(done)" if snapshot.done else "",
                  flush=True)


if __name__ == "__main__":
    main()
