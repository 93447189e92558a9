"""Does the learned starting point (``init="learned"``) beat random weights under preset auto?

For each image and seed, preset auto denoises it twice, from random weights and from the
learned ones, side by side in one process. Each run is the preset's own (its hold-out rule,
patience and cap), followed past its stop for ``--after`` more iterations so that a later,
higher peak would show. Per run: the PSNR of the estimate the rule returns, the iteration it
took that estimate from and the iteration it stopped at, the CPU seconds up to the stop (minus
this script's own measuring), and the peak PSNR of the moving-average estimate over the whole
recorded run (the automatic stop should stay within 0.5 dB of it). The clean images are used
only to measure.

Images: 128x128 centre crops of the five FMD confocal pairs (real noise) and, with
``--sets cbm3d9 --limit 4``, of the first four CBM3D9 images in greyscale with sigma=25
Gaussian noise (give that run its own ``--out``). Writes ``--out`` (JSON) and prints the
table of docs/benchmarks/learned-init.md::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/learned_init.py --sets fmd
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
from napari_dip.presets import get_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (DATA, RESULTS, center_crop, command_line,  # noqa: E402
                             cpu_description, load, missing_data, with_gaussian_noise)
from stopping import fmd_pairs  # noqa: E402

INITS = ("random", "learned")


def cases(sets: list[str], crop: int, limit: int):
    """(name, noisy, clean) for each selected image, greyscale float32 in [0, 1]."""
    if "fmd" in sets:
        for stem, noisy, clean in fmd_pairs(crop, limit):
            yield f"FMD {stem}", noisy, clean
    if "cbm3d9" in sets:
        rng = np.random.default_rng(0)
        for path in sorted((DATA / "CBM3D9_color").glob("*.png"))[:limit]:
            clean = center_crop(load(path, grey=True), crop)
            yield f"CBM3D9 {path.stem} grey σ=25", with_gaussian_noise(clean, rng), clean


def one_run(noisy: np.ndarray, clean: np.ndarray, init: str, seed: int, after: int) -> dict:
    """Preset auto with ``init`` on ``noisy``, followed ``after`` iterations past its stop."""
    patience = get_config("auto", "denoise").patience
    measuring, stop, curve = 0.0, None, []
    start = time.process_time()
    runs = napari_dip.iter_restore(noisy, preset="auto", seed=seed, init=init, report_every=10,
                                   patience=10 ** 6)  # the rule watches; stopping is read off
    for snap in runs:
        begun = time.process_time()
        curve.append((snap.iteration, psnr(snap.average, clean)))
        if stop is None and snap.best_iteration is not None and \
                snap.iteration - snap.best_iteration >= patience:
            stop = dict(stop_iteration=snap.iteration, best_iteration=snap.best_iteration,
                        psnr=psnr(snap.estimate, clean), precision=snap.precision)
            stop["cpu_seconds"] = begun - start - measuring
        measuring += time.process_time() - begun
        if stop is not None and snap.iteration >= stop["stop_iteration"] + after or snap.done:
            break
    runs.close()
    if stop is None:  # the cap came first: the rule returns its best point so far
        stop = dict(stop_iteration=snap.iteration, best_iteration=snap.best_iteration,
                    psnr=psnr(snap.estimate, clean), precision=snap.precision,
                    cpu_seconds=time.process_time() - start - measuring)
    peak_iteration, peak = max(curve, key=lambda point: point[1])
    return dict(init=init, seed=seed, **stop, peak_psnr=peak, peak_iteration=peak_iteration,
                recorded_to=snap.iteration, within_half_db=bool(peak - stop["psnr"] <= 0.5))


def table(results: list[dict]) -> list[str]:
    """The markdown rows: each image and seed with its two runs side by side, then the means."""
    lines = ["| image | seed | input PSNR | PSNR random | PSNR learned | result from / stop "
             "random | result from / stop learned | CPU s random | CPU s learned | peak random "
             "(gap) | peak learned (gap) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a, b = r["random"], r["learned"]
        lines.append(
            f"| {r['name']} | {a['seed']} | {r['input_psnr']:.2f} | {a['psnr']:.2f} | "
            f"{b['psnr']:.2f} | {a['best_iteration']} / {a['stop_iteration']} | "
            f"{b['best_iteration']} / {b['stop_iteration']} | {a['cpu_seconds']:.1f} | "
            f"{b['cpu_seconds']:.1f} | {a['peak_psnr']:.2f} ({a['peak_psnr'] - a['psnr']:.2f}) | "
            f"{b['peak_psnr']:.2f} ({b['peak_psnr'] - b['psnr']:.2f}) |")

    def mean(init, key):
        return np.mean([r[init][key] for r in results])

    lines.append(
        f"| mean of {len(results)} | | {np.mean([r['input_psnr'] for r in results]):.2f} | "
        f"{mean('random', 'psnr'):.2f} | {mean('learned', 'psnr'):.2f} | "
        f"{mean('random', 'best_iteration'):.0f} / {mean('random', 'stop_iteration'):.0f} | "
        f"{mean('learned', 'best_iteration'):.0f} / {mean('learned', 'stop_iteration'):.0f} | "
        f"{mean('random', 'cpu_seconds'):.1f} | {mean('learned', 'cpu_seconds'):.1f} | "
        f"within 0.5 dB: {sum(r['random']['within_half_db'] for r in results)} of "
        f"{len(results)} | within 0.5 dB: {sum(r['learned']['within_half_db'] for r in results)}"
        f" of {len(results)} |")
    return lines


def verdict(results: list[dict]) -> dict:
    """The rule for making learned the default: mean PSNR not lower, no image lower by more than
    0.3 dB, fewer CPU seconds in total."""
    differences = [r["learned"]["psnr"] - r["random"]["psnr"] for r in results]
    seconds = {init: sum(r[init]["cpu_seconds"] for r in results) for init in INITS}
    return dict(mean_psnr_difference=float(np.mean(differences)),
                worst_psnr_difference=float(min(differences)),
                cpu_seconds=seconds,
                learned_better=bool(np.mean(differences) >= 0 and min(differences) >= -0.3
                                    and seconds["learned"] < seconds["random"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="fmd", help="comma-separated: fmd, cbm3d9")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--limit", type=int, default=5, help="images per set at most")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--after", type=int, default=100,
                        help="iterations recorded past each run's stop, to find its peak")
    parser.add_argument("--out", type=Path, default=RESULTS / "learned_init.json")
    args = parser.parse_args(argv)
    if missing_data():
        return 1
    results = []
    for name, noisy, clean in cases(args.sets.split(","), args.crop, args.limit):
        for seed in (int(s) for s in args.seeds.split(",")):
            row = dict(name=name, input_psnr=psnr(noisy, clean))
            for init in INITS:
                row[init] = one_run(noisy, clean, init, seed, args.after)
            results.append(row)
            print(table([row])[-1], flush=True)
    record = dict(command=command_line("learned_init.py", argv), cpu=cpu_description(),
                  torch=torch.__version__, threads=torch.get_num_threads(),
                  package_version=napari_dip.__version__, results=results,
                  verdict=verdict(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print("\n".join(table(results)))
    print(json.dumps(record["verdict"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
