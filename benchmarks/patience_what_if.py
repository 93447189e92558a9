"""How many iterations a shorter wait for the held-out criterion would save, and at what cost.

The holdout rule stops once ``patience`` iterations pass without a new lowest error on the
held-out pixels, and returns the moving-average estimate at that lowest point. Every stored
holdout run of ``benchmarks/stopping.py`` (``benchmarks/results/stopping_*holdout*.json``) kept
its criterion and its estimate's PSNR every 10 iterations well past where it stopped, so any
other wait can be replayed on it without running anything: where it would stop, and the PSNR
of what it would return.

For each rule the table gives the mean and largest PSNR lost against the run's own patience
(200 for preset fast, 300 for auto), how many runs lost more than 0.1 dB, and the mean ratio of
iterations run. Only runs that the preset's rule stopped inside their stored curve count.

    python benchmarks/patience_what_if.py
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

RULES = {
    "the preset's (200 or 300)": None,
    "150": lambda best: 150,
    "100": lambda best: 100,
    "max(100, 0.15 x best)": lambda best: max(100, 0.15 * best),
    "max(100, 0.25 x best)": lambda best: max(100, 0.25 * best),
    "max(150, 0.2 x best)": lambda best: max(150, 0.2 * best),
}
"""Each rule: the iterations to wait after the lowest criterion so far, given where it was."""


def replay(curve: list[dict], wait) -> tuple[int, float, bool]:
    """(iteration stopped at, PSNR returned, whether the rule stopped inside the curve)."""
    best, best_iteration, returned = math.inf, 0, math.nan
    for point in curve:
        if point["criterion"] < best:
            best, best_iteration, returned = (point["criterion"], point["iteration"],
                                              point["estimate_psnr"])
        if point["iteration"] - best_iteration >= wait(best_iteration):
            return point["iteration"], returned, True
    return curve[-1]["iteration"], returned, False


def stored_runs() -> list[tuple[str, int, list[dict]]]:
    runs = []
    for path in sorted(RESULTS.glob("stopping_*holdout*.json")):
        record = json.loads(path.read_text())
        curve = [p for p in record["curve"] if not math.isnan(p["criterion"])]
        runs.append((path.stem, record["patience"], curve))
    return runs


def main() -> int:
    runs = stored_runs()
    print("| wait after the lowest criterion (iterations) | runs | mean dB lost | most dB lost "
          "| runs losing > 0.1 dB | iterations run (mean ratio) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rule in RULES.items():
        lost, ratios = [], []
        for _, patience, curve in runs:
            base = replay(curve, lambda best, patience=patience: patience)
            if not base[2]:
                continue
            tried = replay(curve, rule or (lambda best, patience=patience: patience))
            lost.append(base[1] - tried[1])
            ratios.append(tried[0] / base[0])
        print(f"| {name} | {len(lost)} | {statistics.mean(lost):.3f} | {max(lost):.2f} | "
              f"{sum(x > 0.1 for x in lost)} | {statistics.mean(ratios):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
