"""Deconvolution against ground truth: napari-dip ``deconvolve`` beside Richardson-Lucy.

Each clean image (the FMD confocal 50-frame averages and the nuclei image in
../shared/data/microscopy, read only; a centre crop) is scaled to a peak of P photons, blurred
with a PSF (Gaussian sigma 1.5 and 3 px, and an Airy-type widefield PSF), given Poisson noise
and Gaussian read noise (``--read-noise`` photons), and restored by:

- scikit-image's ``richardson_lucy`` on the observation (negative values set to 0) padded by
  reflection by the PSF's size and cropped back, at each iteration count of
  :data:`RL_ITERATIONS`: its best one (an oracle: chosen with the ground truth) and 30;
- napari-dip ``deconvolve`` (``--preset``, default auto: it stops by itself, with the data
  term chosen from the noise it estimates), its result and the best PSNR its moving average
  reached at any snapshot (the run's own peak).

PSNR is against the clean photon image with a data range of P; CPU time is the process's
(``time.process_time``), wall time beside it. Richardson-Lucy with total-variation
regularisation is not run: no maintained package at hand offers it.

Small check (one thread, 96 x 96 crops, a subset)::

    OMP_NUM_THREADS=1 python benchmarks/deconvolution.py --crop 96 --images BPAE_G nuclei2d \\
        --peaks 50

Full run::

    OMP_NUM_THREADS=1 python benchmarks/deconvolution.py --crop 256
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_DIP_DATA", ROOT.parent / "shared" / "data"))
FMD = ("BPAE_B", "BPAE_G", "BPAE_R", "fish", "mice")
IMAGES = FMD + ("nuclei2d",)
PSFS = ("gaussian1.5", "gaussian3", "airy")
RL_ITERATIONS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200)
# the Airy PSF: NA 0.8, 520 nm emission, 100 nm pixels (first dark ring at 4 px)
AIRY = dict(numerical_aperture=0.8, wavelength_nm=520.0, pixel_size_nm=100.0)


def clean_image(name: str, crop: int) -> np.ndarray:
    """The centre ``crop`` x ``crop`` of an image, float64 scaled to a maximum of 1."""
    path = DATA / "microscopy" / ("nuclei2d.tif" if name == "nuclei2d"
                                  else f"fmd_confocal/Confocal/{name}.tif")
    image = np.asarray(tifffile.imread(path), dtype=np.float64)
    image = image if image.ndim == 2 else image[0]
    top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
    image = image[top:top + crop, left:left + crop]
    image = image - image.min()
    return image / image.max()


def make_psf(name: str) -> np.ndarray:
    from napari_dip.engine.psf import airy_psf, gaussian_psf

    if name == "airy":
        return airy_psf(**AIRY)
    return gaussian_psf(float(name.removeprefix("gaussian")))


def observe(clean: np.ndarray, psf: np.ndarray, peak: float, read_noise: float,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the clean photon image, the blurred noisy observation) in photons."""
    import torch

    from napari_dip.engine.convolution import convolve

    photons = clean * peak
    blurred = convolve(torch.from_numpy(photons)[None, None], torch.from_numpy(psf))[0, 0]
    rng = np.random.default_rng(seed)
    observed = rng.poisson(np.clip(blurred.numpy(), 0, None)) + \
        rng.normal(0.0, read_noise, photons.shape)
    return photons, observed


def psnr(estimate, reference, peak) -> float:
    from napari_dip.engine.measures import psnr as engine_psnr

    return engine_psnr(estimate, reference, data_range=peak)


def richardson_lucy(observed: np.ndarray, psf: np.ndarray, truth: np.ndarray,
                    peak: float) -> dict:
    """scikit-image's Richardson-Lucy on the reflect-padded observation, cropped back, at each
    of :data:`RL_ITERATIONS`: the oracle-best count, its PSNR, and the PSNR at 30."""
    from skimage.restoration import richardson_lucy as rl

    pad = max(psf.shape)
    padded = np.pad(np.clip(observed, 0, None) / peak, pad, mode="reflect")
    scores, start = {}, time.process_time()
    for count in RL_ITERATIONS:
        result = rl(padded, psf, num_iter=count, clip=False)[pad:-pad, pad:-pad] * peak
        scores[count] = psnr(result, truth, peak)
    best = max(scores, key=scores.get)
    return {"rl_best_iterations": best, "rl_best_psnr": scores[best], "rl30_psnr": scores[30],
            "rl_cpu_s_all_counts": time.process_time() - start}


def dip(observed: np.ndarray, psf: np.ndarray, truth: np.ndarray, peak: float,
        preset: str, **settings) -> dict:
    """napari-dip ``deconvolve`` with its automatic stop: the result's PSNR, the peak PSNR of
    the moving average over the snapshots (and where it was), the steps, the data term and the
    time."""
    import napari_dip

    peak_psnr, peak_iteration, last = -np.inf, 0, None
    cpu, wall = time.process_time(), time.perf_counter()
    for last in napari_dip.iter_restore(observed.astype(np.float32), task="deconvolve",
                                        psf=psf, preset=preset,
                                        **{"seed": 0, **settings}):
        score = psnr(last.average, truth, peak)
        if score > peak_psnr:
            peak_psnr, peak_iteration = score, last.iteration
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"dip_psnr": psnr(last.estimate, truth, peak), "dip_peak_psnr": peak_psnr,
            "dip_peak_iteration": peak_iteration,
            "dip_iterations": last.iteration, "dip_best_iteration": last.best_iteration,
            "dip_data_term": last.config.data_term, "dip_cpu_s": cpu, "dip_wall_s": wall}


COLUMNS = ("image", "psf", "peak", "observed", "rl_best_psnr", "rl_best_iterations",
           "rl30_psnr", "dip_psnr", "dip_peak_psnr", "dip_iterations", "dip_data_term",
           "dip_cpu_s", "dip_wall_s", "rl_cpu_s_all_counts")
"""The columns of the printed table (the JSON lines of ``--out`` hold every measure)."""


def measure(name: str, clean: np.ndarray, psf_name: str, peak: float, read_noise: float,
            seed: int, preset: str, settings: dict) -> dict:
    """One row: ``clean`` blurred by the PSF ``psf_name`` with noise at ``peak`` photons,
    restored by Richardson-Lucy and by napari-dip (``preset`` with ``settings`` over it)."""
    psf = make_psf(psf_name)
    truth, observed = observe(clean, psf, peak, read_noise, seed)
    return {"image": name, "psf": psf_name, "peak": peak, "crop": clean.shape[0],
            "read_noise": read_noise, "preset": preset, "settings": settings,
            "noise_seed": seed, "observed": psnr(observed, truth, peak),
            **richardson_lucy(observed, psf, truth, peak),
            **dip(observed, psf, truth, peak, preset, **settings)}


def parse_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, value), the value read as JSON where it parses (numbers,
    true/false), else kept as text (``data_term=gaussian``)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. tv_weight=0.1)")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options this script and ``deconvolution_tuning.py`` share."""
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--psfs", nargs="+", default=list(PSFS), choices=PSFS)
    parser.add_argument("--peaks", nargs="+", type=float, default=[50.0, 500.0])
    parser.add_argument("--read-noise", type=float, default=2.0, help="photons (std)")
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--data-term", default=None,
                        help="a data term instead of the preset's (e.g. gaussian)")
    parser.add_argument("--set", nargs="*", type=parse_setting, default=[], metavar="KEY=VALUE",
                        help="settings over the preset's (e.g. tv_weight=0.1 n_runs=2; "
                        "seed=1 for another draw of the generator than seed 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="append each row as a JSON line to this file")


def run_rows(images: dict, args: argparse.Namespace) -> None:
    """Measure every image (name -> (clean image, noise seed)) x PSF x peak; print the table
    and append the rows to ``args.out``."""
    settings = dict(args.set)
    if args.data_term is not None:
        settings["data_term"] = args.data_term
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for name, (clean, seed) in images.items():
        for psf_name in args.psfs:
            for peak in args.peaks:
                row = measure(name, clean, psf_name, peak, args.read_noise, seed, args.preset,
                              settings)
                print("| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |", flush=True)
                if args.out is not None:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    with open(args.out, "a") as stream:
                        stream.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    common_arguments(parser)
    args = parser.parse_args()
    run_rows({name: (clean_image(name, args.crop), seed)
              for seed, name in enumerate(args.images)}, args)


def _cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
