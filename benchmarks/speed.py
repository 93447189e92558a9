"""Time to quality: preset "paper" against our presets and auto-denoise's DIP, on the same images.

Every method denoises the same noisy 256x256 greyscale image (Set12, sigma 25) on the same machine
with the same number of threads. Our presets record the PSNR of the estimate they would return
at every snapshot against the elapsed time (the clean image is used only to measure), so each
run gives a PSNR-against-seconds curve. auto-denoise's DIP (PyPI ``auto-denoise``) has no
progress hook: it is run for a fixed number of epochs and gives one point, its returned result
(the held-out best state) at its total time.

From the curves the report reads: the best PSNR that "paper" reaches and when; for each other
method, its returned PSNR and total time, and the time it first came within 0.3 dB of paper's
best; the ratio of those times; the peak memory of the process (``ru_maxrss``).

Each method runs in its own process (so peak memory is per method) and writes
benchmarks/results/speed_<image>_<method>.json; ``--report`` assembles the table and the plot.
``--step-costs`` measures the CPU time per step of each preset with the presets taking turns
(benchmarks/results/step_costs_<side>.json), and the report prices the iterations each run
took at those costs too: the long runs' own CPU times carry whatever load they met.

    OMP_NUM_THREADS=1 python benchmarks/speed.py --image 02 --method paper --crop 128 \
        --cap 3000 --past-peak 400
    OMP_NUM_THREADS=1 python benchmarks/speed.py --image 02 --crop 128 --method fast
    OMP_NUM_THREADS=1 python benchmarks/speed.py --image 02 --crop 128 --method auto-denoise
    OMP_NUM_THREADS=1 python benchmarks/speed.py --image 02 --step-costs --presets paper,auto
    python benchmarks/speed.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari_dip
from napari_dip.engine.measures import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (DATA, DOCS, PAGES, RESULTS, center_crop, command_line,  # noqa: E402
                             cpu_description, labelled, load, missing_data, parse_setting,
                             with_gaussian_noise, write_section)

START, END = "<!-- speed:start -->", "<!-- speed:end -->"
PLOT = DOCS / "images" / "speed_curves.png"
NAMES = {"01": "Cameraman", "02": "House", "03": "Peppers", "04": "Starfish", "05": "Monarch",
         "06": "Airplane", "07": "Parrot"}
TOLERANCE_DB = 0.3


def noisy_pair(image: str, seed: int, crop: int = 0) -> tuple[np.ndarray, np.ndarray]:
    clean = center_crop(load(DATA / "Set12" / f"{image}.png", grey=True), crop)
    noisy = with_gaussian_noise(clean, np.random.default_rng(seed))
    return noisy, clean


def peak_memory_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def run_preset(preset: str, noisy, clean, cap: int | None, seed: int, every: int,
               past_peak: int | None, save, settings: dict) -> dict:
    """Record the PSNR curve; with ``past_peak``, end the run (a reference run only) once the
    PSNR has not reached a new best for that many iterations: the peak is then behind it."""
    curve, cpu, last = [], [], None
    cpu_start = time.process_time()
    for last in napari_dip.iter_restore(noisy, preset=preset, seed=seed, max_iterations=cap,
                                        report_every=every, device="cpu", **settings):
        curve.append((round(last.elapsed, 3), last.iteration, round(psnr(last.estimate, clean), 3)))
        cpu.append(round(time.process_time() - cpu_start, 3))  # robust to other jobs' load
        record = dict(curve=curve, cpu_seconds=cpu, seconds=last.elapsed, iterations=last.iteration,
                      psnr=psnr(last.estimate, clean), stopped=last.stopped,
                      best_iteration=last.best_iteration, memory_format=last.memory_format)
        if last.done or len(curve) % 20 == 0:
            save(record)  # long reference runs leave a usable record if interrupted
        best_iteration = max(curve, key=lambda point: point[2])[1]
        if past_peak is not None and last.iteration - best_iteration >= past_peak:
            record["ended_past_peak"] = True
            break
    return record


def run_auto_denoise(noisy, clean, epochs: int, seed: int, swap_mask: bool) -> dict:
    """auto-denoise's DIP as its documentation shows it: a 16-feature U-net, default settings.

    In auto-denoise 3.0.0, ``prepare_data`` marks ``num_tst_ratio`` (20 %) of the pixels for
    training and the other 80 % for validation. ``swap_mask`` trains on the 80 % instead."""
    import autoden

    np.random.seed(seed)
    torch.manual_seed(seed)
    denoiser = autoden.DIP(model=autoden.NetworkParamsUNet(n_features=16), verbose=False,
                           device="cpu")
    start = time.perf_counter()
    inp, tgt, train_mask = denoiser.prepare_data(noisy)
    if swap_mask:
        train_mask = ~train_mask
    data = (inp, tgt, train_mask)
    denoiser.train(*data, epochs=epochs)
    result = denoiser.infer(data[0])
    seconds = time.perf_counter() - start
    value = psnr(np.clip(result, 0, 1), clean)
    return dict(curve=[(round(seconds, 3), epochs, round(value, 3))], seconds=seconds,
                iterations=epochs, psnr=value, stopped=False, best_iteration=None,
                version=autoden.__version__)


def measure(args) -> None:
    noisy, clean = noisy_pair(args.image, args.seed, args.crop)
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = dict(parse_setting(text) for text in args.set)
    label = labelled(args.method, settings)
    seed = f"_seed{args.seed}" if args.seed else ""
    out = RESULTS / f"speed_{args.image}_{clean.shape[0]}_{label}{seed}.json"
    machine = f"{cpu_description()}, {os.cpu_count()} cores, torch {torch.__version__}"

    def save(record: dict) -> None:
        record.update(image=args.image, name=NAMES.get(args.image, args.image), side=clean.shape[0],
                      method=label, input_psnr=psnr(noisy, clean),
                      peak_memory_gib=peak_memory_gib(), threads=torch.get_num_threads(),
                      cap=args.cap, seed=args.seed,
                      machine=machine,
                      command=command_line("speed.py"))
        out.write_text(json.dumps(record, indent=1))

    if args.method.startswith("auto-denoise"):
        record = run_auto_denoise(noisy, clean, args.epochs, args.seed,
                                  swap_mask=args.method == "auto-denoise-swapped-mask")
    else:
        record = run_preset(args.method, noisy, clean, args.cap, args.seed, args.every,
                            args.past_peak, save, settings)
    save(record)
    print(f"{record['name']} {label}: {record['psnr']:.2f} dB in {record['seconds']:.0f} s "
          f"({record['iterations']} it.), peak memory {record['peak_memory_gib']:.2f} GiB -> {out}")


def step_costs_path(side: int) -> Path:
    return RESULTS / f"step_costs_{side}.json"


def measure_step_costs(args) -> None:
    """CPU seconds per step of each preset's fit of the same noisy image, the presets taking
    turns: ``--rounds`` rounds, each giving every preset about ``--round-seconds`` of steps.
    A change in the machine's load (another job, another tenant of the host) then falls on
    all of them alike, which separate long runs cannot promise: their step costs moved by
    10 % and more between runs of the same path. Runs without a stopping rule, through the
    public API, snapshots every 5 steps as ``iter_restore`` gives them."""
    import statistics

    noisy, _ = noisy_pair(args.image, args.seed, args.crop)
    presets = args.presets.split(",")
    fits, per_call = {}, {}
    for preset in presets:
        fits[preset] = napari_dip.iter_restore(noisy, preset=preset, seed=args.seed,
                                               stopping="none", max_iterations=10**6,
                                               report_every=5, device="cpu")
        next(fits[preset])  # warm-up: the first steps build and allocate
        start = time.process_time()
        next(fits[preset])
        per_call[preset] = time.process_time() - start
    calls = {preset: max(1, round(args.round_seconds / per_call[preset])) for preset in presets}
    rounds: dict[str, list[float]] = {preset: [] for preset in presets}
    snapshot = None
    for _ in range(args.rounds):
        for preset in presets:
            start = time.process_time()
            for _ in range(calls[preset]):
                snapshot = next(fits[preset])
            rounds[preset].append((time.process_time() - start) / (5 * calls[preset]))
    side = noisy.shape[0]
    record = dict(side=side, image=args.image, threads=torch.get_num_threads(),
                  machine=f"{cpu_description()}, {os.cpu_count()} cores, torch {torch.__version__}",
                  memory_format=snapshot.memory_format,
                  costs={preset: statistics.median(values) for preset, values in rounds.items()},
                  rounds=rounds, command=command_line("speed.py"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    step_costs_path(side).write_text(json.dumps(record, indent=1))
    for preset, cost in record["costs"].items():
        print(f"{preset}: {cost:.4f} s of CPU per step (median of {args.rounds} rounds)")


# ------------------------------------------------------------------------------ the report

def first_time_within(curve, level: float, times=None) -> float | None:
    """The first time the curve's PSNR reaches ``level``: its own seconds, or the matching
    entry of ``times`` (e.g. CPU seconds recorded beside it)."""
    times = times or [seconds for seconds, _, _ in curve]
    return next((t for t, (_, _, value) in zip(times, curve) if value >= level), None)


def cpu_time_lines(paper: dict, methods: dict, best: float) -> list[str]:
    """The same comparison in CPU seconds of each process (``time.process_time``), which other
    jobs on a shared machine do not inflate, for the runs that recorded them."""
    if "cpu_seconds" not in paper:
        return []
    values = [point[2] for point in paper["curve"]]
    paper_best = paper["cpu_seconds"][values.index(max(values))]
    lines = [f"In CPU seconds (each process's own, unaffected by other jobs): paper reached its "
             f"best after {paper_best:.0f} s."]
    for name, record in sorted(methods.items()):
        if name == "paper" or "cpu_seconds" not in record:
            continue
        within = first_time_within(record["curve"], best - TOLERANCE_DB, record["cpu_seconds"])
        reached = ("never came within 0.3 dB of it" if within is None else
                   f"came within 0.3 dB of it after {within:.0f} s ({within / paper_best:.3f} "
                   f"= 1/{paper_best / within:.1f} of paper's time)")
        total = record["cpu_seconds"][-1]
        lines.append(f"- {name} {reached}, and ended after {total:.0f} s "
                     f"({total / paper_best:.3f} = 1/{paper_best / total:.1f}).")
    return lines + [""]


def iteration_lines(paper: dict, methods: dict, best: float, best_it: int) -> list[str]:
    """The comparison in iterations, priced at the step costs measured in turns
    (``--step-costs``) on the same processor, in the same layout: independent of the load the
    long runs met, as the paths themselves are (a CPU run is repeatable bit for bit). Paper
    reached its ``best`` PSNR at iteration ``best_it``."""
    path = step_costs_path(paper["side"])
    if not path.exists():
        return []
    costs = json.loads(path.read_text())
    if (costs["machine"], costs["memory_format"]) != (paper["machine"], layout(paper)) or \
            "paper" not in costs["costs"]:
        return []
    paper_cost = costs["costs"]["paper"]
    lines = [f"In iterations, priced at the step costs measured in turns (`{costs['command']}`: "
             + ", ".join(f"{name} {cost:.4f} s" for name, cost in costs["costs"].items())
             + f" of CPU per step): paper reached its best at iteration {best_it}, "
             f"{best_it * paper_cost:.0f} s."]
    for name, record in sorted(methods.items()):
        cost = costs["costs"].get(name.split("+")[0])
        if name == "paper" or cost is None:
            continue
        within = first_time_within(record["curve"], best - TOLERANCE_DB,
                                   [it for _, it, _ in record["curve"]])
        if within is None:
            lines.append(f"- {name} never came within 0.3 dB of it.")
            continue
        ratio = best_it * paper_cost / (within * cost)
        lines.append(f"- {name} came within 0.3 dB of it at iteration {within}: "
                     f"{within * cost:.0f} s, 1/{ratio:.1f} of paper's.")
    return lines + [""]


UNRECORDED = "processor not recorded"


def processor(record: dict) -> str:
    """The processor a run was measured on; runs before ``cpu_description`` did not record it."""
    return record["machine"] if "bfloat16" in record["machine"] else UNRECORDED


def layout(record: dict) -> str:
    """The generator's memory layout in a run; runs from before the CPU could run channels-last
    (``memory_format``) did not record it and ran contiguous."""
    return record.get("memory_format", "contiguous (not recorded)")


def report() -> None:
    """One table per image, size, processor, seed (which draws the noise and the networks) and
    memory layout, each against the paper run measured on that processor with that seed and
    layout: the presets' relative speeds differ between processors and layouts, so a run is
    only compared with a reference made the same way."""
    records: dict[tuple, dict[str, dict]] = {}
    for path in sorted(RESULTS.glob("speed_*_*.json")):
        record = json.loads(path.read_text())
        key = (record["image"], record["side"], processor(record), record.get("seed", 0),
               layout(record))
        records.setdefault(key, {})[record["method"]] = record
    lines = []
    for (image, side, _, _, _), methods in sorted(records.items(), key=lambda item: item[0][:2]):
        paper = methods.get("paper")
        if paper is None:
            continue
        best_s, best_it, best = max(paper["curve"], key=lambda point: point[2])
        peers: list[str] = []
        crop = " centre crop" if side < 256 else ""
        unrecorded = ("; earlier runs, which did not record the processor"
                      if processor(paper) == UNRECORDED else "")
        lines += [f"**{paper['name']}** (Set12 {image}.png, {side}x{side}{crop}, sigma 25; noisy "
                  f"{paper['input_psnr']:.2f} dB; seed {paper.get('seed', 0)}; "
                  f"{paper['threads']} thread(s), "
                  f"{paper['machine']}{unrecorded}; "
                  f"generator layout {layout(paper)}). "
                  f"Preset paper, run to {paper['iterations']} iterations: "
                  f"best **{best:.2f} dB** at iteration {best_it}, after **{best_s:.0f} s**.", "",
                  "| method | returned PSNR | its time | paper's best - 0.3 dB reached after | "
                  "its time / paper's time to its best | peak memory |",
                  "|---|---|---|---|---|---|"]
        for name, record in sorted(methods.items()):
            if name == "paper":
                continue
            reached = first_time_within(record["curve"], best - TOLERANCE_DB)
            reached_text = "not reached" if reached is None else f"{reached:.0f} s"
            ratio = record["seconds"] / best_s
            stop = " (stopped by itself)" if record.get("stopped") else ""
            lines.append(f"| {name} | {record['psnr']:.2f} dB | {record['seconds']:.0f} s, "
                         f"{record['iterations']} it.{stop} | {reached_text} | {ratio:.2f} | "
                         f"{record['peak_memory_gib']:.2f} GiB |")
        for peer_name, peer in sorted(methods.items()):
            if not peer_name.startswith("auto-denoise"):
                continue
            for name, record in sorted(methods.items()):
                if name in ("paper", peer_name) or name.startswith("auto-denoise"):
                    continue
                reached = first_time_within(record["curve"], peer["psnr"])
                when = ("never" if reached is None else
                        f"after {reached:.0f} s, {reached / peer['seconds']:.2f} of its "
                        f"{peer['seconds']:.0f} s")
                peers.append(f"- {name} reached {peer_name}'s {peer['psnr']:.2f} dB {when}.")
        lines += [f"| paper (reference) | {paper['psnr']:.2f} dB at the end | "
                  f"{paper['seconds']:.0f} s | {best_s:.0f} s | 1 | "
                  f"{paper['peak_memory_gib']:.2f} GiB |", ""]
        lines += cpu_time_lines(paper, methods, best)
        lines += iteration_lines(paper, methods, best, best_it)
        lines += ["Commands:", "```"]
        lines += [methods[name]["command"] for name in sorted(methods)] + ["```", ""]
        if peers:
            lines += ["Against auto-denoise's DIP (PSNR of the returned result):", "", *peers, ""]
    lines += [f"![PSNR against seconds](../images/{PLOT.name})", "",
              "The presets as they are and the references; the variants (`+...`) are in the "
              "tables only. Wall-clock seconds, one thread per process. The tables and the "
              "plot are drawn from the stored runs by `python benchmarks/speed.py --report`."]
    write_section(START, END, "Speed: time to reach the paper's quality", lines,
                  page=PAGES / "speed.md")
    plot(records)


def plot(records) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the presets as they are and the references, in the runs that recorded their layout (the
    # code as it is); variants made with --set and earlier runs are in the tables
    current = {key: methods for key, methods in records.items() if key[4] != layout({})}
    records = {key: {name: record for name, record in methods.items() if "+" not in name}
               for key, methods in (current or records).items()}
    names = sorted({name for methods in records.values() for name in methods})
    colours = {name: f"C{number}" for number, name in enumerate(names)}
    fig, axes = plt.subplots(1, len(records), figsize=(4.5 * len(records), 4), squeeze=False)
    for axis, (key, methods) in zip(axes[0], sorted(records.items())):
        for name, record in sorted(methods.items()):
            seconds, _, values = zip(*record["curve"])
            style = "o" if len(seconds) == 1 else "-"
            axis.plot(seconds, values, style, label=name, color=colours[name])
        axis.set_xscale("log")
        axis.set_xlabel("seconds (log)")
        axis.set_ylabel("PSNR (dB)")
        first = next(iter(methods.values()))
        axis.set_title(f"{first['name']}, {first['side']}x{first['side']}, seed {key[3]}\n{key[2]}",
                       fontsize=9)
        axis.grid(alpha=0.3)
    handles = {label: handle for axis in axes[0]
               for handle, label in zip(*axis.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles),
               frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="02", help="Set12 image number (01-07 are 256x256)")
    parser.add_argument("--method", default="fast",
                        help="a preset name (paper, fast, auto, ...), auto-denoise, or "
                             "auto-denoise-swapped-mask (trained on 80 %% of the pixels)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a config override on top of the preset (a candidate); repeatable")
    parser.add_argument("--cap", type=int, default=None, help="iteration cap (default: preset's)")
    parser.add_argument("--epochs", type=int, default=2000, help="auto-denoise's epochs")
    parser.add_argument("--every", type=int, default=25, help="iterations between snapshots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", type=int, default=0,
                        help="centre crop side in pixels (0: the whole 256x256 image)")
    parser.add_argument("--past-peak", type=int, default=None,
                        help="reference runs: end once the PSNR has not improved for this many "
                             "iterations")
    parser.add_argument("--report", action="store_true", help="write the table and the plot")
    parser.add_argument("--step-costs", action="store_true",
                        help="measure the CPU time per step of --presets, taking turns")
    parser.add_argument("--presets", default="paper,auto", help="with --step-costs")
    parser.add_argument("--rounds", type=int, default=5, help="with --step-costs")
    parser.add_argument("--round-seconds", type=float, default=20.0,
                        help="with --step-costs: seconds of steps per preset and round")
    args = parser.parse_args()
    if args.report:
        report()
    elif args.step_costs:
        if not missing_data():
            measure_step_costs(args)
    elif not missing_data():
        measure(args)


if __name__ == "__main__":
    main()
