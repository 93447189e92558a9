"""Peak memory of restoring a large tiled plane alone and as a stack, with and without warm start.

Each case runs in a child process of its own: a short warm-up fit, then the measured run on a
random uint16 plane (``--side`` pixels square, preset auto, which tiles it, ``--iterations``
steps per tile: memory, not quality, is measured). The figure is the rise of the process's peak
resident memory (ru_maxrss) over the warm-up's.

    OMP_NUM_THREADS=1 python benchmarks/stack_memory.py --side 2048 --iterations 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

CASES = {
    "one plane, restore()": dict(slices=0),
    "stack of 1 slice": dict(slices=1),
    "stack of 2 slices, warm start": dict(slices=2),
    "stack of 2 slices, warm_start_fraction=0": dict(slices=2, warm_start_fraction=0.0),
}


def child(side: int, iterations: int, slices: int, **settings) -> None:
    import numpy as np

    from napari_dip import restore, restore_stack

    stack = np.random.default_rng(0).integers(100, 4000, (max(slices, 1), side, side),
                                              dtype=np.uint16)
    restore(stack[0, :600, :600], device="cpu", max_iterations=2)  # imports, allocator, threads
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if slices:
        restore_stack(stack, device="cpu", max_iterations=iterations, **settings)
    else:
        restore(stack[0], device="cpu", max_iterations=iterations, **settings)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rise_mib": round((after - before) / 1024, 1)}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.side, args.iterations, **json.loads(args.child))
        return 0
    print(f"| {args.side}x{args.side} uint16, preset auto, {args.iterations} iterations per tile "
          f"| peak memory rise |\n|---|---|")
    for name, case in CASES.items():
        out = subprocess.run([sys.executable, __file__, "--side", str(args.side), "--iterations",
                              str(args.iterations), "--child", json.dumps(case)],
                             capture_output=True, text=True, check=True).stdout
        rise = json.loads(out.strip().splitlines()[-1])["peak_rise_mib"]
        print(f"| {name} | {rise:.0f} MiB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
