"""Throughput of the batch command line: in-process versus a 2-worker Dask LocalCluster.

Makes a folder of small synthetic ZYX uint16 stacks (noisy blobs), runs ``napari-dip denoise``
on it in each mode as a separate process (so start-up costs count, as they do for a user), and
prints a Markdown table of wall time and slices per minute, with the machine's load.

    python benchmarks/batch_throughput.py                      # 4 files of 3x64x64, preset quick
    python benchmarks/batch_throughput.py --files 8 --max-iterations 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile


def make_stacks(folder: Path, files: int, shape: tuple[int, int, int], seed: int = 0) -> None:
    """Noisy Gaussian blobs, one ImageJ ZYX uint16 stack per file."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    for index in range(files):
        clean = np.zeros(shape)
        for _ in range(6):
            cy, cx = rng.uniform(0, shape[1]), rng.uniform(0, shape[2])
            clean += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * rng.uniform(3, 8) ** 2))
        noisy = 500 + 2000 * clean + rng.normal(0, 150, shape)
        tifffile.imwrite(folder / f"stack{index:02d}.tif", noisy.clip(0, 65535).astype(np.uint16),
                         imagej=True, resolution=(10.0, 10.0), metadata={"axes": "ZYX"})


def run(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one command; stops the benchmark if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=(3, 64, 64), metavar=("Z", "Y", "X"))
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--max-iterations", type=int, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        make_stacks(folder, args.files, tuple(args.shape))
        options = ["--preset", args.preset, "--quiet", "--device", "cpu"]
        if args.max_iterations:
            options += ["--max-iterations", str(args.max_iterations)]
        modes = [
            ("in-process, torch's default threads", [], None),
            ("in-process, 1 thread (OMP_NUM_THREADS=1)", [], {"OMP_NUM_THREADS": "1"}),
            ("Dask LocalCluster, 2 workers x 1 thread", ["--dask", "local:2"], None),
        ]
        n_slices = args.files * args.shape[0]
        rows = []
        for name, extra, env in modes:
            out = Path(tmp) / f"out{len(rows)}"
            load = os.getloadavg()[0]
            command = ["napari-dip", "denoise", str(folder), "--out", str(out), *options, *extra]
            seconds = run(command, env)
            records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
            restore = sum(r["timings"]["restore_s"] for r in records)
            rows.append((name, seconds, 60 * n_slices / seconds, restore, load))
            print(f"{name}: {seconds:.1f} s", file=sys.stderr)

    config = records[0]["config"]
    print(f"{args.files} files of {'x'.join(map(str, args.shape))} uint16, preset "
          f"{args.preset!r} ({config['max_iterations']} iterations on the first slice, "
          f"warm start {config['warm_start_fraction']}), "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU cores, torch {records[0]['versions']['torch']}\n")
    print("| mode | wall time (s) | slices per minute | sum of per-file restore time (s) "
          "| load average at start |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, rate, restore, load in rows:
        print(f"| {name} | {seconds:.1f} | {rate:.1f} | {restore:.1f} | {load:.1f} |")


if __name__ == "__main__":
    main()
