"""How close does automatic stopping come to the best iteration? And what does Bayesian DIP give?

For each image: one long run with the stopping rule watching but not stopping (patience set
beyond the cap), recording the PSNR of the estimate against the clean image at every snapshot
(the clean image is used only to measure). From the rule's best iteration as it evolved we read
off where the rule, with the preset's patience, would have stopped and the PSNR of the estimate
it would have returned; beside it, the peak PSNR of the run and its iteration. The table's
"Bayesian mean PSNR" column reads the run of preset "bayesian" on the same image from
benchmarks/bayesian.py, which measures it.

Writes benchmarks/results/stopping_*.json and tables in docs/benchmarks/stopping.md and
tiling.md; ``--plot`` redraws the figure docs/images/stopping_curves.png from the stored runs it
names (a long run does not replace the figure the docs describe).

    python benchmarks/stopping.py --sets cbm3d9,inpaint11,set5,fmd --crop 128 --limit 2
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
from napari_dip.engine.measures import psnr
from napari_dip.engine.tiling import plan_tiles

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (DATA, DOCS, PAGES, RESULTS, center_crop, command_line,  # noqa: E402
                             cpu_description, file_safe, labelled, load, missing_data,
                             parse_setting, psnr_y, resized, with_gaussian_noise, write_table)

START, END = "<!-- stopping:start -->", "<!-- stopping:end -->"
TILED_START, TILED_END = "<!-- stopping-tiled:start -->", "<!-- stopping-tiled:end -->"
PLOT = DOCS / "images" / "stopping_curves.png"
ESTIMATES = RESULTS / "estimates"
"""The estimate each run returned (not kept in git: megabytes per full-size image)."""


def fmd_pairs(crop: int, limit: int):
    """(name, noisy, clean) of the FMD confocal pairs: one raw frame and the 50-frame average,
    float32 in [0, 1], centre-cropped to ``crop`` (0: whole)."""
    import tifffile

    folder = DATA / "microscopy" / "fmd_confocal"
    for path in sorted((folder / "Confocal").glob("*.tif"))[:limit]:
        clean = center_crop(tifffile.imread(path).astype(np.float32) / 255, crop)
        noisy = center_crop(tifffile.imread(folder / "Confocal_gaussianpoisson" / path.name)
                            .astype(np.float32) / 255, crop)
        yield path.stem, noisy, clean


def cases(sets: list[str], crop: int, limit: int, seed: int):
    """(set, name, task, degraded, clean, kwargs, metric) for each selected image."""
    rng = np.random.default_rng(seed)
    if "cbm3d9" in sets:
        for path in sorted((DATA / "CBM3D9_color").glob("*.png"))[:limit]:
            clean = center_crop(load(path), crop)
            noisy = with_gaussian_noise(clean, rng)
            yield ("CBM3D9", f"{path.stem} σ=25", "denoise", noisy, clean, dict(channel_axis=-1),
                   psnr)
    if "inpaint11" in sets:
        for path in sorted((DATA / "DIP_inpaint11_gray").glob("*.png"))[:limit]:
            clean = center_crop(load(path, grey=True), crop)
            missing = rng.random(clean.shape) < 0.5
            damaged = np.where(missing, 0, clean).astype(np.float32)
            yield ("inpainting 11", f"{path.stem} 50 %", "inpaint", damaged, clean,
                   dict(mask=missing), psnr)
    for key, folder in (("set5", "Set5"), ("set14", "Set14")):
        if key not in sets:
            continue
        for path in sorted((DATA / folder).glob("*.bmp"))[:limit]:
            clean = center_crop(load(path), crop, multiple=4)
            h, w = clean.shape[:2]
            low = resized(clean, (h // 4, w // 4))
            yield (folder, f"{path.stem} x4", "super_resolve", low, clean,
                   dict(channel_axis=-1, factor=4), psnr_y)
    if "fmd" in sets:
        for stem, noisy, clean in fmd_pairs(crop, limit):
            yield ("FMD confocal", f"FMD {stem} (real noise)", "denoise", noisy, clean, {}, psnr)


def long_run(image, clean, task, kwargs, metric, preset, patience, cap, seed, settings):
    """The recorded run, and the estimate the rule with ``patience`` returns (what ``restore``
    with this seed gives). One fit of the whole image, also where the preset would tile it
    (``--tiled`` runs the tiles)."""
    curve, start, returned = [], time.perf_counter(), None
    for snap in napari_dip.iter_restore(image, task=task, preset=preset, seed=seed,
                                        max_iterations=cap, report_every=10, **kwargs,
                                        **{"tile_size": 0, **settings, "patience": 10 * cap}):
        curve.append(dict(iteration=snap.iteration, psnr=metric(snap.average, clean),
                          output_psnr=metric(snap.image, clean),
                          estimate_psnr=metric(snap.estimate, clean),
                          best_iteration=snap.best_iteration, criterion=snap.criterion))
        if returned is None and stops_here(curve[-1], patience):
            returned = snap.estimate
    seconds = time.perf_counter() - start
    return dict(curve=curve, seconds=seconds, precision=snap.precision,
                **where_it_stops(curve, patience)), \
        snap.estimate if returned is None else returned


def stops_here(point: dict, patience) -> bool:
    """Whether the rule with ``patience`` stops at this snapshot of a recorded run;
    ``patience`` may also be a function of the best iteration so far (another rule to try)."""
    best = point["best_iteration"]
    if best is None:
        return False
    return point["iteration"] - best >= (patience(best) if callable(patience) else patience)


def where_it_stops(curve: list[dict], patience) -> dict:
    """Where the rule with ``patience`` would have stopped the recorded run, what it returned
    there, and the run's peak."""
    stop = next((p for p in curve if stops_here(p, patience)), curve[-1])
    peak = max(curve, key=lambda p: p["psnr"])
    return dict(patience=patience, stop_iteration=stop["iteration"],
                stop_psnr=stop["estimate_psnr"], peak_psnr=peak["psnr"],
                peak_iteration=peak["iteration"], stopped_before_cap=stop is not curve[-1])


def write_doc() -> None:
    from bayesian import shipped_results  # which imports this module

    bayesian_runs = shipped_results()

    def row(r):
        bayesian = bayesian_runs.get((r["name"], r["size"]))
        bayes = "–" if bayesian is None else f"{bayesian['psnr']:.2f}"
        command = f"`{r['command']}`"
        if bayesian is not None:
            command += f"; Bayesian: `{bayesian['command']}`"
        if "second_run" in r:
            command += f"; then `{r['second_run']['command']}`"
        two = "–" if "second_run" not in r else f"{r['second_run']['average_psnr']:.2f}"
        stop = f"{r['stop_iteration']}" + ("" if r["stopped_before_cap"] else " (cap)")
        return [r["name"], r["size"], f"{r['preset']} ({r['rule']})", stop,
                f"{r['stop_psnr']:.2f}", f"{r['peak_psnr']:.2f} ({r['peak_iteration']})",
                f"{r['peak_psnr'] - r['stop_psnr']:.2f}", two, bayes, f"{r['input_psnr']:.2f}",
                command]

    def summary(results):
        groups: dict[tuple, list[dict]] = {}
        for r in results:
            groups.setdefault((r["set"], r["size"], r["preset"], r["rule"]), []).append(r)
        lines = ["", "| set | size | preset (rule) | images | mean input PSNR | mean PSNR "
                 "returned | within 0.5 dB of the peak | mean gap | largest gap |",
                 "|---|---|---|---|---|---|---|---|---|"]

        def order(item):  # by set, then smaller crops first
            group, size, preset, rule = item[0]
            return group, int(size.split("x")[0]), preset, rule

        for (group, size, preset, rule), runs in sorted(groups.items(), key=order):
            gaps = [r["peak_psnr"] - r["stop_psnr"] for r in runs]
            lines.append(f"| {group} | {size} | {preset} ({rule}) | {len(runs)} | "
                         f"{np.mean([r['input_psnr'] for r in runs]):.2f} | "
                         f"{np.mean([r['stop_psnr'] for r in runs]):.2f} | "
                         f"{sum(g <= 0.5 for g in gaps)} | {np.mean(gaps):.2f} | "
                         f"{max(gaps):.2f} |")
        return lines

    write_table(START, END, "Automatic stopping", "stopping_*.json",
                ["image", "size", "preset (rule)", "stop iteration", "PSNR at stop",
                 "peak PSNR (iteration)", "gap", "two runs averaged", "Bayesian mean PSNR",
                 "input PSNR", "command"],
                row, summary, page=PAGES / "stopping.md")


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(results))
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.flat, results):
        its = [p["iteration"] for p in r["curve"]]
        ax.plot(its, [p["psnr"] for p in r["curve"]], label="estimate (moving average)")
        ax.plot(its, [p["output_psnr"] for p in r["curve"]], lw=0.6, alpha=0.6, label="output")
        stop = next(p for p in r["curve"] if p["iteration"] == r["stop_iteration"])
        ax.axvline(r["stop_iteration"], color="r", ls="--", label="rule stops")
        ax.plot([stop["best_iteration"]], [r["stop_psnr"]], "ro", label="estimate returned")
        ax.axvline(r["peak_iteration"], color="g", ls=":", label="peak")
        ax.set_title(f"{r['name']} ({r['rule']})", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("PSNR (dB)")
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def input_psnr(image, clean, task, metric) -> float:
    """The degraded input's PSNR; super-resolution's baseline is the input enlarged by Lanczos
    interpolation."""
    degraded = image if task != "super_resolve" else resized(image, clean.shape[:2])
    return metric(degraded, clean)


def second_run(out, image, clean, task, kwargs, metric, args, cap, settings, command) -> None:
    """A second run on the stored run's degraded image (the network and its code seeded
    seed + 1, stopped by the rule, the same cap), averaged with the stored run's returned
    estimate: what ``n_runs=2`` returns. With ``--tiled``, of the stored run in tiles."""
    stem = f"tiled{args.tiled}_{out.stem}" if args.tiled else out.stem
    stored, first = RESULTS / f"{stem}.json", ESTIMATES / f"{stem}.npy"
    if not (stored.exists() and first.exists()):
        print(f"{stem}: no stored run with its estimate; run it first without --second-run")
        return
    result = json.loads(stored.read_text())
    if args.tiled:
        estimate, tiles, seconds = fit_in_tiles(image, task, kwargs, args, cap, settings,
                                                args.seed + 1)
        run, alone = dict(tile_iterations=tiles, cpu_seconds=seconds), result["psnr"]
    else:
        start = time.perf_counter()
        for snap in napari_dip.iter_restore(image, task=task, preset=args.preset,
                                            seed=args.seed + 1, max_iterations=cap, **kwargs,
                                            **settings):
            pass
        estimate, alone = snap.estimate, result["stop_psnr"]
        run = dict(iteration=snap.iteration, stopped=snap.stopped,
                   seconds=time.perf_counter() - start)
    average = (np.load(first) + estimate) / 2
    result.update(second_run=dict(psnr=metric(estimate, clean), **run,
                                  average_psnr=metric(average, clean), command=command))
    print(f"{result['name']}: second run {result['second_run']['psnr']:.2f} dB, two runs "
          f"averaged {result['second_run']['average_psnr']:.2f} dB (the first alone "
          f"{alone:.2f} dB)", flush=True)
    stored.write_text(json.dumps(result, indent=1))
    write_tiled_doc() if args.tiled else write_doc()


def tiling(side: int) -> dict:
    """The settings of ``--tiled SIDE``: tiles of SIDE pixels whatever the image's size."""
    return dict(tile_size=side, tile_above=0)


def fit_in_tiles(image, task, kwargs, args, cap, settings, seed):
    """Restore ``image`` in tiles of ``args.tiled``, each stopped by the rule: the estimate, the
    iterations each tile ran and the CPU seconds."""
    start, tiles, last = time.process_time(), [], None
    for snap in napari_dip.iter_restore(image, task=task, preset=args.preset, seed=seed,
                                        max_iterations=cap, **tiling(args.tiled), **kwargs,
                                        **settings):
        if last is not None and snap.tile != last.tile:
            tiles.append(last.iteration)
        last = snap
    tiles.append(last.iteration)
    return last.estimate, tiles, time.process_time() - start


def tiled_run(out, group, name, image, clean, task, kwargs, metric, args, cap, settings,
              command) -> None:
    """The image restored in tiles of ``args.tiled`` pixels, each stopped by the rule; its
    estimate is kept for a second run (``--second-run``)."""
    config = get_config(args.preset, task, kwargs.get("factor"), **settings,
                        **tiling(args.tiled))
    plan = plan_tiles(image.shape[:2], config.tile_size, config.tile_overlap, config.tile_above)
    estimate, tiles, seconds = fit_in_tiles(image, task, kwargs, args, cap, settings, args.seed)
    stem = f"tiled{args.tiled}_{out.stem}"
    ESTIMATES.mkdir(parents=True, exist_ok=True)
    np.save(ESTIMATES / f"{stem}.npy", estimate.astype(np.float32))
    result = dict(set=group, name=name, size="x".join(map(str, clean.shape[:2])), crop=args.crop,
        preset=labelled(args.preset, settings), tile_size=args.tiled,
        tile_shape=list(plan[0].shape), tile_iterations=tiles,
        psnr=metric(estimate, clean), cpu_seconds=seconds,
        input_psnr=input_psnr(image, clean, task, metric), command=command, whole=out.name,
        machine=f"{cpu_description()}, torch {torch.__version__}")
    print(f"{name}: {len(tiles)} tiles of {args.tiled}, {result['psnr']:.2f} dB, "
          f"{result['cpu_seconds']:.0f} s of CPU", flush=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
    write_tiled_doc()


def tiled_work(r: dict) -> float:
    """A tiled run's work in Mpx-it.: its tiles' iterations times their pixels. Runs from before
    ``tile_shape`` was recorded had tiles of ``tile_size`` or, along a shorter side, that side."""
    sides = r.get("tile_shape") or [min(r["tile_size"], int(side))
                                     for side in r["size"].split("x")]
    return sum(r["tile_iterations"]) * sides[0] * sides[1] / 1e6


def whole_fit(r: dict) -> dict | None:
    """The long run (one fit of the whole image) beside a tiled run, with its work in Mpx-it.
    (the long run's wall time is no measure of the fit's cost: it also computes PSNRs and
    shared the cores with other jobs); None if it was not run."""
    path = RESULTS / r["whole"]
    if not path.exists():
        return None
    w = json.loads(path.read_text())
    height, width = map(int, r["size"].split("x"))
    return {**w, "work": w["stop_iteration"] * height * width / 1e6}


def write_tiled_doc() -> None:
    def row(r):
        w = whole_fit(r)
        untiled = "–" if w is None else (
            f"{w['stop_psnr']:.2f} dB, stopped at {w['stop_iteration']}"
            f"{'' if w['stopped_before_cap'] else ' (cap)'}: {w['work']:.0f} Mpx-it.")
        work = tiled_work(r)
        return [r["name"], r["size"], r["preset"], f"{r['input_psnr']:.2f}", untiled,
                f"{r['psnr']:.2f} dB, {len(r['tile_iterations'])} "
                f"tile{'s' if len(r['tile_iterations']) > 1 else ''} of {r['tile_size']} "
                f"({min(r['tile_iterations'])} to {max(r['tile_iterations'])} iterations): "
                f"{work:.0f} Mpx-it., {r['cpu_seconds']:.0f} s of CPU", two_runs(r),
                f"`{r['command']}`"]

    def two_runs(r):
        second = r.get("second_run")
        if second is None:
            return "–"
        return (f"{second['average_psnr']:.2f} dB (the second alone {second['psnr']:.2f} dB, "
                f"{second['cpu_seconds']:.0f} s of CPU; `{second['command']}`)")

    def summary(results):
        # the set's mean for each preset and tile size: the figure the published tables give;
        # and, over the images also fitted whole, both means and the tiles' work over the whole
        # fit's
        groups: dict[tuple, list[dict]] = {}
        # runs on centre crops (``--crop``) are a set of their own; runs from before ``crop``
        # was recorded were on whole images
        for r in results:
            crop = r.get("crop", 0)
            name = f"{r['set']}, centre crops of {crop}" if crop else r["set"]
            groups.setdefault((name, r["preset"], r["tile_size"]), []).append(r)
        lines = ["", "| set | preset | tiles of | images | mean input PSNR | mean PSNR | CPU time "
                 "| also fitted whole: mean PSNR whole, in tiles; work in tiles / whole "
                 "| also run twice: mean PSNR of one run, of two runs averaged (gain per "
                 "image; CPU time) |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for (name, preset, side), rs in sorted(groups.items()):
            pairs = [(r, whole_fit(r)) for r in rs]
            pairs = [(r, w) for r, w in pairs if w is not None]
            both = "–"
            if pairs:
                ratios = [tiled_work(r) / w["work"] for r, w in pairs]
                both = (f"{len(pairs)}: {np.mean([w['stop_psnr'] for _, w in pairs]):.2f} dB, "
                        f"{np.mean([r['psnr'] for r, _ in pairs]):.2f} dB; "
                        f"{min(ratios):.2f} to {max(ratios):.2f}")
            twice = [r for r in rs if "second_run" in r]
            two = "–"
            if twice:
                gains = [r["second_run"]["average_psnr"] - r["psnr"] for r in twice]
                two = (f"{len(twice)}: {np.mean([r['psnr'] for r in twice]):.2f} dB, "
                       f"{np.mean([r['second_run']['average_psnr'] for r in twice]):.2f} dB "
                       f"({min(gains):+.2f} to {max(gains):+.2f} dB; second runs "
                       f"{sum(r['second_run']['cpu_seconds'] for r in twice) / 3600:.1f} h "
                       "of CPU)")
            lines.append(f"| {name} | {preset} | {side} | {len(rs)} | "
                         f"{np.mean([r['input_psnr'] for r in rs]):.2f} | "
                         f"{np.mean([r['psnr'] for r in rs]):.2f} | "
                         f"{sum(r['cpu_seconds'] for r in rs) / 3600:.1f} h | {both} | "
                         f"{two} |")
        return lines

    write_table(TILED_START, TILED_END, "Automatic stopping: whole images in tiles",
                "tiled*_stopping_*.json",
                ["image", "size", "preset", "input PSNR", "whole image in one fit (the long run)",
                 "in tiles, each stopped by the rule", "two runs averaged (n_runs=2)", "command"],
                row, summary, page=PAGES / "tiling.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="cbm3d9,inpaint11,set5,fmd",
                        help="any of cbm3d9, inpaint11, set5, set14, fmd")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--limit", type=int, default=2, help="images per set")
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--cap", type=int, default=None, help="iterations of the long run")
    parser.add_argument("--stopping", default=None, choices=["variance", "holdout"],
                        help="override the preset's stopping rule")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a config override on top of the preset (a candidate); repeatable")
    parser.add_argument("--images", default=None,
                        help="comma-separated parts of image names: run only those images")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the noise (CBM3D9), the inpainting mask, the network and "
                             "its input code; runs with another seed than 0 are kept apart")
    parser.add_argument("--second-run", action="store_true",
                        help="do not run long: for each stored run of these arguments, restore "
                             "the same degraded image once more with the preset as it stands "
                             "(the network and its code seeded with seed + 1, stopped by the "
                             "rule, the same cap) and average its result with the stored run's "
                             "returned estimate, as n_runs=2 does; with --tiled, of the stored "
                             "run in tiles")
    parser.add_argument("--tiled", type=int, default=0, metavar="SIDE",
                        help="do not run long: restore each image with the preset as it stands "
                             "(stopped by the rule, the same cap per tile) in overlapping tiles "
                             "of SIDE pixels, whatever the image's size (tile_above=0), and "
                             "record the result's PSNR and CPU time beside the whole-image run; "
                             "its estimate is kept for --second-run")
    parser.add_argument("--restop", action="store_true",
                        help="do not run: read where the rule stops again from the stored runs "
                             "of these arguments, with the preset's current patience (the run "
                             "itself does not depend on the patience, so this is what running "
                             "the same command again would give)")
    parser.add_argument("--what-if-patience", type=int, default=None, metavar="N",
                        help="with --restop: only print where the rule with a patience of N "
                             "would have stopped the stored runs; nothing is written")
    parser.add_argument("--plot", default=None, metavar="RESULT,...",
                        help="only redraw the plot from these stored results (names in "
                             "benchmarks/results without the .json), then exit")
    args = parser.parse_args(argv)
    if args.plot:
        plot([json.loads((RESULTS / f"{stem}.json").read_text())
              for stem in args.plot.split(",")])
        return 0
    if missing_data():
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = command_line("stopping.py", argv)
    settings = dict(parse_setting(text) for text in args.set)
    if args.tiled and tiling(args.tiled).keys() & settings.keys():
        parser.error("--tiled SIDE sets the tiles itself (tiles of SIDE pixels, whatever the "
                     "image's size); drop --set tile_size= and --set tile_above=")
    label = labelled(args.preset, settings)
    if args.stopping:  # the rule is a column of its own, not part of the label
        settings["stopping"] = args.stopping
    # a run's file name: the image and rule (per case below), then preset, overrides and seed
    extra = "".join("_" + file_safe(text, "-") for text in args.set)
    if args.preset != "auto":
        extra = f"_{args.preset}{extra}"
    if args.seed:  # other seeds are other runs: their own rows, groups and files
        label += f", seed {args.seed}"
        extra += f"_seed{args.seed}"
    plotted = []
    for group, name, task, image, clean, kwargs, metric in cases(args.sets.split(","), args.crop,
                                                          args.limit, args.seed):
        if args.images and not any(part in name for part in args.images.split(",")):
            continue
        config = get_config(args.preset, task, kwargs.get("factor"), **settings)
        cap = args.cap or config.max_iterations
        slug = file_safe(name)
        out = RESULTS / f"stopping_{slug}_{args.crop}_{config.stopping}{extra}.json"
        if args.restop:
            if not out.exists():
                print(f"{name}: no stored run {out.name}; run it first without --restop")
                continue
            result = json.loads(out.read_text())
            before = result["stop_iteration"], result["patience"]
            patience = args.what_if_patience or config.patience
            result.update(where_it_stops(result["curve"], patience))
            print(f"{name}: patience {before[1]} -> {patience}, stop {before[0]} -> "
                  f"{result['stop_iteration']}"
                  f"{'' if result['stopped_before_cap'] else ' (cap)'} at "
                  f"{result['stop_psnr']:.2f} dB, peak {result['peak_psnr']:.2f} dB")
            if args.what_if_patience:
                continue
            out.write_text(json.dumps(result, indent=1))
            write_doc()
            continue
        if args.second_run:
            second_run(out, image, clean, task, kwargs, metric, args, cap, settings, command)
            continue
        if args.tiled:
            tiled_run(out, group, name, image, clean, task, kwargs, metric, args, cap, settings,
                      command)
            continue
        print(f"{name}: {task}, {image.shape}, cap {cap}", flush=True)
        result, returned = long_run(image, clean, task, kwargs, metric, args.preset,
                                    config.patience, cap, args.seed, settings)
        ESTIMATES.mkdir(parents=True, exist_ok=True)  # for a second run's average (--second-run)
        np.save(ESTIMATES / f"{out.stem}.npy", returned.astype(np.float32))
        result.update(set=group, name=name, size="x".join(map(str, clean.shape[:2])), preset=label,
                      rule=config.stopping, command=command,
                      machine=f"{cpu_description()}, torch {torch.__version__}",
                      input_psnr=input_psnr(image, clean, task, metric))
        print(f"  stop {result['stop_iteration']} at {result['stop_psnr']:.2f} dB, peak "
              f"{result['peak_psnr']:.2f} at {result['peak_iteration']}, "
              f"{result['seconds']:.0f} s", flush=True)
        out.write_text(json.dumps(result, indent=1))
        plotted.append(out.stem)
        write_doc()
    if plotted:
        print("to draw these runs: python benchmarks/stopping.py --plot "
              + ",".join(plotted[:6]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
