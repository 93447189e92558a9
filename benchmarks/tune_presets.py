"""Candidate settings for preset "fast": PSNR against iteration on tuning images.

Runs each candidate (overrides on top of preset "paper", no stopping rule) on 128x128 centre
crops of Set12 images with Gaussian noise (sigma 25), and records the best PSNR of the
estimate, where it was reached, the seconds per iteration and the PSNR every 100 iterations.
Tuning images are Peppers (03) and Airplane (06); benchmarks/speed.py checks the chosen preset
on other images (House 02, Monarch 05).

    OMP_NUM_THREADS=1 python benchmarks/tune_presets.py --images 06,03 --cap 700 \\
        --candidates c32lr02,c16lr02,t16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import napari_dip
from napari_dip.presets import get_config
from napari_dip.engine.measures import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import DOCS, RESULTS, write_section  # noqa: E402
from speed import noisy_pair  # noqa: E402

START, END = "<!-- tune:start -->", "<!-- tune:end -->"
NO_STOP = dict(stopping="none")  # whole curves: the stopping rule is measured elsewhere
CANDIDATES = {
    "c32lr02": dict(channels_down=32, channels_up=32, learning_rate=0.02),
    "c32lr03e98": dict(channels_down=32, channels_up=32, learning_rate=0.03, ema_weight=0.98),
    "c32lr05n0e95": dict(channels_down=32, channels_up=32, learning_rate=0.05, reg_noise_std=0,
                         ema_weight=0.95),
    "c16lr02": dict(channels_down=16, channels_up=16, input_channels=16, learning_rate=0.02),
    "t16": dict(top_channels=16),
    # on top of preset fast, no stopping rule (measured when fast's average was "debiased")
    "fast": dict(),
    "fast_skip16": dict(channels_skip=16),
    "fast_lr03": dict(learning_rate=0.03),
    "fast_nearest": dict(upsample="nearest"),
    "fast_noise60": dict(reg_noise_std=1 / 60),
    "fast_scales4": dict(scales=4),
    "fast_nearest_lr03": dict(upsample="nearest", learning_rate=0.03),
    "fast_nearest_s4": dict(upsample="nearest", scales=4),
    "fast_nearest_skip16": dict(upsample="nearest", channels_skip=16),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="06,03")
    parser.add_argument("--cap", type=int, default=700)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--base", default="paper", help="the preset the candidates modify")
    parser.add_argument("--report", action="store_true", help="only rewrite the table")
    args = parser.parse_args()
    if args.report:
        return report()
    out = RESULTS / "tune_presets.jsonl"
    for name in args.candidates.split(","):
        for image in args.images.split(","):
            noisy, clean = noisy_pair(image, 0, args.crop)
            curve = [(s.elapsed, s.iteration, psnr(s.estimate, clean))
                     for s in napari_dip.iter_restore(noisy, preset=args.base, device="cpu",
                                                      max_iterations=args.cap, report_every=25,
                                                      **{**NO_STOP, **CANDIDATES[name]})]
            seconds, iteration, best = max(curve, key=lambda point: point[2])
            average = get_config(args.base, "denoise", **CANDIDATES[name]).ema_init
            line = dict(name=name, base=args.base, settings=CANDIDATES[name], image=image,
                        side=clean.shape[0], moving_average=average,
                        best=round(best, 2), best_iteration=iteration,
                        seconds_per_iteration=round(curve[-1][0] / curve[-1][1], 3),
                        every_100={c[1]: round(c[2], 2) for c in curve if c[1] % 100 == 0})
            print(json.dumps(line), flush=True)
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
    report()


def report() -> None:
    """The tuning table in docs/log.md, from benchmarks/results/tune_presets.jsonl."""
    rows = [json.loads(line) for line in (RESULTS / "tune_presets.jsonl").read_text().splitlines()]
    lines = ["", "| candidate | on top of | settings | output average | image | s / iteration | "
             "PSNR at 300 / 500 / 700 it. | best (iteration) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.get("base", "paper"), r["image"], r["name"])):
        at = r["every_100"]
        steps = " / ".join(f"{at[str(k)]:.2f}" if str(k) in at else "–" for k in (300, 500, 700))
        settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in r["settings"].items()) or "–"
        # rows before the average's start was recorded: "first (...)" text, or none (debiased)
        average = r.get("moving_average", "debiased")
        average = "first output" if average.startswith("first") else average
        lines.append(f"| {r['name']} | {r.get('base', 'paper')} | {settings} | {average} | "
                     f"{r['image']} | {r['seconds_per_iteration']:.3f} | {steps} | "
                     f"{r['best']:.2f} ({r['best_iteration']}) |")
    lines += ["", "```", "OMP_NUM_THREADS=1 python benchmarks/tune_presets.py --images 06,03 "
              "--cap 700  # and --cap 1200 for c32lr02",
              "OMP_NUM_THREADS=1 python benchmarks/tune_presets.py --base fast --images 06,03 "
              "--cap 1000 --candidates fast,fast_skip16,fast_lr03,fast_nearest,fast_noise60,"
              "fast_scales4",
              "OMP_NUM_THREADS=1 python benchmarks/tune_presets.py --base fast --images 06,03 "
              "--cap 800 --candidates fast_nearest_lr03,fast_nearest_s4,fast_nearest_skip16",
              "```"]
    write_section(START, END, "How preset fast was chosen", lines, page=DOCS / "log.md")


if __name__ == "__main__":
    main()
