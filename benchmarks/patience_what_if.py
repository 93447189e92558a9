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
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stopping import RESULTS, stops_here, where_it_stops  # noqa: E402

RULES = {
    "the preset's (200 or 300)": None,
    "150": lambda best: 150,
    "100": lambda best: 100,
    "max(100, 0.15 x best)": lambda best: max(100, 0.15 * best),
    "max(100, 0.25 x best)": lambda best: max(100, 0.25 * best),
    "max(150, 0.2 x best)": lambda best: max(150, 0.2 * best),
}
"""Each rule: the iterations to wait after the lowest criterion so far, given where it was
(None: the run's own patience)."""


def stored_runs() -> list[tuple[str, int, list[dict]]]:
    runs = []
    for path in sorted(RESULTS.glob("stopping_*holdout*.json")):
        record = json.loads(path.read_text())
        runs.append((path.stem, record["patience"], record["curve"]))
    return runs


def main() -> int:
    runs = stored_runs()
    print("| wait after the lowest criterion (iterations) | runs | mean dB lost | most dB lost "
          "| runs losing > 0.1 dB | iterations run (mean ratio) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rule in RULES.items():
        lost, ratios = [], []
        for _, patience, curve in runs:
            if not any(stops_here(point, patience) for point in curve):
                continue  # the preset's own rule never stopped this stored run
            base = where_it_stops(curve, patience)
            tried = where_it_stops(curve, rule or patience)
            lost.append(base["stop_psnr"] - tried["stop_psnr"])
            ratios.append(tried["stop_iteration"] / base["stop_iteration"])
        print(f"| {name} | {len(lost)} | {statistics.mean(lost):.3f} | {max(lost):.2f} | "
              f"{sum(x > 0.1 for x in lost)} | {statistics.mean(ratios):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
