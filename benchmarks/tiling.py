"""Tiled restoration of a large image on the CPU: time, peak memory, PSNR and seams.

The clean image is a mosaic of 512x512 greyscale photographs that scikit-image ships (camera,
astronaut, moon, brick, grass, gravel, ihc and the centre of retina, each once as it is and once
mirrored, so nothing is downloaded); the noisy input is ``clip(clean + N(0, 25/255), 0, 1)``. The
clean image is used only to measure. The run goes through :func:`napari_dip.iter_restore` with
``tile_size`` set, as the widget and the command line do, and reports:

- wall time and the process's peak resident memory (``ru_maxrss``);
- PSNR of the input and of the result;
- PSNR on a band of pixels along the tile edges inside the image (where an unblended mosaic
  would show seams) against the PSNR inside the tiles (pixels that one tile alone covers); the
  input's PSNR on the same two sets says how much of a difference the content alone makes.

``--untiled-probe N`` also runs N iterations of the same settings without tiling in a child
process and records its peak memory and time per iteration: what the whole image in one fit
would need.

Band and interiors hold different pixels, so their PSNRs differ by content too. ``--seam-check
SIDE`` compares the same pixels instead: two SIDE x SIDE crops of the noisy image, the second
moved by half a tile step along both axes, are restored with the same settings; their tile
grids are offset by half a step, so most pixels on a seam band of one crop lie inside a tile of
the other. Pixels within ``overlap`` of either crop's outer border are left out.

Writes benchmarks/results/tiling_<size>.json (or tiling_seam_check_<side>.json) and a section
of docs/benchmarks/tiling.md from every such result:

    OMP_NUM_THREADS=1 python benchmarks/tiling.py --untiled-probe 2
    OMP_NUM_THREADS=1 python benchmarks/tiling.py --seam-check 704
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari_dip
from napari_dip.engine.measures import psnr
from napari_dip.engine.tiling import plan_tiles, seam_band, tile_interiors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (PAGES, RESULTS, command_line,  # noqa: E402
                             with_gaussian_noise, write_section)

START, END = "<!-- tiling:start -->", "<!-- tiling:end -->"
# preset "quick" made cheaper still: half its channels, and no input perturbation, which on a
# 256x256 crop of the camera image reached +5 dB in 250 steps where "quick" itself gained none
SETTINGS = dict(preset="quick", channels_down=16, channels_up=16, input_channels=8,
                reg_noise_std=0.0, learning_rate=0.02)


def photographs() -> list[np.ndarray]:
    """512x512 greyscale float32 photographs in [0, 1] from scikit-image's bundled data."""
    from skimage import color, data

    def grey(image):
        image = color.rgb2gray(image[..., :3]) if image.ndim == 3 else image / 255.0
        return image.astype(np.float32)

    retina = grey(data.retina())
    centre = (retina.shape[0] - 512) // 2
    images = [grey(data.camera()), grey(data.astronaut()), grey(data.moon()), grey(data.brick()),
              grey(data.grass()), grey(data.gravel()), grey(data.immunohistochemistry()),
              retina[centre:centre + 512, centre:centre + 512]]
    assert all(image.shape == (512, 512) for image in images)
    return images


def mosaic(size: int) -> np.ndarray:
    """A ``(size, size)`` mosaic of 512x512 photographs and their mirror images."""
    cells = photographs()
    cells += [image[:, ::-1] for image in cells]
    per_side = -(-size // 512)
    rows = [np.concatenate([cells[(r * per_side + c) % len(cells)] for c in range(per_side)],
                           axis=1) for r in range(per_side)]
    return np.ascontiguousarray(np.concatenate(rows)[:size, :size])


def noisy_mosaic(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    clean = mosaic(size)
    noisy = with_gaussian_noise(clean, np.random.default_rng(seed))
    return clean, noisy


def peak_memory_gib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in GiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss / 2 ** 20


def run_tiled(args) -> dict:
    clean, noisy = noisy_mosaic(args.size, args.seed)
    tiles = plan_tiles(clean.shape, args.tile_size, args.overlap)
    print(f"{args.size}x{args.size}: {len(tiles)} tiles of {args.tile_size} overlapping by "
          f">= {args.overlap}, {args.iterations} iterations each; input PSNR "
          f"{psnr(noisy, clean):.2f} dB", flush=True)
    start = time.perf_counter()
    last = None
    for last in napari_dip.iter_restore(noisy, seed=args.seed, device="cpu",
                                        max_iterations=args.iterations,
                                        report_every=args.iterations,
                                        tile_size=args.tile_size, tile_overlap=args.overlap,
                                        **SETTINGS):
        print(f"  tile {last.tile + 1}/{last.n_tiles}: loss {last.loss:.5f}, "
              f"{time.perf_counter() - start:7.0f} s", flush=True)
    seconds = time.perf_counter() - start
    result = last.estimate
    band = seam_band(clean.shape, tiles, args.band)
    interior = tile_interiors(clean.shape, tiles, args.band)
    return dict(size=args.size, tile_size=args.tile_size, tile_overlap=args.overlap,
                n_tiles=len(tiles), iterations_per_tile=args.iterations, band=args.band,
                settings=SETTINGS, seed=args.seed, seconds=round(seconds, 1),
                peak_memory_gib=round(peak_memory_gib(), 3),
                input_psnr=round(psnr(noisy, clean), 2), psnr=round(psnr(result, clean), 2),
                band_psnr=round(psnr(result[band], clean[band]), 2),
                interior_psnr=round(psnr(result[interior], clean[interior]), 2),
                input_band_psnr=round(psnr(noisy[band], clean[band]), 2),
                input_interior_psnr=round(psnr(noisy[interior], clean[interior]), 2),
                band_pixels=int(band.sum()), interior_pixels=int(interior.sum()),
                device=last.device)


def seam_check(args) -> dict:
    """The same pixels restored on a seam band in one crop and inside a tile in the other."""
    clean, noisy = noisy_mosaic(args.size, args.seed)
    side, shift = args.seam_check, (args.tile_size - args.overlap) // 2
    if side + shift > args.size:
        raise SystemExit(f"--seam-check {side} needs an image of at least {side + shift}")
    runs = []
    tiles = plan_tiles((side, side), args.tile_size, args.overlap)
    for offset in (0, shift):
        window = (slice(offset, offset + side),) * 2
        band, interior = (np.zeros(clean.shape, bool) for _ in range(2))
        band[window] = seam_band((side, side), tiles, args.band)
        interior[window] = tile_interiors((side, side), tiles, args.band)
        inner = np.zeros(clean.shape, bool)  # away from this crop's own outer border
        inner[(slice(offset + args.overlap, offset + side - args.overlap),) * 2] = True
        runs.append(dict(window=window, band=band & inner, interior=interior & inner,
                         tiles=len(tiles)))
    a, b = runs
    if not ((a["band"] & b["interior"]).any() or (b["band"] & a["interior"]).any()):
        step = args.tile_size - args.overlap
        raise SystemExit(f"--seam-check {side}: no pixel lies on a seam of one crop and inside "
                         f"a tile of the other, because the tiles are spread to a step other "
                         f"than {step}; choose a side of tile_size + k x (tile_size - overlap), "
                         f"e.g. {args.tile_size + 2 * step}")
    start = time.perf_counter()
    for run in runs:
        run["result"] = np.full(clean.shape, np.nan, np.float32)
        run["result"][run["window"]] = napari_dip.restore(
            noisy[run["window"]], seed=args.seed, device="cpu", max_iterations=args.iterations,
            report_every=args.iterations, tile_size=args.tile_size, tile_overlap=args.overlap,
            **SETTINGS)
        print(f"  crop at {run['window'][0].start}: {run['tiles']} tiles, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    on_seam = np.zeros(clean.shape, np.float32)
    inside = np.zeros(clean.shape, np.float32)
    pixels = np.zeros(clean.shape, bool)
    for seam_run, tile_run in ((a, b), (b, a)):
        chosen = seam_run["band"] & tile_run["interior"]
        on_seam[chosen], inside[chosen] = seam_run["result"][chosen], tile_run["result"][chosen]
        pixels |= chosen
    return dict(kind="seam_check", size=args.size, crop=side, shift=shift,
                tiles_per_crop=a["tiles"], tile_size=args.tile_size, tile_overlap=args.overlap,
                iterations_per_tile=args.iterations, band=args.band, settings=SETTINGS,
                seed=args.seed, seconds=round(time.perf_counter() - start, 1),
                pixels=int(pixels.sum()),
                seam_psnr=round(psnr(on_seam[pixels], clean[pixels]), 2),
                interior_psnr=round(psnr(inside[pixels], clean[pixels]), 2),
                input_psnr=round(psnr(noisy[pixels], clean[pixels]), 2))


def untiled_probe(args) -> None:
    """Child process: ``args.untiled_probe`` iterations on the whole image; print a JSON line."""
    _, noisy = noisy_mosaic(args.size, args.seed)
    start = time.perf_counter()
    last = None
    for last in napari_dip.iter_restore(noisy, seed=args.seed, device="cpu",
                                        max_iterations=args.untiled_probe, report_every=1,
                                        **SETTINGS):
        print(f"  untiled iteration {last.iteration}: {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    print(json.dumps(dict(iterations=last.iteration,
                          seconds_per_iteration=round(last.elapsed / last.iteration, 1),
                          peak_memory_gib=round(peak_memory_gib(), 3))))


def measure_untiled(args) -> dict:
    command = [sys.executable, __file__, "--child-probe", "--size", str(args.size),
               "--seed", str(args.seed), "--untiled-probe", str(args.untiled_probe)]
    print(f"untiled probe: {args.untiled_probe} iterations on the whole image", flush=True)
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode != 0:
        return dict(iterations=args.untiled_probe, failed=child.stderr.strip().splitlines()[-1:],
                    peak_memory_gib=round(peak_memory_gib(resource.RUSAGE_CHILDREN), 3))
    return json.loads(child.stdout.strip().splitlines()[-1])


def write_doc() -> None:
    """Rewrite the section of docs/benchmarks/tiling.md from every stored tiling result."""
    lines = []
    for path in sorted(RESULTS.glob("tiling_*.json")):
        r = json.loads(path.read_text())
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        if r.get("kind") == "seam_check":
            lines += [
                "",
                f"**The same pixels on a seam and inside a tile.** Two {r['crop']}x{r['crop']} "
                f"crops of the same noisy mosaic, the second moved by {r['shift']} pixels (half "
                f"a tile step) along both axes, restored with the same settings "
                f"(noise and network seed {r['seed']}, {r['tiles_per_crop']} tiles each, "
                f"{r['iterations_per_tile']} iterations per "
                f"tile, {settings}); on the {r['pixels']} pixels that lie on a seam band of one "
                f"crop and inside a tile of the other (more than {r['tile_overlap']} pixels from "
                f"either crop's border), PSNR **{r['seam_psnr']:.2f} dB on the seam** and "
                f"**{r['interior_psnr']:.2f} dB inside a tile** (input {r['input_psnr']:.2f} "
                f"dB); {r['seconds'] / 60:.1f} min. Command: `{r['command']}`",
            ]
            continue
        lines += [
            "",
            f"A {r['size']}x{r['size']} greyscale mosaic of photographs (scikit-image's bundled "
            f"images, 512x512 each) with Gaussian noise σ=25/255, restored in {r['n_tiles']} "
            f"tiles of {r['tile_size']} pixels overlapping by at least {r['tile_overlap']}, "
            f"{r['iterations_per_tile']} iterations per tile, seed {r['seed']}, with {settings}. "
            f"\"Seam band\": pixels within {r['band']} of a tile edge inside the image "
            f"({r['band_pixels']} pixels); \"tile interiors\": pixels that one tile alone "
            f"covers, outside the band ({r['interior_pixels']} pixels).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| wall time | {r['seconds'] / 60:.1f} min ({r['device']}) |",
            f"| peak memory of the process (ru_maxrss) | {r['peak_memory_gib']:.2f} GiB |",
            f"| PSNR input → result | {r['input_psnr']:.2f} → {r['psnr']:.2f} dB |",
            f"| PSNR on the seam band, result (input) | {r['band_psnr']:.2f} "
            f"({r['input_band_psnr']:.2f}) dB |",
            f"| PSNR in the tile interiors, result (input) | {r['interior_psnr']:.2f} "
            f"({r['input_interior_psnr']:.2f}) dB |",
        ]
        probe = r.get("untiled_probe")
        if probe and "failed" not in probe:
            lines.append(f"| the same settings untiled, {probe['iterations']} iterations in a "
                         f"child process: peak memory, time per iteration | "
                         f"{probe['peak_memory_gib']:.2f} GiB, "
                         f"{probe['seconds_per_iteration']} s |")
        elif probe:
            lines.append(f"| the same settings untiled, in a child process | failed after "
                         f"{probe['peak_memory_gib']:.2f} GiB: {' '.join(probe['failed'])} |")
        lines += ["", f"Machine: {r['machine']}. Command: `{r['command']}`"]
    write_section(START, END, "Large images: tiling", lines, page=PAGES / "tiling.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image side (default 2048)")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=200, help="per tile (default 200)")
    parser.add_argument("--band", type=int, default=8,
                        help="half-width in pixels of the band measured along tile edges")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--untiled-probe", type=int, default=0, metavar="N",
                        help="also measure N untiled iterations in a child process")
    parser.add_argument("--seam-check", type=int, default=0, metavar="SIDE",
                        help="instead: the same pixels on a seam and inside a tile, from two "
                             "SIDE x SIDE crops half a tile step apart")
    parser.add_argument("--child-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_probe:
        untiled_probe(args)
        return 0
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + command_line("tiling.py", argv)
    if args.seam_check:
        suffix = (f"_overlap{args.overlap}" if args.overlap != 32 else "") + \
            (f"_seed{args.seed}" if args.seed else "")
        result, name = seam_check(args), f"tiling_seam_check_{args.seam_check}{suffix}.json"
    else:
        result, name = run_tiled(args), f"tiling_{args.size}.json"
        if args.untiled_probe:
            result["untiled_probe"] = measure_untiled(args)
    result.update(command=command,
                  machine=f"{platform.machine()} {platform.system()}, "
                          f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
                          f"napari-dip {napari_dip.__version__}")
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=1))
    write_doc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
