"""What a snapshot of a large tiled plane costs beyond the fit: blending and conversion.

Every snapshot of a tiled plane blends the current tile's images into the mosaic and converts
them to the input's dtype and intensities (and the stack runner stores the estimate in its
result). To measure that alone, the fit is replaced by a stand-in that yields random
tile-sized tensors at once (three distinct ones: output, average, estimate, as the stopping
rules give), so that everything else runs as in a real run: ``iter_restore`` or
``iter_restore_stack`` on a random ``--side`` x ``--side`` plane (uint16 by default), preset
auto (64 tiles at 2048x2048), ``--iterations`` snapshots per tile (``report_every=1``); stacks
without warm start, as the stand-in has no network to continue.

Each case runs in a child process of its own, twice: once timed (the median and the mean time
of one snapshot, and the rise of the process's peak resident memory, ru_maxrss, over a warm-up),
then under tracemalloc, which follows NumPy's allocations: the median and the largest rise of
the traced peak during one snapshot over what was allocated before it.

    OMP_NUM_THREADS=1 python benchmarks/snapshot_cost.py --side 2048 --iterations 4
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

CASES = {
    "one plane, iter_restore()": dict(slices=0),
    "stack of 1 slice": dict(slices=1, warm_start_fraction=0.0),
    "stack of 2 slices, stack_passes=2, backward pass": dict(slices=2, stack_passes=2,
                                                             warm_start_fraction=0.0),
}


def stand_in_fit(observation, config, *, seed=0, **_):
    """Yields what :func:`napari_dip.engine.fit.fit` yields, with random images and no network."""
    import torch

    from napari_dip.engine.fit import FitStep

    rng = torch.Generator().manual_seed(seed)
    shape = (observation.target.shape[0], observation.target.shape[1], *observation.size)
    output, average, estimate = (torch.rand(shape, generator=rng) for _ in range(3))
    for iteration in range(1, config.max_iterations + 1):
        last = iteration == config.max_iterations
        if iteration % config.report_every == 0 or last:
            yield FitStep(iteration=iteration, loss=0.0, output=output, average=average,
                          estimate=estimate, uncertainty=None, criterion=None,
                          best_iteration=None, stopped=False, elapsed=0.0, backtracks=0,
                          done=last, network=None, code=None, optimizer=None)


def run(side: int, iterations: int, dtype: str, slices: int, **settings):
    """The snapshots of one case, as ``(measured, snapshot)`` pairs: ``measured`` is false for
    the snapshots left out of the figures (the forward pass of a two-pass stack)."""
    import numpy as np

    from napari_dip import iter_restore, iter_restore_stack

    rng = np.random.default_rng(0)
    shape = (max(slices, 1), side, side)
    if np.dtype(dtype).kind == "f":
        stack = rng.random(shape).astype(dtype)
    else:
        stack = rng.integers(100, 4000, shape).astype(dtype)
    options = dict(device="cpu", max_iterations=iterations, report_every=1, **settings)
    if not slices:
        return ((True, s) for s in iter_restore(stack[0], **options))
    two_passes = settings.get("stack_passes") == 2
    return ((not two_passes or s.pass_number == 1, s)
            for s in iter_restore_stack(stack, **options))


def measure(snapshots, traced: bool) -> list[float]:
    """Per measured snapshot: seconds, or the rise of the traced peak in bytes."""
    figures = []
    while True:
        if traced:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        try:
            measured, _ = next(snapshots)
        except StopIteration:
            return figures
        if measured:
            figures.append(tracemalloc.get_traced_memory()[1] - before if traced
                           else time.perf_counter() - start)


def child(side: int, iterations: int, dtype: str, case: dict) -> None:
    import napari_dip.api

    napari_dip.api.fit = stand_in_fit
    measure(run(600, 2, dtype, **case), traced=False)  # imports, allocator
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = measure(run(side, iterations, dtype, **case), traced=False)
    rss_rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    tracemalloc.start()
    rises = measure(run(side, iterations, dtype, **case), traced=True)
    tracemalloc.stop()
    print(json.dumps({"snapshots": len(seconds),
                      "median_ms": 1000 * statistics.median(seconds),
                      "mean_ms": 1000 * statistics.fmean(seconds),
                      "rss_rise_mib": rss_rise,
                      "traced_median_mib": statistics.median(rises) / 2 ** 20,
                      "traced_max_mib": max(rises) / 2 ** 20}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=4, help="snapshots per tile")
    parser.add_argument("--dtype", default="uint16")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.side, args.iterations, args.dtype, json.loads(args.child))
        return 0
    print(f"| {args.side}x{args.side} {args.dtype}, preset auto, {args.iterations} snapshots "
          f"per tile | snapshots | median (mean) per snapshot | traced peak rise per snapshot, "
          f"median (max) | peak RSS rise of the run |\n|---|---|---|---|---|")
    for name, case in CASES.items():
        out = subprocess.run([sys.executable, __file__, "--side", str(args.side),
                              "--iterations", str(args.iterations), "--dtype", args.dtype,
                              "--child", json.dumps(case)],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {name} | {r['snapshots']} | {r['median_ms']:.1f} ({r['mean_ms']:.1f}) ms | "
              f"{r['traced_median_mib']:.0f} ({r['traced_max_mib']:.0f}) MiB | "
              f"{r['rss_rise_mib']:.0f} MiB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
