"""What warm start buys on a stack: its time against one slice's, and each slice's PSNR against
fitting that slice alone.

The MRI stack of ../shared/data/mri/brain10.tiff (10 slices, no ground truth of its own) is
treated as clean: scaled to [0, 1], centre-cropped, and given Gaussian noise (sigma 25/255).
Each slice is restored alone with the preset, then the whole stack with ``restore_stack`` (slice
k warm-started from slice k-1); the clean stack is used only to measure.

    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --crop 128
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --crop 128 --passes 2 \
        --reuse-alone
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --crop 128 --slice-batch 5 \
        --reuse-alone
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --alone-slices 1-3 --alone-only
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --alone-slices none \
        --reuse-alone
    OMP_NUM_THREADS=1 python benchmarks/stack_speed.py --preset fast --crop 128 --set top_channels=0

The single-slice fits do not depend on the stack's options. Each is kept, as it finishes, in
``results/stack_<label>_<side>_alone.json`` (the label is the preset and any ``--set``
overrides, e.g. ``fast+top_channels=0``, leaving out :data:`STACK_ONLY` settings such as
``warm_start_fraction``, which a single fit does not use); ``--reuse-alone`` takes them from
there (or from an older one-pass record) instead of fitting again. At 256x256 a single fit runs
for up to half an hour on one thread, so they can be made in parts: ``--alone-slices 1-3
--alone-only`` fits slices 1 to 3 alone and stops; ``--alone-slices none --reuse-alone`` runs
the stack against whatever single fits are kept when it ends (another process may be making them
meanwhile), comparing only those slices (the table says how many). ``--alone-workers N`` fits
the single slices in N processes at once (one thread each unless OMP_NUM_THREADS says
otherwise); each fit is still timed in its own process.

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
from napari_dip.engine.measures import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (DATA, PAGES, RESULTS, center_crop, command_line,  # noqa: E402
                             labelled, missing_data, parse_setting, with_gaussian_noise,
                             write_section)

START, END = "<!-- stack:start -->", "<!-- stack:end -->"


def noisy_stack(crop: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    stack = tifffile.imread(DATA / "mri" / "brain10.tiff").astype(np.float32)
    stack /= stack.max()
    clean = np.stack([center_crop(s, crop) for s in stack])
    noisy = with_gaussian_noise(clean, np.random.default_rng(seed))
    return noisy, clean


def fit_alone(noisy: np.ndarray, clean: np.ndarray, preset: str, seed: int,
              settings: dict) -> dict:
    """One slice restored on its own: PSNR, wall-clock and CPU seconds (of this process) and
    iterations run."""
    start, cpu = time.perf_counter(), time.process_time()
    for last in napari_dip.iter_restore(noisy, preset=preset, seed=seed, device="cpu",
                                        **settings):
        pass
    return dict(psnr=psnr(last.estimate, clean), seconds=time.perf_counter() - start,
                cpu_seconds=time.process_time() - cpu, iterations=last.iteration)


def alone_file(label: str, side: int) -> Path:
    return RESULTS / f"stack_{label}_{side}_alone.json"


STACK_ONLY = ("warm_start_fraction", "stack_passes", "slice_batch")
"""Settings that only a stack uses: a slice fitted alone is the same fit whatever they are, so
its kept result serves every value of them."""


def kept_alone_fits(label: str, side: int) -> dict[int, dict]:
    """The single-slice fits kept so far: from the per-slice file, else from an older one-pass
    record (which held all of them, in slice order)."""
    path = alone_file(label, side)
    if path.exists():
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    earlier = RESULTS / f"stack_{label}_{side}_pass1.json"
    if not earlier.exists():
        return {}
    r = json.loads(earlier.read_text())
    if len(r.get("alone_cpu_seconds", [])) != len(r["alone_psnr"]):  # no CPU times: refit
        return {}
    return fits_in_record(r)


def fits_in_record(r: dict) -> dict[int, dict]:
    """The single-slice fits a stack record holds, by slice (slices not fitted alone are None
    there); records made before CPU times were kept count their wall-clock seconds instead."""
    cpu = r.get("alone_cpu_seconds", r["alone_seconds"])
    return {k: dict(psnr=p, seconds=t, cpu_seconds=c) for k, (p, t, c) in
            enumerate(zip(r["alone_psnr"], r["alone_seconds"], cpu)) if p is not None}


def keep_alone_fits(label: str, side: int, fits: dict[int, dict]) -> None:
    path = alone_file(label, side)
    partial = path.with_suffix(".json.part")
    partial.write_text(json.dumps({str(k): fits[k] for k in sorted(fits)}, indent=1))
    partial.replace(path)  # atomic: an interrupted run leaves the earlier file whole


def compare(r: dict) -> dict:
    """A stack run against the slices fitted alone too: those in its record, completed by single
    fits kept since (made in parts beside the stack run). The means, the worst slice and the
    ratios are taken over those slices."""
    alone = {**kept_alone_fits(r["preset"], r["side"]), **fits_in_record(r)}
    compared = sorted(alone)

    def mean(values):
        return float(np.mean([values[k] for k in compared]))

    one_slice = mean({k: alone[k]["seconds"] for k in compared})
    one_slice_cpu = mean({k: alone[k]["cpu_seconds"] for k in compared})
    return dict(compared=len(compared), one_slice=one_slice,
                ratio=r["stack_seconds"] / one_slice,
                cpu_ratio=(r["stack_cpu_seconds"] / one_slice_cpu
                           if "stack_cpu_seconds" in r else None),
                input_psnr=mean(r["input_psnr"]),
                alone_psnr=mean({k: alone[k]["psnr"] for k in compared}),
                stack_psnr=mean(r["stack_psnr"]),
                worst=min(r["stack_psnr"][k] - alone[k]["psnr"] for k in compared))


def parse_slices(spec: str, count: int) -> list[int]:
    """'all', 'none', or a list of slice numbers and ranges such as '0,2-4'."""
    if spec in ("all", "none"):
        return list(range(count)) if spec == "all" else []
    chosen = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        chosen += range(int(low), int(high or low) + 1)
    if not all(0 <= k < count for k in chosen):
        raise SystemExit(f"--alone-slices {spec}: the stack has slices 0 to {count - 1}")
    return sorted(set(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--crop", type=int, default=0, help="centre crop side (0: 256x256)")
    parser.add_argument("--passes", type=int, default=1, choices=(1, 2))
    parser.add_argument("--slice-batch", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a config override on top of the preset; repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse-alone", action="store_true",
                        help="take the single-slice fits kept from earlier runs")
    parser.add_argument("--alone-slices", default="all",
                        help="slices to fit alone (those not kept yet, with --reuse-alone): "
                             "all, none, or numbers and ranges such as 0,2-4")
    parser.add_argument("--alone-only", action="store_true",
                        help="fit the single slices, keep them, and stop")
    parser.add_argument("--alone-workers", type=int, default=1,
                        help="processes that fit the single slices at the same time")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the table in docs/benchmarks/stacks.md from the kept "
                             "results")
    args = parser.parse_args()
    if args.report:
        report()
        return
    if missing_data():
        return

    settings = dict(parse_setting(text) for text in args.set)
    label = labelled(args.preset, settings)
    single = {k: v for k, v in settings.items() if k not in STACK_ONLY}
    alone_label = labelled(args.preset, single)
    noisy, clean = noisy_stack(args.crop, args.seed)
    side = clean.shape[1]
    RESULTS.mkdir(parents=True, exist_ok=True)
    alone = kept_alone_fits(alone_label, side) if args.reuse_alone else {}
    todo = [k for k in parse_slices(args.alone_slices, len(noisy)) if k not in alone]
    jobs = [(noisy[k], clean[k], args.preset, args.seed, single) for k in todo]
    if args.alone_workers > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(args.alone_workers, mp_context=get_context("spawn"))
        fits = pool.map(fit_alone, *zip(*jobs))
    else:
        pool, fits = None, (fit_alone(*job) for job in jobs)
    for k, fit in zip(todo, fits):
        alone[k] = fit
        keep_alone_fits(alone_label, side, alone)
        print(f"slice {k} alone: {fit['psnr']:.2f} dB, {fit['iterations']} iterations, "
              f"{fit['cpu_seconds']:.0f} s of CPU", flush=True)
    if pool is not None:
        pool.shutdown()
    if args.alone_only:
        return

    start, cpu = time.perf_counter(), time.process_time()
    iterations = []  # steps of each fit, in the order run (a group of slices is one fit)
    for step in napari_dip.iter_restore_stack(noisy, preset=args.preset, seed=args.seed,
                                              device="cpu", stack_passes=args.passes,
                                              slice_batch=args.slice_batch, **settings):
        if step.snapshot.done:
            iterations.append(step.snapshot.iteration)
            print(f"stack fit {len(iterations)} ended after {step.snapshot.iteration} "
                  f"iterations, {time.process_time() - cpu:.0f} s of CPU so far", flush=True)
    stacked = step.result
    stack_seconds = time.perf_counter() - start
    stack_cpu = time.process_time() - cpu
    if args.reuse_alone:  # single fits made meanwhile by another process count too
        alone = {**kept_alone_fits(alone_label, side), **alone}
    if not alone:
        raise SystemExit("no single-slice fit to compare with: drop --alone-slices none, or fit "
                         "some with --alone-only and add --reuse-alone")
    stack_psnr = [psnr(stacked[k], clean[k]) for k in range(len(noisy))]
    input_psnr = [psnr(noisy[k], clean[k]) for k in range(len(noisy))]
    record = dict(preset=label, side=side, slices=len(noisy), passes=args.passes,
                  slice_batch=args.slice_batch, input_psnr=input_psnr,
                  **{f"alone_{key}": [alone[k].get(key) if k in alone else None
                                      for k in range(len(noisy))]
                     for key in ("psnr", "seconds", "cpu_seconds", "iterations")},
                  stack_psnr=stack_psnr, stack_seconds=stack_seconds,
                  stack_cpu_seconds=stack_cpu, fit_iterations=iterations,
                  threads=torch.get_num_threads(), command=command_line("stack_speed.py"))
    batch = f"_batch{args.slice_batch}" if args.slice_batch > 1 else ""
    name = f"stack_{label}_{side}_pass{args.passes}{batch}.json"
    (RESULTS / name).write_text(json.dumps(record, indent=1))
    c = compare(record)
    print(f"stack: {stack_seconds:.0f} s = {c['ratio']:.2f} x one slice ({c['one_slice']:.0f} s), "
          f"{c['cpu_ratio']:.2f} x in CPU seconds; worst of the {c['compared']} slices "
          f"fitted alone too {c['worst']:+.2f} dB; iterations of each fit: {iterations}")
    report()


def report() -> None:
    lines = ["", "| preset | stack | passes | slices per batch | one slice alone (mean) | "
             "whole stack | ratio | ratio in CPU seconds | "
             "PSNR: noisy -> alone -> in the stack (mean) | worst slice, stack - alone |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    commands = []
    for path in sorted(RESULTS.glob("stack_*_pass*.json")):
        r = json.loads(path.read_text())
        c = compare(r)
        part = "" if c["compared"] == r["slices"] else f" ({c['compared']} of {r['slices']} slices)"
        cpu_ratio = "–" if c["cpu_ratio"] is None else f"{c['cpu_ratio']:.2f}"
        lines.append(
            f"| {r['preset']} | {r['slices']} x {r['side']}x{r['side']} | {r['passes']} | "
            f"{r.get('slice_batch', 1)} | "
            f"{c['one_slice']:.0f} s | {r['stack_seconds']:.0f} s | "
            f"{c['ratio']:.2f} | {cpu_ratio} | "
            f"{c['input_psnr']:.2f} -> {c['alone_psnr']:.2f}"
            f" -> {c['stack_psnr']:.2f} dB{part} | {c['worst']:+.2f} dB{part} |")
        commands.append(r["command"])
    lines += ["", "```", *commands, "```"]
    write_section(START, END, "Stacks: warm start", lines, page=PAGES / "stacks.md")


if __name__ == "__main__":
    main()
