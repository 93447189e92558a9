"""Run the Deep Image Prior paper's protocols with preset "paper" and record PSNR against ground
truth.

Protocols (../shared/data/SOURCES.md):
- denoising: image in [0, 1], noisy = clip(img + N(0, 25/255), 0, 1), PSNR on [0, 1] RGB;
- inpainting: a Bernoulli mask keeping 50 % of the pixels, PSNR against the full clean image;
- super-resolution: HR cropped to a multiple of the factor, LR by an antialiased Lanczos
  downscale, PSNR on the Y channel (BT.601) with 4 px shaved at the border.

The clean image is used only to measure. Every run records the PSNR of the estimate at every
snapshot, so the table shows the PSNR at the paper's iteration count and the best PSNR on the way.

Usage (results go to benchmarks/results/*.json and a table in docs/benchmarks/paper.md):

    python benchmarks/reproduce_paper.py                      # the CPU set below
    python benchmarks/reproduce_paper.py --runs f16 --crop 0  # full-size F16 (GPU)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import napari_dip
from napari_dip.engine.measures import psnr

ROOT = Path(__file__).resolve().parents[1]
# NAPARI_DIP_DATA points elsewhere, e.g. at a copy of the data taken to another machine
DATA = Path(os.environ.get("NAPARI_DIP_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
PAGES = DOCS / "benchmarks"  # one page per subject; each script writes its tables to one
START, END = "<!-- reproduce_paper:start -->", "<!-- reproduce_paper:end -->"
SIGMA = 25 / 255


def with_gaussian_noise(clean: np.ndarray, rng: np.random.Generator,
                        sigma: float = SIGMA) -> np.ndarray:
    """The denoising protocol's input: ``clip(clean + N(0, sigma), 0, 1)`` as float32."""
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)


def cpu_description() -> str:
    """The processor's model name and whether it computes bfloat16 natively (as the package's
    ``precision="auto"`` decides it): the presets' relative speeds differ between processors, so
    a timing is only compared with one from the same CPU."""
    from napari_dip.engine.device import cpu_has_native_bfloat16

    model = platform.processor() or platform.machine()
    try:
        names = [line.partition(":")[2].strip() for line in
                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model}, {'native bfloat16' if cpu_has_native_bfloat16() else 'no native bfloat16'}"


def command_line(script: str, argv: list[str] | None = None) -> str:
    """How a benchmark was run, recorded beside its results."""
    arguments = sys.argv[1:] if argv is None else argv
    return f"python benchmarks/{script} {' '.join(arguments)}".strip()


def missing_data() -> bool:
    """True (after saying so) when the evaluation data are not there."""
    if DATA.is_dir():
        return False
    print(f"evaluation data not found at {DATA}", file=sys.stderr)
    return True


def parse_setting(text: str) -> tuple[str, object]:
    """``name=value`` -> a config override (numbers parsed, anything else kept as text)."""
    name, _, value = text.partition("=")
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def file_safe(text: str, fill: str = "_") -> str:
    """``text`` for a result's file name: each character other than a letter or digit becomes
    ``fill``."""
    return "".join(c if c.isalnum() else fill for c in text)


def labelled(name: str, settings: dict) -> str:
    """A method's label in results, tables and file names: its name and each override, e.g.
    ``fast+top_channels=0``."""
    return name + "".join(f"+{key}={value}" for key, value in settings.items())


def load(path: Path, grey: bool = False) -> np.ndarray:
    image = Image.open(path).convert("L" if grey else "RGB")
    return np.asarray(image, dtype=np.float32) / 255.0


def center_crop(image: np.ndarray, side: int, multiple: int = 32) -> np.ndarray:
    """Crop to ``side`` (0: the whole image) and to a multiple of ``multiple``, centred."""
    h, w = image.shape[:2]
    th, tw = (h, w) if side == 0 else (min(side, h), min(side, w))
    th, tw = th - th % multiple, tw - tw % multiple
    top, left = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(image[top:top + th, left:left + tw])


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 0..255 scale, as MATLAB's rgb2ycbcr."""
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def psnr_y(estimate: np.ndarray, clean: np.ndarray, shave: int = 4) -> float:
    a, b = y_channel(np.clip(estimate, 0, 1)), y_channel(clean)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    return psnr(a, b, data_range=255.0)


# ------------------------------------------------------------------------------ the runs

def run_f16(args):
    clean = center_crop(load(DATA / "dip_paper/denoising/F16_GT.png"), args.crop)
    rng = np.random.default_rng(args.seed)
    noisy = with_gaussian_noise(clean, rng)
    return dict(name="F16 denoising, sigma 25", task="denoise", image=noisy, clean=clean,
                kwargs=dict(channel_axis=-1), iterations=3000, metric=psnr,
                input_psnr=psnr(noisy, clean),
                paper="31.3 dB peak near 1600 it., 28.5 dB at 3000 it. (the paper's own code on "
                      "a 256x256 crop, measured by the project on a 2-core CPU)")


def run_barbara(args):
    clean = center_crop(load(DATA / "DIP_inpaint11_gray/barbara.png", grey=True), args.crop)
    rng = np.random.default_rng(args.seed)
    missing = rng.random(clean.shape) < 0.5
    damaged = np.where(missing, 0.0, clean).astype(np.float32)
    return dict(name="Barbara inpainting, 50 % Bernoulli", task="inpaint", image=damaged,
                clean=clean, kwargs=dict(mask=missing), iterations=6000, metric=psnr,
                input_psnr=psnr(damaged, clean), paper="32.22 dB (full 512x512 image)")


def resized(image: np.ndarray, size: tuple[int, int], resample=Image.LANCZOS) -> np.ndarray:
    """A [0, 1] image resized to ``size`` (rows, columns) through 8 bits, as the super-resolution
    protocols make their low-resolution inputs and baselines."""
    pixels = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    return np.asarray(pixels.resize(size[::-1], resample), np.float32) / 255


def run_set5(args, name="butterfly"):
    factor = 4
    clean = center_crop(load(DATA / f"Set5/{name}_GT.bmp"), args.crop, multiple=factor)
    h, w = clean.shape[:2]
    low = resized(clean, (h // factor, w // factor))
    bicubic = resized(low, (h, w), Image.BICUBIC)
    return dict(name=f"Set5 {name} x4 super-resolution (Y, shave 4)", task="super_resolve",
                image=low, clean=clean, kwargs=dict(channel_axis=-1, factor=factor),
                iterations=2000, metric=psnr_y, input_psnr=psnr_y(bicubic, clean),
                input_label="bicubic",
                paper="Set5 average 29.90 dB (bicubic 28.43) on full images")


RUNS = {"f16": run_f16, "barbara": run_barbara, "set5": run_set5}


def measure(spec: dict, args) -> dict:
    iterations = args.iterations or spec["iterations"]
    curve, start = [], time.perf_counter()
    final = None
    for snap in napari_dip.iter_restore(spec["image"], task=spec["task"], preset="paper",
                                        seed=args.seed, device=args.device,
                                        max_iterations=iterations, report_every=args.every,
                                        **spec["kwargs"]):
        value = spec["metric"](snap.estimate, spec["clean"])
        curve.append((snap.iteration, round(value, 3), round(snap.elapsed, 1)))
        print(f"  {spec['name']}: it {snap.iteration:5d}  PSNR {value:6.2f}  "
              f"{snap.elapsed:7.1f} s", flush=True)
        final = snap
    best = max(curve, key=lambda point: point[1])
    return dict(name=spec["name"], task=spec["task"], shape=list(spec["clean"].shape),
                crop=args.crop, iterations=iterations, paper_iterations=spec["iterations"],
                input_psnr=round(spec["input_psnr"], 2),
                input_label=spec.get("input_label", "input"),
                final_psnr=curve[-1][1], best_psnr=best[1], best_iteration=best[0],
                seconds=round(time.perf_counter() - start, 1), device=final.device,
                paper=spec["paper"], curve=curve)


def write_doc() -> None:
    """Rewrite the table in docs/benchmarks/paper.md from every stored result."""
    def row(r):
        return [r["name"], "x".join(str(s) for s in r["shape"][:2]),
                f"{r['iterations']} ({r['paper_iterations']})",
                f"{r['input_psnr']:.2f} ({r['input_label']})", f"{r['final_psnr']:.2f}",
                f"{r['best_psnr']:.2f} ({r['best_iteration']})", f"{r['seconds'] / 60:.1f} min",
                r["machine"], r["paper"], f"`{r['command']}`"]

    write_table(START, END, "Reproducing the paper", "paper_*.json",
                ["run", "size", "iterations (paper's)", "input PSNR", "PSNR at end",
                 "best PSNR (iteration)", "time", "machine", "paper", "command"], row,
                page=PAGES / "paper.md")


def write_table(start: str, end: str, heading: str, pattern: str, columns: list[str],
                row, summary=None, *, page: Path) -> None:
    """A Markdown table with a ``row(result)`` per stored result matching ``pattern``, after
    the lines ``summary(results)`` gives (if any)."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]
    lines = [] if summary is None else summary(results)
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    write_section(start, end, heading, lines, page=page)


def write_section(start: str, end: str, heading: str, lines: list[str], *, page: Path) -> None:
    """Replace the block between ``start`` and ``end`` in the docs ``page`` (or append it under
    ``heading``), leaving the rest of the page as it is."""
    block = "\n".join([start, *lines, "", end])
    text = page.read_text() if page.exists() else f"# {heading}\n"
    if start in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    page.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="f16,barbara,set5",
                        help=f"comma-separated subset of {sorted(RUNS)}")
    parser.add_argument("--crop", type=int, default=256,
                        help="centre-crop side in pixels (0: full image); default 256")
    parser.add_argument("--iterations", type=int, default=None,
                        help="override the paper's iteration count (a shorter run)")
    parser.add_argument("--every", type=int, default=50, help="PSNR every N iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if missing_data():
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = command_line("reproduce_paper.py", argv)
    machine = (f"{cpu_description()}, {platform.system()}, torch {torch.__version__}, "
               f"napari-dip {napari_dip.__version__}")
    for key in args.runs.split(","):
        spec = RUNS[key](args)
        print(f"{spec['name']}: {spec['clean'].shape}, input PSNR {spec['input_psnr']:.2f}")
        result = measure(spec, args)
        result.update(command=command, machine=machine)
        (RESULTS / f"paper_{key}_{args.crop}.json").write_text(json.dumps(result, indent=1))
        write_doc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
