"""What does Bayesian DIP (preset "bayesian", SGLD) return, and how does its posterior mean evolve?

For each image: one run of preset "bayesian" (with any ``--set`` overrides), recording at every
snapshot the PSNR against the clean image (used only to measure) of the estimate the run would
return there (the moving average before the burn-in ends, then the running posterior mean of
the sampled outputs) and of the network's current output. The result is the estimate at the
end of the run, what ``restore(..., preset="bayesian")`` returns with this seed.

Writes benchmarks/results/bayesian_*.json and a table in docs/benchmarks/bayesian.md; the
"Bayesian mean PSNR" column of the automatic-stopping table (benchmarks/stopping.py) reads the
runs of the preset as shipped from here.

    python benchmarks/bayesian.py --sets cbm3d9 --crop 64 --limit 9
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
from napari_dip.presets import get_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (PAGES, RESULTS, command_line, cpu_description, file_safe,  # noqa: E402
                             labelled, missing_data, parse_setting, write_table)
from stopping import cases, input_psnr  # noqa: E402

START, END = "<!-- bayesian:start -->", "<!-- bayesian:end -->"


def result_path(name: str, crop: int, label: str, seed: int) -> Path:
    """Where the run of preset ``label`` on image ``name`` cropped to ``crop`` is stored."""
    return RESULTS / (f"bayesian_{file_safe(name)}_{crop}_{file_safe(label, '-')}"
                      f"{f'_seed{seed}' if seed else ''}.json")


def shipped_results() -> dict[tuple[str, str], dict]:
    """The stored runs of preset "bayesian" as shipped (no overrides, seed 0), by image name and
    size (e.g. "64x64")."""
    results = (json.loads(path.read_text()) for path in sorted(RESULTS.glob("bayesian_*.json")))
    return {(r["name"], r["size"]): r for r in results if r["preset"] == "bayesian"}


def run(image, clean, task, kwargs, metric, seed, settings, every) -> dict:
    curve, start, cpu = [], time.perf_counter(), time.process_time()
    for snap in napari_dip.iter_restore(image, task=task, preset="bayesian", seed=seed,
                                        report_every=every, **kwargs, **settings):
        curve.append(dict(iteration=snap.iteration, estimate_psnr=metric(snap.estimate, clean),
                          output_psnr=metric(snap.image, clean),
                          sampled=snap.uncertainty is not None))
    config = snap.config
    best = max(curve, key=lambda p: p["estimate_psnr"])
    contrast = mean_std = None
    if snap.uncertainty is not None:  # None when the run ended before two samples
        mean_std = float(np.mean(snap.uncertainty))
    if "mask" in kwargs and mean_std is not None:  # how much more uncertain the missing pixels are
        missing = np.asarray(kwargs["mask"], dtype=bool)
        contrast = float(snap.uncertainty[missing].mean() / snap.uncertainty[~missing].mean())
    return dict(curve=curve, psnr=curve[-1]["estimate_psnr"], best_psnr=best["estimate_psnr"],
                best_iteration=best["iteration"], iterations=snap.iteration,
                burn_in=config.burn_in, sgld_noise=config.sgld_noise,
                weight_noise=snap.weight_noise / config.learning_rate,
                mean_uncertainty=mean_std, uncertainty_contrast=contrast,
                seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu,
                precision=snap.precision)


def write_doc() -> None:
    def row(r):
        return [r["name"], r["size"], r["preset"], f"{r.get('weight_noise', r['sgld_noise']):.2g}",
                f"{r['iterations']} ({r['burn_in']})", f"{r['psnr']:.2f}",
                f"{r['best_psnr']:.2f} ({r['best_iteration']})",
                f"{r['curve'][-1]['output_psnr']:.2f}",
                "–" if r["mean_uncertainty"] is None else f"{r['mean_uncertainty']:.4f}" + (
                    "" if r.get("uncertainty_contrast") is None
                    else f" ({r['uncertainty_contrast']:.2f}x on the missing pixels)"),
                f"{r['input_psnr']:.2f}", f"{r['cpu_seconds']:.0f}", f"`{r['command']}`"]

    def summary(results):
        groups: dict[tuple, list[dict]] = {}
        for r in results:
            groups.setdefault((r["set"], r["size"], r["preset"]), []).append(r)
        lines = ["", "| set | size | preset | images | mean input PSNR | mean posterior-mean "
                 "PSNR | CPU time |", "|---|---|---|---|---|---|---|"]
        for (group, size, preset), rs in sorted(groups.items()):
            lines.append(f"| {group} | {size} | {preset} | {len(rs)} | "
                         f"{np.mean([r['input_psnr'] for r in rs]):.2f} | "
                         f"{np.mean([r['psnr'] for r in rs]):.2f} | "
                         f"{sum(r['cpu_seconds'] for r in rs) / 60:.0f} min |")
        return lines

    write_table(START, END, "Bayesian DIP", "bayesian_*.json",
                ["image", "size", "preset", "weight noise (x learning rate)",
                 "iterations (burn-in)", "posterior mean PSNR (returned)",
                 "best estimate along the run (iteration)", "last output PSNR",
                 "mean posterior std", "input PSNR", "CPU s", "command"], row, summary,
                page=PAGES / "bayesian.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="cbm3d9", help="any of cbm3d9, inpaint11, set5, "
                                                         "set14, fmd")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--limit", type=int, default=9, help="images per set")
    parser.add_argument("--images", default=None,
                        help="comma-separated parts of image names: run only those images")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a config override on top of the preset (a candidate); repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=50, help="PSNR every N iterations")
    args = parser.parse_args(argv)
    if missing_data():
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = command_line("bayesian.py", argv)
    settings = dict(parse_setting(text) for text in args.set)
    get_config("bayesian", "denoise", None, **settings)  # a misspelt override fails here
    label = labelled("bayesian", settings)
    for group, name, task, image, clean, kwargs, metric in cases(args.sets.split(","), args.crop,
                                                                 args.limit, args.seed):
        if args.images and not any(part in name for part in args.images.split(",")):
            continue
        print(f"{name}: {task}, {image.shape}, {label}", flush=True)
        result = run(image, clean, task, kwargs, metric, args.seed, settings, args.every)
        result.update(set=group, name=name, size="x".join(map(str, clean.shape[:2])),
                      preset=label + (f", seed {args.seed}" if args.seed else ""),
                      command=command, input_psnr=input_psnr(image, clean, task, metric),
                      machine=f"{cpu_description()}, torch {torch.__version__}")
        print(f"  {result['psnr']:.2f} dB after {result['iterations']} iterations (best "
              f"{result['best_psnr']:.2f} at {result['best_iteration']}), "
              f"{result['cpu_seconds']:.0f} s of CPU", flush=True)
        result_path(name, args.crop, label, args.seed).write_text(json.dumps(result, indent=1))
        write_doc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
