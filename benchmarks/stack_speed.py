"""What warm start buys on a stack: its time against one slice's, and each slice's PSNR against
fitting that slice alone.

The MRI stack of ../shared/data/mri/brain10.tiff (10 slices, no ground truth of its own) is
treated as clean: scaled to [0, 1], centre-cropped, and given Gaussian noise (sigma 25/255).
Each slice is restored alone with the preset, then the whole stack with ``restore_stack`` (slice
k warm-started from slice k-1); the clean stack is used only to measure.

    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --crop 128
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --crop 128 --passes 2 --reuse-alone
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --crop 128 --slice-batch 5 --reuse-alone
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --alone-workers 2

``--alone-workers N`` fits the single slices in N processes at once (one thread each unless
OMP_NUM_THREADS says otherwise); each fit's time is still its own process's, so the ratio is
unchanged by it, only the wall-clock time of the whole benchmark.

``--slice-batch`` fits that many slices together in one generator (one batch); on a CPU a batch
step costs about as much as that many single steps, so it measures quality, not GPU speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import tifffile
import torch

import napari_dip
from napari_dip.operators import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (DATA, RESULTS, center_crop, command_line,  # noqa: E402
                             missing_data, with_gaussian_noise, write_section)

START, END = "<!-- stack:start -->", "<!-- stack:end -->"


def noisy_stack(crop: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    stack = tifffile.imread(DATA / "mri" / "brain10.tiff").astype(np.float32)
    stack /= stack.max()
    clean = np.stack([center_crop(s, crop) for s in stack])
    noisy = with_gaussian_noise(clean, np.random.default_rng(seed))
    return noisy, clean


def fit_alone(noisy: np.ndarray, clean: np.ndarray, preset: str,
              seed: int) -> tuple[float, float, float]:
    """One slice restored on its own: (PSNR, wall-clock seconds, CPU seconds of this process)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = napari_dip.restore(noisy, preset=preset, seed=seed, device="cpu")
    return psnr(result, clean), time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--crop", type=int, default=0, help="centre crop side (0: 256x256)")
    parser.add_argument("--passes", type=int, default=1, choices=(1, 2))
    parser.add_argument("--slice-batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse-alone", action="store_true",
                        help="take the single-slice fits from the one-pass run's results")
    parser.add_argument("--alone-workers", type=int, default=1,
                        help="processes that fit the single slices at the same time")
    args = parser.parse_args()
    if missing_data():
        return

    noisy, clean = noisy_stack(args.crop, args.seed)
    alone_psnr, alone_seconds, alone_cpu = [], [], []
    earlier = RESULTS / f"stack_{args.preset}_{clean.shape[1]}_pass1.json"
    if args.reuse_alone and earlier.exists():  # the single-slice fits do not depend on passes
        record = json.loads(earlier.read_text())
        alone_psnr, alone_seconds = record["alone_psnr"], record["alone_seconds"]
        alone_cpu = record.get("alone_cpu_seconds", [])
        if len(alone_cpu) != len(alone_psnr):  # an older record without CPU times: refit
            alone_psnr, alone_seconds, alone_cpu = [], [], []
    todo = range(len(alone_psnr), len(noisy))
    jobs = [(noisy[k], clean[k], args.preset, args.seed) for k in todo]
    if args.alone_workers > 1 and jobs:
        with ProcessPoolExecutor(args.alone_workers, mp_context=get_context("spawn")) as pool:
            fits = pool.map(fit_alone, *zip(*jobs))
    else:
        fits = (fit_alone(*job) for job in jobs)
    for k, (value, seconds, cpu_seconds) in zip(todo, fits):
        alone_psnr.append(value)
        alone_seconds.append(seconds)
        alone_cpu.append(cpu_seconds)
        print(f"slice {k} alone: {value:.2f} dB in {seconds:.1f} s", flush=True)

    start, cpu = time.perf_counter(), time.process_time()
    iterations = []  # steps of each fit, in the order run (a group of slices is one fit)
    for step in napari_dip.iter_restore_stack(noisy, preset=args.preset, seed=args.seed,
                                              device="cpu", stack_passes=args.passes,
                                              slice_batch=args.slice_batch):
        if step.snapshot.done:
            iterations.append(step.snapshot.iteration)
    stacked = step.result
    stack_seconds = time.perf_counter() - start
    stack_cpu = time.process_time() - cpu
    stack_psnr = [psnr(stacked[k], clean[k]) for k in range(len(noisy))]
    input_psnr = [psnr(noisy[k], clean[k]) for k in range(len(noisy))]
    one_slice = float(np.mean(alone_seconds))
    record = dict(preset=args.preset, side=clean.shape[1], slices=len(noisy), passes=args.passes,
                  slice_batch=args.slice_batch,
                  input_psnr=input_psnr, alone_psnr=alone_psnr, alone_seconds=alone_seconds,
                  stack_psnr=stack_psnr, stack_seconds=stack_seconds,
                  ratio=stack_seconds / one_slice, alone_cpu_seconds=alone_cpu,
                  stack_cpu_seconds=stack_cpu, cpu_ratio=stack_cpu / float(np.mean(alone_cpu)),
                  fit_iterations=iterations,
                  threads=torch.get_num_threads(),
                  command=command_line("stack_speed.py"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    batch = f"_batch{args.slice_batch}" if args.slice_batch > 1 else ""
    name = f"stack_{args.preset}_{clean.shape[1]}_pass{args.passes}{batch}.json"
    (RESULTS / name).write_text(json.dumps(record, indent=1))
    print(f"stack: {stack_seconds:.0f} s = {record['ratio']:.2f} x one slice ({one_slice:.0f} s), "
          f"{record['cpu_ratio']:.2f} x in CPU seconds; "
          f"worst slice vs alone {min(np.subtract(stack_psnr, alone_psnr)):+.2f} dB; "
          f"iterations of each fit: {iterations}")
    report()


def report() -> None:
    lines = ["", "| preset | stack | passes | slices per batch | one slice alone (mean) | "
             "whole stack | ratio | ratio in CPU seconds | "
             "PSNR: noisy -> alone -> in the stack (mean) | worst slice, stack - alone |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    commands = []
    for path in sorted(RESULTS.glob("stack_*_pass*.json")):
        r = json.loads(path.read_text())
        difference = np.subtract(r["stack_psnr"], r["alone_psnr"])
        cpu_ratio = f"{r['cpu_ratio']:.2f}" if "cpu_ratio" in r else "–"
        lines.append(
            f"| {r['preset']} | {r['slices']} x {r['side']}x{r['side']} | {r['passes']} | "
            f"{r.get('slice_batch', 1)} | "
            f"{np.mean(r['alone_seconds']):.0f} s | {r['stack_seconds']:.0f} s | "
            f"{r['ratio']:.2f} | {cpu_ratio} | "
            f"{np.mean(r['input_psnr']):.2f} -> {np.mean(r['alone_psnr']):.2f}"
            f" -> {np.mean(r['stack_psnr']):.2f} dB | {difference.min():+.2f} dB |")
        commands.append(r["command"])
    lines += ["", "```", *commands, "```"]
    write_section(START, END, "Stacks: warm start", lines)


if __name__ == "__main__":
    main()
