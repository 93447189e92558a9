"""Memory of a fit's history over a long run: does it stay within the count and the budget?

A stand-in fit runs ``--steps`` steps and offers every step to a
:class:`napari_dip.engine.history.History`, as the fit loop would with ``report_every=1``: the
loss falls, the stopping criterion falls then rises (lowest at 40% of the run), and at the end
the rule's best point and the last step are offered with a note. An estimate is a fresh random
float32 image, made only when the history keeps the offer (standing in for the copy of the
fit's estimate to the CPU). Cases: 512x512 estimates kept by count alone (32 checkpoints) and
with a budget, and a 2048x2048 mosaic (a tiled plane's blended estimate) with a 64 MiB budget.

For each case it prints the checkpoints kept at the end, how many estimates were copied, the
largest bytes the history held (after an offer, and during a copy: the kept estimates plus the
new one), the peak of the memory traced by tracemalloc over the run (NumPy's allocations
included) above what was allocated before it, and the mean time of an offer.

    OMP_NUM_THREADS=1 python benchmarks/history_memory.py [--real-fit 1000]

``--real-fit STEPS`` also runs a real fit of a 128x128 image that snapshots every step and
keeps a history within a budget of six estimates, and prints the most the history held.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from napari_dip.engine.history import History

MIB = 2**20
CASES = {
    "512x512, 32 checkpoints, no budget": dict(side=512, max_checkpoints=32, budget_mib=None),
    "512x512, 32 checkpoints, 8 MiB budget": dict(side=512, max_checkpoints=32, budget_mib=8),
    "2048x2048 mosaic, 32 checkpoints, 64 MiB budget": dict(side=2048, max_checkpoints=32,
                                                            budget_mib=64),
}


def run_case(steps: int, side: int, max_checkpoints: int, budget_mib: int | None) -> dict:
    """One long stand-in fit; returns what the history held and what was traced."""
    budget = None if budget_mib is None else budget_mib * MIB
    history = History(max_checkpoints=max_checkpoints, memory_budget_bytes=budget)
    rng = np.random.default_rng(0)
    best_step = int(0.4 * steps)
    held = {"after offer": 0, "during copy": 0, "copies": 0}

    def estimate():
        held["copies"] += 1
        new = rng.random((side, side), dtype=np.float32)
        held["during copy"] = max(held["during copy"], history.nbytes + new.nbytes)
        return new

    def offer(step, note=None):
        criterion = ((step - best_step) / steps) ** 2
        history.offer(step, step * 1e-3, 1.0 / step, criterion, estimate, note=note)
        held["after offer"] = max(held["after offer"], history.nbytes)

    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    for step in range(1, steps):
        offer(step)
    offer(best_step, note="automatic stop")
    offer(steps, note="last")
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] - traced_before
    tracemalloc.stop()
    notes = [(p.iteration, p.note) for p in history.checkpoints if p.note is not None]
    return dict(kept=len(history), copies=held["copies"], held_after=held["after offer"],
                held_during=held["during copy"], traced_peak=traced_peak, budget=budget,
                estimate_bytes=side * side * 4, offer_us=seconds / (steps + 1) * 1e6,
                first=history.checkpoints[0].iteration, notes=notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--real-fit", type=int, default=0, metavar="STEPS",
                        help="also run a real fit of this many steps with a history (0: no)")
    args = parser.parse_args()
    print(f"{args.steps} steps, every step offered\n")
    print("| case | kept | copies | one estimate | budget | held after an offer, max "
          "| held during a copy, max | tracemalloc peak | offer, mean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, settings in CASES.items():
        r = run_case(args.steps, **settings)
        budget = "none" if r["budget"] is None else f"{r['budget'] / MIB:.0f} MiB"
        print(f"| {name} | {r['kept']} | {r['copies']} | {r['estimate_bytes'] / MIB:.0f} MiB "
              f"| {budget} | {r['held_after'] / MIB:.1f} MiB | {r['held_during'] / MIB:.1f} MiB "
              f"| {r['traced_peak'] / MIB:.1f} MiB | {r['offer_us']:.1f} us |")
        assert r["budget"] is None or r["held_during"] <= r["budget"], "over the budget"
        assert r["first"] == 1 and r["notes"] == [(int(0.4 * args.steps), "automatic stop"),
                                                   (args.steps, "last")], r["notes"]
    if args.real_fit:
        real_fit(args.real_fit)


def real_fit(steps: int) -> None:
    """A real fit (preset "quick", a 128x128 float32 image, every step a snapshot) that keeps
    its history within a budget of six estimates: the most the history held, by snapshot."""
    from napari_dip import iter_restore
    from napari_dip._sample_data import make_noisy_cell

    _, noisy = make_noisy_cell(128)
    budget = 6 * noisy.nbytes
    held, kept = 0, 0
    start = time.perf_counter()
    for snapshot in iter_restore(noisy, preset="quick", max_iterations=steps, report_every=1,
                                 history=32, history_budget_mb=budget / MIB):
        held, kept = max(held, snapshot.history.nbytes), len(snapshot.history)
    seconds = time.perf_counter() - start
    print(f"\nreal fit: {steps} steps of a 128x128 image, every step offered: "
          f"kept {kept} checkpoints at the end, held at most {held / 1024:.0f} KiB "
          f"for a budget of {budget / 1024:.0f} KiB ({seconds:.0f} s)")
    assert held <= budget, "over the budget"


if __name__ == "__main__":
    main()
