"""How long ``napari-dip demo`` takes, as a whole process, with ``--threads auto``, 2 and 1,
on the machine as it is and with one more process keeping a core busy.

Each setting runs ``--repeats`` times as its own ``napari-dip demo`` process (start-up and
torch import included), the settings taking turns so that a change in the machine's load falls
on each alike. The busy core is ``python -c 'while True: pass'``, started before and ended
after its condition's runs. Prints a Markdown table (median, min and max wall seconds, the
thread count the runs reported) for docs/benchmarks/speed.md; nothing is written.

    python benchmarks/demo_threads.py --repeats 3 -- --max-iterations 100
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = ("auto", "2", "1")


def run_demo(threads: str, extra: list[str], out: Path) -> tuple[float, str]:
    """Wall seconds of one demo process and the thread count it reported."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "napari_dip.cli", "demo", "--threads", threads,
                             "--out", str(out), *extra], capture_output=True, text=True,
                            env=environment, check=True)
    seconds = time.perf_counter() - start
    found = re.search(r"cpu \((\d+) threads?\)", result.stdout)
    return seconds, found.group(1) if found else "?"


def measure(settings: list[str], repeats: int, extra: list[str], out: Path,
            ) -> dict[str, list[tuple[float, str]]]:
    runs: dict[str, list[tuple[float, str]]] = {setting: [] for setting in settings}
    for _ in range(repeats):
        for setting in settings:
            runs[setting].append(run_demo(setting, extra, out))
            print(f"--threads {setting}: {runs[setting][-1][0]:.1f} s, "
                  f"{runs[setting][-1][1]} thread(s)", file=sys.stderr, flush=True)
    return runs


def rows(condition: str, runs: dict[str, list[tuple[float, str]]], load: float) -> list[str]:
    lines = []
    for setting, results in runs.items():
        seconds = [s for s, _ in results]
        counts = ", ".join(sorted({c for _, c in results}))
        lines.append(f"| {condition} (load {load:.1f}) | `--threads {setting}` | "
                     f"{statistics.median(seconds):.1f} | {min(seconds):.1f} to "
                     f"{max(seconds):.1f} | {counts} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="the --threads values to run, in turn")
    parser.add_argument("--conditions", default="shared,busy",
                        help="shared: the machine as it is; busy: plus one spinning process")
    parser.add_argument("demo_options", nargs="*", help="passed to napari-dip demo (after --)")
    args = parser.parse_args()
    lines = ["| machine | setting | median wall s | range | threads that ran |",
             "|---|---|---:|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "demo.png"
        for condition in args.conditions.split(","):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) \
                if condition == "busy" else None
            try:
                load = os.getloadavg()[0]
                lines += rows(condition, measure(args.settings.split(","), args.repeats,
                                                args.demo_options, out), load)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
            print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
