"""GPU speed: step cost per preset and arithmetic, time to the paper's quality on a whole 512x512
RGB image, mixed precision against float32, and slices of a stack in one batch.

Every measurement runs through the package's public API (``iter_restore``,
``iter_restore_stack``) on one CUDA device, as a user's run would. Times are wall-clock seconds
of the fit as the snapshots report them (taken after the GPU has finished the step, since each
snapshot reads the loss), less the time this script spends measuring PSNR between snapshots.
The clean image is used only to measure.

    python benchmarks/gpu.py steps                     # ms per step: presets x precision x compile
    python benchmarks/gpu.py quality --image Lena512   # PSNR against seconds, paper vs ours
    python benchmarks/gpu.py batch                     # slices per batch on a 10-slice stack
    python benchmarks/gpu.py profile                   # where one step of auto's generator goes
    python benchmarks/gpu.py --report                  # tables into docs/benchmarks/gpu.md

Results: benchmarks/results/gpu_<section>[_<image>].json. ``--tiny`` runs every section on a
small crop for a few iterations (on any device): a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari_dip
from napari_dip.engine.measures import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (DATA, PAGES, RESULTS, center_crop, command_line, load,  # noqa: E402
                             with_gaussian_noise, write_section)
from speed import TOLERANCE_DB, first_time_within  # noqa: E402

START, END = "<!-- gpu:start -->", "<!-- gpu:end -->"
IMAGES = {"Lena512": "image_Lena512rgb", "F16_512": "image_F16_512rgb",
          "Peppers512": "image_Peppers512rgb", "Baboon512": "image_Baboon512rgb"}


def environment(device: str) -> dict:
    info = dict(torch=torch.__version__, device=device)
    if device.startswith("cuda"):
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    cudnn_tf32=torch.backends.cudnn.allow_tf32)
    return info


def noisy_image(name: str, crop: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    clean = center_crop(load(DATA / "CBM3D9_color" / f"{IMAGES[name]}.png"), crop)
    return with_gaussian_noise(clean, np.random.default_rng(seed)), clean


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reset_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.startswith("cuda") else None


# ------------------------------------------------------------------------------ step cost

def step_cost(noisy, device: str, preset: str, warmup: int, steps: int, **settings) -> dict:
    """Milliseconds per step after ``warmup`` steps (which include any compilation), and the
    time the first ``warmup`` steps took, for one fit of the whole image (no tiles).
    ``cudnn_benchmark=True`` lets cuDNN time its
    convolution algorithms for these shapes first (a process-wide switch, reset afterwards)."""
    reset_memory(device)
    torch.backends.cudnn.benchmark = settings.pop("cudnn_benchmark", False)
    times = {}
    for snap in napari_dip.iter_restore(noisy, preset=preset, channel_axis=-1, seed=0,
                                        device=device, max_iterations=warmup + steps,
                                        report_every=warmup if steps % warmup == 0 else 1,
                                        stopping="none", **{"tile_size": 0, **settings}):
        times[snap.iteration] = snap.elapsed
    step = (times[warmup + steps] - times[warmup]) / steps
    cudnn_benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    return dict(preset=preset, settings={**settings, "cudnn_benchmark": cudnn_benchmark},
                ms_per_step=1000 * step,
                first_steps_s=times[warmup], warmup=warmup, steps=steps,
                precision=snap.precision, peak_memory_gib=peak_memory_gib(device))


def steps_section(args, save) -> dict:
    noisy, _ = noisy_image("Lena512", args.crop)
    rows = []
    result = dict(image="Lena512", side=noisy.shape[0], rows=rows)
    variants = [(preset, dict(precision=precision, cuda_graph=graph))
                for preset, precision in (("paper", "float32"), ("paper", "bfloat16"),
                                          ("auto", "float32"), ("auto", "bfloat16"),
                                          ("fast", "bfloat16"))
                for graph in ("auto", "off")]
    variants += [("paper", dict(precision="float16")), ("auto", dict(precision="float16"))]
    variants += [(preset, dict(precision="bfloat16", compile=mode))
                 for preset in ("auto", "paper") for mode in args.compile_modes]
    for preset, settings in variants:
        started = time.perf_counter()
        try:
            row = step_cost(noisy, args.device, preset, args.warmup, args.steps, **settings)
        except Exception as error:  # a compile mode that fails here is a result too
            row = dict(preset=preset, settings=settings, error=f"{type(error).__name__}: {error}")
        row["wall_s"] = time.perf_counter() - started
        rows.append(row)
        print(json.dumps(row), flush=True)
        save(result)
    return result


# ------------------------------------------------------------------------------ quality

def curve_of(noisy, clean, device: str, preset: str, cap: int | None, every: int,
             past_peak: int | None, **settings) -> dict:
    """PSNR of the estimate the run would return, against the fit's own seconds."""
    reset_memory(device)
    curve, measuring, last, best, best_iteration = [], 0.0, None, -np.inf, 0
    for last in napari_dip.iter_restore(noisy, preset=preset, channel_axis=-1, seed=0,
                                        device=device, max_iterations=cap, report_every=every,
                                        **settings):
        begin = time.perf_counter()
        curve.append((round(last.elapsed - measuring, 4), last.iteration,
                      round(psnr(last.estimate, clean), 3)))
        if curve[-1][2] > best:  # the first iteration to reach the best PSNR, as max() gives
            best, best_iteration = curve[-1][2], last.iteration
        measuring += time.perf_counter() - begin
        if past_peak is not None and last.iteration - best_iteration >= past_peak:
            break
    return dict(preset=preset, settings=settings, curve=curve, psnr=curve[-1][2],
                seconds=curve[-1][0], iterations=last.iteration, stopped=last.stopped,
                precision=last.precision, peak_memory_gib=peak_memory_gib(device))


def quality_section(args, save) -> dict:
    noisy, clean = noisy_image(args.image, args.crop)
    runs = []
    result = dict(image=args.image, side=clean.shape[0], input_psnr=psnr(noisy, clean), runs=runs)
    methods = [("paper", dict(precision="float32"), args.past_peak),  # paper's arithmetic
               ("paper", dict(precision="bfloat16"), args.past_peak),
               ("auto", dict(), None), ("fast", dict(), None),  # as shipped
               ("auto", dict(precision="float32"), None)]
    methods += [("auto", dict(compile=mode), None) for mode in args.compile_modes]
    if args.methods:  # e.g. paper:float32 auto fast auto:float32
        methods = [m for m in methods if ":".join([m[0], *m[1].values()]) in args.methods]
    for preset, settings, past_peak in methods:
        cap = args.paper_cap if preset == "paper" else args.cap
        try:
            run = curve_of(noisy, clean, args.device, preset, cap, args.every, past_peak,
                           **settings)
        except Exception as error:
            run = dict(preset=preset, settings=settings, error=f"{type(error).__name__}: {error}")
        runs.append(run)
        brief = {k: v for k, v in run.items() if k != "curve"}
        print(json.dumps(brief), flush=True)
        save(result)
    return result


# ------------------------------------------------------------------------------ batch

def batch_section(args, save) -> dict:
    """A 10-slice stack (256x256 greyscale crops of the CBM3D9 images' luminance, each with its
    own noise), every slice fitted from scratch for the same number of steps: the whole stack's
    time with 1, 2, 5 and 10 slices per batch."""
    side = args.crop or 256
    slices, cleans = [], []
    rng = np.random.default_rng(0)
    for path in sorted((DATA / "CBM3D9_color").glob("*.png"))[:10]:
        clean = center_crop(load(path, grey=True), side)
        cleans.append(clean)
        slices.append(with_gaussian_noise(clean, rng))
    while len(slices) < 10:  # fewer than ten images: repeat with fresh noise
        cleans.append(cleans[len(slices) % len(cleans)])
        slices.append(with_gaussian_noise(cleans[-1], rng))
    stack, clean_stack = np.stack(slices), np.stack(cleans)
    rows = []
    result = dict(side=side, slices=len(stack), rows=rows)
    for batch, graph in [(b, "auto") for b in args.batches] + [(max(args.batches), "off")]:
        reset_memory(args.device)
        sync(args.device)
        start = time.perf_counter()
        last = None
        for last in napari_dip.iter_restore_stack(stack, preset="auto", device=args.device,
                                                  max_iterations=args.batch_steps,
                                                  stopping="none", warm_start_fraction=0.0,
                                                  slice_batch=batch, cuda_graph=graph,
                                                  report_every=args.batch_steps):
            pass
        sync(args.device)
        seconds = time.perf_counter() - start
        value = float(np.mean([psnr(last.result[k], clean_stack[k]) for k in range(len(stack))]))
        rows.append(dict(slice_batch=batch, cuda_graph=graph, seconds=seconds,
                         steps=args.batch_steps,
                         ms_per_slice_step=1000 * seconds / args.batch_steps / len(stack),
                         mean_psnr=value, peak_memory_gib=peak_memory_gib(args.device)))
        print(json.dumps(rows[-1]), flush=True)
        save(result)
    return result


# ------------------------------------------------------------------------------ profile

def profile_section(args, save) -> dict:
    """Where the time of one step of auto's generator goes (torch.profiler, 30 steps)."""
    from torch.profiler import ProfilerActivity, profile

    noisy, _ = noisy_image("Lena512", args.crop)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if args.device.startswith("cuda") else [])
    tables = {}
    for precision in ("bfloat16", "float32"):
        runs = napari_dip.iter_restore(noisy, preset="auto", channel_axis=-1, device=args.device,
                                       max_iterations=60, report_every=30, stopping="none",
                                       precision=precision)
        next(runs)  # 30 steps of warm-up
        with profile(activities=activities) as prof:
            next(runs)
        key = "self_device_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
        tables[precision] = prof.key_averages().table(sort_by=key, row_limit=25)
        print(precision, "\n", tables[precision], flush=True)
    return dict(tables=tables)


# ------------------------------------------------------------------------------ report

def gib(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} GiB"


def report() -> None:
    lines = []
    for steps in sorted(set(RESULTS.glob("gpu_steps*.json")) - set(RESULTS.glob("*_tiny.json"))):
        s = json.loads(steps.read_text())
        env = s["environment"]
        note = f" {s['note'][0].upper()}{s['note'][1:]}." if "note" in s else ""
        lines += [f"One step at {s['side']}x{s['side']} RGB ({env.get('gpu', env['device'])}, "
                  f"torch {env['torch']}, CUDA {env.get('cuda')}).{note}", "",
                  "| preset | arithmetic | CUDA graph | compile | ms per step | first "
                  f"{s['rows'][0].get('warmup', '')} steps | peak GPU memory |",
                  "|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            settings = r["settings"]
            graph = settings.get("cuda_graph", "off" if "note" in s else "auto")
            if settings.get("precision") == "float16" or settings.get("compile", "off") != "off":
                graph = "off"  # float16's loss scaling and compile are never recorded
            if "error" in r:
                lines.append(f"| {r['preset']} | {settings.get('precision')} | {graph} | "
                             f"{settings.get('compile', 'off')} | failed: {r['error'][:80]} | | |")
                continue
            lines.append(f"| {r['preset']} | {r['precision']} | {graph} | "
                         f"{settings.get('compile', 'off')} | {r['ms_per_step']:.2f} | "
                         f"{r['first_steps_s']:.1f} s | {gib(r['peak_memory_gib'])} |")
        lines += ["", f"Command: `{s['command']}`", ""]
    for path in sorted(set(RESULTS.glob("gpu_quality_*.json")) - set(RESULTS.glob("*_tiny.json"))):
        q = json.loads(path.read_text())
        runs = [r for r in q["runs"] if "error" not in r]
        reference = next((r for r in runs if r["preset"] == "paper"
                          and r["settings"].get("precision") == "float32"), None)
        if reference is None:
            continue
        best_s, best_it, best = max(reference["curve"], key=lambda point: point[2])
        note = f" {q['note'][0].upper()}{q['note'][1:]}." if "note" in q else ""
        lines += [f"**{q['image']}** ({q['side']}x{q['side']} RGB, sigma 25, noisy "
                  f"{q['input_psnr']:.2f} dB). Preset paper in float32: best **{best:.2f} dB** "
                  f"at iteration {best_it}, after **{best_s:.1f} s**.{note}", "",
                  "| method | arithmetic | returned PSNR | its time | paper's best - 0.3 dB "
                  "reached after | paper's best reached after | peak GPU memory |",
                  "|---|---|---|---|---|---|---|"]
        for r in runs:
            within = first_time_within(r["curve"], best - TOLERANCE_DB)
            reached = first_time_within(r["curve"], best)
            name = r["preset"] + "".join(f"+{k}={v}" for k, v in r["settings"].items()
                                         if k != "precision")
            if not r["settings"]:
                name += " (as shipped)"
            _, peak_iteration, peak = max(r["curve"], key=lambda point: point[2])
            end = ("stopped by itself" if r["stopped"] else
                   f"ended {r['iterations'] - peak_iteration} it. past its peak of {peak:.2f} dB"
                   if r["preset"] == "paper" else "cap")
            lines.append(f"| {name} | {r['precision']} | {r['psnr']:.2f} dB | "
                         f"{r['seconds']:.1f} s, {r['iterations']} it. ({end}) | "
                         f"{'never' if within is None else f'{within:.1f} s'} | "
                         f"{'never' if reached is None else f'{reached:.1f} s'} | "
                         f"{gib(r['peak_memory_gib'])} |")
        lines += ["", f"Command: `{q['command']}`", ""]
    batch = RESULTS / "gpu_batch.json"
    if batch.exists():
        b = json.loads(batch.read_text())
        one = next((r for r in b["rows"] if r["slice_batch"] == 1
                    and r.get("cuda_graph", "auto") == "auto"), None)
        lines += [f"A stack of {b['slices']} slices of {b['side']}x{b['side']}, preset auto, every "
                  f"slice fitted from scratch for {b['rows'][0]['steps']} steps:", "",
                  "| slices per batch | CUDA graph | whole stack | ms per slice-step | time of one "
                  "per batch / this | mean PSNR | peak GPU memory |",
                  "|---|---|---|---|---|---|---|"]
        for r in b["rows"]:
            speedup = "" if one is None else f"{one['seconds'] / r['seconds']:.2f}"
            lines.append(f"| {r['slice_batch']} | {r.get('cuda_graph', 'auto')} | "
                         f"{r['seconds']:.1f} s | "
                         f"{r['ms_per_slice_step']:.2f} | {speedup} | {r['mean_psnr']:.2f} dB | "
                         f"{gib(r['peak_memory_gib'])} |")
        lines += ["", f"Command: `{b['command']}`", ""]
    write_section(START, END, "GPU", lines, page=PAGES / "gpu.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", choices=["steps", "quality", "batch", "profile"])
    parser.add_argument("--report", action="store_true", help="write the tables and exit")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--image", default="Lena512", choices=sorted(IMAGES))
    parser.add_argument("--crop", type=int, default=0, help="centre crop side (0: whole image)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--compile-modes", nargs="*", default=[])
    parser.add_argument("--methods", nargs="*", default=None,
                        help="quality: only these (preset[:precision]), e.g. paper:float32 auto")
    parser.add_argument("--tag", default="", help="appended to the result's file name")
    parser.add_argument("--every", type=int, default=25, help="iterations between snapshots")
    parser.add_argument("--cap", type=int, default=None, help="our presets' cap (default theirs)")
    parser.add_argument("--paper-cap", type=int, default=6000)
    parser.add_argument("--past-peak", type=int, default=600,
                        help="paper's runs end once the PSNR has not improved for this many "
                             "iterations")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 2, 5, 10])
    parser.add_argument("--batch-steps", type=int, default=300)
    parser.add_argument("--tiny", action="store_true",
                        help="a check of the script: 64x64 crops, a few iterations")
    args = parser.parse_args(argv)
    if args.report:
        report()
        return 0
    if args.tiny:
        args.crop, args.warmup, args.steps, args.every = 64, 2, 4, 5
        args.cap, args.paper_cap, args.past_peak, args.batch_steps = 20, 20, 10, 4
        args.batches, args.compile_modes = [1, 2], []
    sections = {"steps": steps_section, "quality": quality_section, "batch": batch_section,
                "profile": profile_section}
    suffix = f"_{args.image}" if args.section == "quality" else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = (f"_{args.tag}" if args.tag else "") + ("_tiny" if args.tiny else "")
    out = RESULTS / f"gpu_{args.section}{suffix}{tag}.json"

    def save(result: dict) -> None:  # after every run: a run cut short keeps what it measured
        result.update(environment=environment(args.device),
                      command=command_line("gpu.py", argv))
        out.write_text(json.dumps(result, indent=1))

    save(sections[args.section](args, save))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
