"""The zero-shot denoisers a microscopist would pick instead of napari-dip, side by side with it.

Each peer gets the same noisy image on the same machine; the table gives its PSNR against the
ground truth and the CPU seconds it took. The peers are written here from their papers (they are
not part of the package):

- **ZS-N2N** (Mansour & Heckel, "Zero-Shot Noise2Noise", CVPR 2023): a network of two 3x3
  convolutions of 48 channels and a 1x1 convolution, LeakyReLU (slope 0.2), predicting the noise
  (the estimate is the input minus the prediction). The image is split by the two pixel-pair
  downsamplers (the averages of each 2x2 block's two diagonals); the loss is the residual loss
  (each half's estimate against the other half) plus the consistency loss (the halves' estimates
  against the halves of the whole image's estimate). Adam, learning rate 1e-3 halved every 1000
  steps, 3000 steps; the estimate is clipped to [0, 1] as in the paper.
- **Noise2Fast** (Lequyer et al., "A fast blind zero-shot denoiser", Nature Machine Intelligence
  2022), its published recipe: the image is scaled to [0, 1] by its minimum and maximum and
  split by checkerboard downsampling into four half images (the two colours of the checkerboard
  squeezed together along the rows, and the two squeezed along the columns); each step trains on
  one of the four (input, target) pairs drawn at random (one half predicting the other of the
  same direction) with binary cross-entropy, Adam at 1e-3. The network is the paper's: four
  blocks of two 3x3 convolutions of 64 channels with ReLU, a 1x1 convolution and a sigmoid.
  After each step the network denoises the whole noisy image; the validation loss is the mean
  squared difference between that prediction and the noisy image, and training stops once it
  has not improved for 100 steps. The result is the mean of the last 105 predictions (the
  published recipe averages a buffer of 105; here only the predictions made are averaged when a
  run ends sooner), scaled back to the image's range.
- **BM3D** (the ``bm3d`` package, skipped with a message when it is not installed) for photon
  noise: a generalised Anscombe transform with the gain and the read-noise variance estimated
  from the image (the variance of the diagonal Haar detail of 2x2 blocks against their mean,
  fitted by a straight line over intensity levels), BM3D at the noise level
  ``skimage.restoration.estimate_sigma`` measures on the stabilised image, and the closed-form
  approximation of the exact unbiased inverse (Makitalo & Foi 2013). Peer ``bm3d-unit`` runs
  BM3D at noise level 1 instead, the level the transform gives when its parameters are right
  (``estimate_sigma`` reads less on images with large dark, clipped backgrounds). Where the
  image shows no signal-dependent noise, both run BM3D on the image itself at the estimated
  level.
- **NL-means** (scikit-image's ``denoise_nl_means``, as its documentation recommends: σ from
  ``estimate_sigma``, ``h = 0.6 σ``, ``fast_mode``, 5x5 patches searched 13x13).
- **napari-dip** itself, through ``napari_dip.restore`` with ``--preset`` (optional: pick it
  with ``--peers``).

Images: the FMD confocal pairs (one raw noisy frame, the 50-frame average as ground truth;
``../shared/data/SOURCES.md``), scaled by their dtype's maximum as the other benchmarks do, so
PSNR is on the data range of the ground truth's dtype. The table and the figure are in
docs/benchmarks/peers.md.

    OMP_NUM_THREADS=1 python benchmarks/peers.py --crop 128 --plot peers.png
    python benchmarks/peers.py --crop 0 --peers napari-dip --preset auto
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from skimage.restoration import denoise_nl_means, estimate_sigma

from napari_dip.engine.measures import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_paper import (DATA, RESULTS, center_crop, command_line, cpu_description,  # noqa: E402
                             parse_setting)

FMD = DATA / "microscopy" / "fmd_confocal"
CLEAN, NOISY = "Confocal", "Confocal_gaussianpoisson"
OUT = RESULTS / "peers"


class PeerUnavailable(RuntimeError):
    """A peer cannot run here (a package it needs is missing)."""


# ------------------------------------------------------------------------------ ZS-N2N

class ZeroShotN2NNetwork(nn.Module):
    """ZS-N2N's network: two 3x3 convolutions and a 1x1, LeakyReLU; it predicts the noise."""

    def __init__(self, channels: int = 1, width: int = 48):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        return self.conv3(x)


def pair_downsample(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two half-size images of ZS-N2N: each 2x2 block's anti-diagonal mean, and its
    diagonal mean, for ``(N, C, H, W)`` ``image``."""
    channels = image.shape[1]
    anti = image.new_tensor([[0.0, 0.5], [0.5, 0.0]]).expand(channels, 1, 2, 2)
    diagonal = image.new_tensor([[0.5, 0.0], [0.0, 0.5]]).expand(channels, 1, 2, 2)
    return (F.conv2d(image, anti, stride=2, groups=channels),
            F.conv2d(image, diagonal, stride=2, groups=channels))


def zs_n2n_loss(network: nn.Module, noisy: torch.Tensor) -> torch.Tensor:
    """ZS-N2N's residual loss plus its consistency loss."""
    half1, half2 = pair_downsample(noisy)
    estimate1, estimate2 = half1 - network(half1), half2 - network(half2)
    residual = (F.mse_loss(half1, estimate2) + F.mse_loss(half2, estimate1)) / 2
    whole1, whole2 = pair_downsample(noisy - network(noisy))
    consistency = (F.mse_loss(estimate1, whole1) + F.mse_loss(estimate2, whole2)) / 2
    return residual + consistency


def zs_n2n(noisy: np.ndarray, steps: int | None = None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """ZS-N2N on a 2D image in [0, 1]: ``steps`` (default the paper's 3000), the learning rate
    halved after each third of them (every 1000 of the paper's 3000)."""
    steps = 3000 if steps is None else steps
    torch.manual_seed(seed)
    image = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))[None, None]
    network = ZeroShotN2NNetwork()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, steps // 3), gamma=0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        zs_n2n_loss(network, image).backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        estimate = torch.clamp(image - network(image), 0, 1)
    return estimate[0, 0].numpy(), dict(steps=steps)


# ------------------------------------------------------------------------------ Noise2Fast

class Noise2FastNetwork(nn.Module):
    """Noise2Fast's network: four blocks of two 3x3 convolutions (64 channels, ReLU), a 1x1
    convolution and a sigmoid."""

    def __init__(self, width: int = 64, blocks: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(2 * blocks):
            layers += [nn.Conv2d(1 if index == 0 else width, width, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(x)))


def checkerboard_halves(image: np.ndarray) -> list[np.ndarray]:
    """Noise2Fast's four half images of ``image`` (cropped to even sides): the two colours of the
    checkerboard squeezed along the rows (H/2 x W), then the two squeezed along the columns
    (H x W/2)."""
    h, w = image.shape
    even = image[:h - h % 2, :w - w % 2]
    even_columns = np.arange(even.shape[1]) % 2 == 0
    even_rows = (np.arange(even.shape[0]) % 2 == 0)[:, None]
    top, bottom = even[0::2], even[1::2]
    left, right = even[:, 0::2], even[:, 1::2]
    return [np.where(even_columns, bottom, top), np.where(even_columns, top, bottom),
            np.where(even_rows, right, left), np.where(even_rows, left, right)]


def noise2fast(noisy: np.ndarray, steps: int | None = None, seed: int = 0,
               patience: int = 100, averaged: int = 105) -> tuple[np.ndarray, dict]:
    """Noise2Fast on a 2D image: trained until the validation loss has not improved for
    ``patience`` steps (or for at most ``steps``), the mean of the last ``averaged``
    predictions."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    low = float(noisy.min())
    scale = float(noisy.max()) - low or 1.0
    scaled = ((noisy - low) / scale).astype(np.float32)
    halves = [torch.from_numpy(np.ascontiguousarray(h))[None, None]
              for h in checkerboard_halves(scaled)]
    pairs = [(halves[1], halves[0]), (halves[0], halves[1]),
             (halves[2], halves[3]), (halves[3], halves[2])]
    whole = torch.from_numpy(scaled)[None, None]
    network = Noise2FastNetwork()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    recent: collections.deque = collections.deque(maxlen=averaged)
    best, since_best, step = -np.inf, 0, 0
    while since_best <= patience and (steps is None or step < steps):
        source, target = pairs[rng.integers(len(pairs))]
        optimizer.zero_grad()
        F.binary_cross_entropy(network(source), target).backward()
        optimizer.step()
        step += 1
        with torch.no_grad():
            prediction = network(whole)[0, 0].numpy()
        recent.append(prediction)
        score = -float(np.mean((scaled - prediction) ** 2))
        best, since_best = (score, 0) if score > best else (best, since_best + 1)
    estimate = np.mean(recent, axis=0) * scale + low
    return estimate.astype(np.float32), dict(steps=step, stopped=since_best > patience)


# ------------------------------------------------------------------------------ BM3D

def poisson_gaussian_noise(image: np.ndarray, levels: int = 16) -> tuple[float, float]:
    """Gain and read-noise variance of ``variance = gain * intensity + read`` in ``image``:
    the robust (MAD) variance of each 2x2 block's diagonal Haar detail, in ``levels`` bins of
    the blocks' mean intensity, fitted by a weighted straight line."""
    h, w = image.shape
    z = np.asarray(image[:h - h % 2, :w - w % 2], dtype=np.float64)
    a, b, c, d = z[0::2, 0::2], z[0::2, 1::2], z[1::2, 0::2], z[1::2, 1::2]
    mean, detail = ((a + b + c + d) / 4).ravel(), ((a - b - c + d) / 2).ravel()
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, levels + 1)))
    bins = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, max(len(edges) - 2, 0))
    points = []
    for k in np.unique(bins):
        chosen = detail[bins == k]
        if chosen.size >= 16:
            spread = 1.4826 * np.median(np.abs(chosen - np.median(chosen)))
            points.append((mean[bins == k].mean(), spread ** 2, chosen.size))
    if len(points) < 2:
        return 0.0, float(np.var(detail))
    level, variance, count = map(np.asarray, zip(*points))
    gain, read = np.polyfit(level, variance, 1, w=np.sqrt(count))
    return float(gain), float(max(read, 0.0))


def anscombe(image: np.ndarray, gain: float, read: float) -> np.ndarray:
    """The generalised Anscombe transform: Poisson-Gaussian noise of ``gain`` and read-noise
    variance ``read`` becomes roughly of unit variance."""
    return 2 / gain * np.sqrt(np.maximum(gain * image + 3 / 8 * gain ** 2 + read, 0))


def inverse_anscombe(stabilised: np.ndarray, gain: float, read: float) -> np.ndarray:
    """The closed-form approximation of the exact unbiased inverse of ``anscombe``
    (Makitalo & Foi 2013); values below the transform of zero give zero."""
    sigma2 = read / gain ** 2
    d = np.maximum(stabilised, 2 * np.sqrt(3 / 8 + sigma2))
    root = np.sqrt(1.5)
    counts = (d ** 2 / 4 + root / 4 / d - 11 / 8 / d ** 2 + 5 / 8 * root / d ** 3 - 1 / 8
              - sigma2)
    return gain * np.maximum(counts, 0)


def bm3d_vst(noisy: np.ndarray, steps: int | None = None, seed: int = 0,
             unit_sigma: bool = False) -> tuple[np.ndarray, dict]:
    """BM3D after a variance-stabilising transform for photon noise (see the module's notes),
    at the noise level ``estimate_sigma`` measures on the stabilised image or, with
    ``unit_sigma``, at 1 (the level the transform makes when its parameters are right)."""
    try:
        import bm3d
    except ImportError as error:
        raise PeerUnavailable("the bm3d package is not installed (pip install bm3d)") from error

    image = np.asarray(noisy, dtype=np.float64)
    gain, read = poisson_gaussian_noise(image)
    stabilise = gain > 1e-6 * max(float(np.abs(image).max()), 1e-12)
    work = anscombe(image, gain, read) if stabilise else image
    sigma = 1.0 if unit_sigma and stabilise else float(estimate_sigma(work))
    denoised = np.asarray(bm3d.bm3d(work, sigma_psd=sigma), dtype=np.float64)
    estimate = inverse_anscombe(denoised, gain, read) if stabilise else denoised
    return estimate.astype(np.float32), dict(gain=gain, read_variance=read, sigma=sigma,
                                             transform="generalised Anscombe" if stabilise
                                             else "none")


def bm3d_unit_sigma(noisy: np.ndarray, steps: int | None = None, seed: int = 0):
    """``bm3d_vst`` at the stabilised noise level 1."""
    return bm3d_vst(noisy, steps, seed, unit_sigma=True)


# ------------------------------------------------------------------------------ the others

def nl_means(noisy: np.ndarray, steps: int | None = None, seed: int = 0) -> tuple[np.ndarray,
                                                                                   dict]:
    """scikit-image's NL-means with the settings its documentation recommends."""
    sigma = float(estimate_sigma(noisy))
    estimate = denoise_nl_means(noisy, h=0.6 * sigma, sigma=sigma, fast_mode=True,
                                patch_size=5, patch_distance=6)
    return estimate.astype(np.float32), dict(sigma=sigma)


def napari_dip_peer(preset: str, data_term: str | None = None,
                    overrides: dict | None = None):
    """napari-dip's ``iter_restore`` with ``preset`` as a peer, run to its end as ``restore``
    runs it (``steps`` caps its iterations; ``data_term``, if given, replaces the preset's;
    ``overrides``: further settings on top of the preset). Its details record the iterations
    each tile ran."""
    def run(noisy: np.ndarray, steps: int | None = None, seed: int = 0):
        import napari_dip

        options = dict(overrides or {})
        if data_term is not None:
            options["data_term"] = data_term
        last, iterations = None, {}
        for last in napari_dip.iter_restore(noisy, preset=preset, seed=seed, device="cpu",
                                            max_iterations=steps, **options):
            iterations[last.tile] = last.iteration
        # the term the run used: "auto" (the preset's or asked for) resolved for this image
        details = dict(preset=preset, **options, data_term_chosen=last.config.data_term,
                       iterations_per_tile=[iterations[k] for k in sorted(iterations)])
        return np.asarray(last.estimate, dtype=np.float32), details
    return run


def peers(preset: str = "auto", data_term: str | None = None,
          overrides: dict | None = None) -> dict:
    """Each peer by name: ``run(noisy, steps, seed) -> (estimate, details)``."""
    return {"nl-means": nl_means, "bm3d": bm3d_vst, "bm3d-unit": bm3d_unit_sigma, "zs-n2n": zs_n2n,
            "noise2fast": noise2fast,
            "napari-dip": napari_dip_peer(preset, data_term, overrides)}


DEFAULT_PEERS = ("nl-means", "bm3d", "bm3d-unit", "zs-n2n", "noise2fast")


# ------------------------------------------------------------------------------ the benchmark

def dtype_maximum(dtype: np.dtype) -> float:
    """The data range of an image of ``dtype``: its integer maximum, 1 for floats."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def fmd_pairs(folder: Path, crop: int, limit: int | None = None,
              names: list[str] | None = None):
    """(name, noisy, clean) for each FMD pair in ``folder`` (only those in ``names`` if given),
    both divided by the ground truth dtype's maximum (so PSNR is on its data range) and
    centre-cropped to ``crop`` (0: whole)."""
    import tifffile

    paths = sorted((folder / CLEAN).glob("*.tif"))
    for path in [p for p in paths if names is None or p.stem in names][:limit]:
        clean = tifffile.imread(path)
        scale = dtype_maximum(clean.dtype)
        noisy = tifffile.imread(folder / NOISY / path.name)
        yield (path.stem, center_crop(noisy.astype(np.float32) / scale, crop),
               center_crop(clean.astype(np.float32) / scale, crop))


def measure(run, noisy: np.ndarray, clean: np.ndarray, steps: int | None, seed: int) -> dict:
    """One peer on one image: its PSNR against ``clean``, its CPU and wall-clock seconds and
    what it reports of its run."""
    cpu, wall = time.process_time(), time.perf_counter()
    estimate, details = run(noisy, steps=steps, seed=seed)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if estimate.shape != noisy.shape:
        raise RuntimeError(f"a peer returned shape {estimate.shape} for {noisy.shape}")
    return dict(psnr=psnr(estimate, clean), cpu_seconds=cpu, wall_seconds=wall, **details)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


def run_benchmark(images, names: list[str], preset: str, steps: int | None, seed: int,
                  record: dict, out: Path) -> dict:
    """Every peer in ``names`` on every (name, noisy, clean) of ``images``; ``record`` gains one
    entry per image and is rewritten to ``out`` after each image."""
    available = peers(preset, record.get("data_term"), record.get("settings"))
    for image_name, noisy, clean in images:
        entry = dict(image=image_name, shape=list(noisy.shape), input_psnr=psnr(noisy, clean),
                     methods={})
        print(f"{image_name} {noisy.shape}: noisy {entry['input_psnr']:.2f} dB", flush=True)
        for name in names:
            if name in record["skipped"]:
                continue
            try:
                result = measure(available[name], noisy, clean, steps, seed)
            except PeerUnavailable as error:
                print(f"  {name}: skipped, {error}", flush=True)
                record["skipped"][name] = str(error)
                continue
            entry["methods"][name] = result
            print(f"  {name}: {result['psnr']:.2f} dB in {result['cpu_seconds']:.1f} CPU s",
                  flush=True)
        record["images"].append(entry)
        write_json(out, record)
    return record


LABELS = {"nl-means": "NL-means", "bm3d": "BM3D (VST, σ estimated)",
          "bm3d-unit": "BM3D (VST, σ = 1)", "zs-n2n": "ZS-N2N",
          "noise2fast": "Noise2Fast", "napari-dip": "napari-dip"}


def label(name: str, record: dict) -> str:
    if name != "napari-dip":
        return LABELS[name]
    term = record.get("data_term")
    extra = [f"data term {term}"] if term else []
    extra += [f"{key}={value}" for key, value in (record.get("settings") or {}).items()]
    return LABELS[name] + f" ({', '.join([record['preset'], *extra])})"


def cell(runs: list[dict]) -> str:
    """A table cell: the mean PSNR and CPU seconds of ``runs`` (one run, or one per image)."""
    if not runs:
        return "–"
    seconds = np.mean([r["cpu_seconds"] for r in runs])
    return f"{np.mean([r['psnr'] for r in runs]):.2f} dB, {seconds:.{1 if seconds >= 1 else 2}f} s"


def table(record: dict) -> str:
    """A Markdown table of ``record``: PSNR and CPU seconds per image and method, and the mean
    over the images."""
    names = [n for n in record["peers"] if n not in record["skipped"]]
    lines = ["| image | noisy | " + " | ".join(label(n, record) for n in names) + " |",
             "|---" * (len(names) + 2) + "|"]
    rows = [(e["image"], f"{e['input_psnr']:.2f} dB",
             [cell([e["methods"][n]] if n in e["methods"] else []) for n in names])
            for e in record["images"]]
    noisy = np.mean([e["input_psnr"] for e in record["images"]])
    rows.append(("mean", f"{noisy:.2f} dB",
                 [cell([e["methods"][n] for e in record["images"] if n in e["methods"]])
                  for n in names]))
    lines += [f"| {name} | {first} | " + " | ".join(cells) + " |" for name, first, cells in rows]
    return "\n".join(lines) + "\n"


def plot(record: dict, path: Path) -> None:
    """PSNR against CPU seconds, one panel per image, one marker per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = record["images"]
    names = record.get("peers") or list(dict.fromkeys(n for e in images for n in e["methods"]))
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.2), squeeze=False)
    for ax, entry in zip(axes[0], images):
        for name, result in entry["methods"].items():
            ax.plot(result["cpu_seconds"], result["psnr"], "o", color=f"C{names.index(name)}",
                    label=label(name, record))
        ax.axhline(entry["input_psnr"], color="grey", ls="--", lw=0.8, label="noisy")
        ax.set_xscale("log")
        ax.set_title(f"{entry['image']} {'x'.join(map(str, entry['shape']))}", fontsize=9)
        ax.set_xlabel("CPU seconds")
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=FMD,
                        help="a folder with Confocal/ (ground truth) and Confocal_gaussianpoisson/")
    parser.add_argument("--crop", type=int, default=0, help="centre crop side (0: whole image)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--names", default=None,
                        help="only these images, comma-separated (e.g. fish,mice)")
    parser.add_argument("--peers", default=",".join(DEFAULT_PEERS),
                        help=f"comma-separated subset of {', '.join(peers())}")
    parser.add_argument("--preset", default="auto", help="napari-dip's preset")
    parser.add_argument("--data-term", default=None,
                        help="napari-dip's data term, instead of the preset's (e.g. auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE",
                        help="a setting on top of napari-dip's preset (repeatable), e.g. "
                             "tile_warm_start=0.5")
    parser.add_argument("--steps", type=int, default=None,
                        help="ZS-N2N's steps, the most Noise2Fast may take and napari-dip's "
                             "iterations (default: each one's own recipe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch's CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="the results' JSON file")
    parser.add_argument("--table", type=Path, default=None, help="also write the Markdown table")
    parser.add_argument("--plot", type=Path, default=None, help="also draw PSNR against seconds")
    parser.add_argument("--replot", type=Path, nargs="+", default=None, metavar="RESULTS_JSON",
                        help="only write --table and --plot from stored results (several: of "
                             "other peers on the same images, in one table)")
    args = parser.parse_args(argv)
    args.peers = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = sorted(set(args.peers) - set(peers()))
    if unknown:
        parser.error(f"unknown peers {unknown}: choose among {', '.join(peers())}")
    return args


def merged(records: list[dict]) -> dict:
    """One record of runs on the same images (same crop, same CPU): the first's images, each
    with the methods every record measured on it; ``runs`` lists each run's command."""
    base = json.loads(json.dumps(records[0]))
    base["runs"] = [dict(command=r["command"], omp_threads=r.get("omp_threads"))
                    for r in records]
    entries = {(e["image"], tuple(e["shape"])): e for e in base["images"]}
    for record in records[1:]:
        if record["cpu"] != base["cpu"]:
            raise ValueError(f"runs on different CPUs ({record['cpu']}, {base['cpu']}) are "
                             "not put in one table; replot them one by one")
        for entry in record["images"]:
            key = (entry["image"], tuple(entry["shape"]))
            if key in entries:
                entries[key]["methods"].update(entry["methods"])
        base["peers"] += [n for n in record["peers"] if n not in base["peers"]]
        base["skipped"].update(record["skipped"])
    return base


def command_with_threads(run: dict) -> str:
    """A run's command with the OpenMP thread count it ran with."""
    threads = run.get("omp_threads")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + run["command"]


def report(record: dict, table_path: Path | None, plot_path: Path | None) -> None:
    """Print the table, and write it (with the commands that measured it) and the figure."""
    print(table(record))
    if table_path:
        commands = "\n".join("    " + command_with_threads(r)
                             for r in record.get("runs", [record]))
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table_path.write_text(f"{commands}\n\non {record['cpu']}\n\n{table(record)}")
    if plot_path:
        plot(record, plot_path)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.replot:
        report(merged([json.loads(path.read_text()) for path in args.replot]), args.table,
               args.plot)
        return 0
    if not (args.images / CLEAN).is_dir() or not (args.images / NOISY).is_dir():
        print(f"skipped: no FMD pairs at {args.images} (it needs {CLEAN}/ and {NOISY}/; "
              "see ../shared/data/SOURCES.md)", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    try:  # imported before any timing starts
        import bm3d  # noqa: F401
    except ImportError:
        pass
    out = args.out or OUT / f"fmd_crop{args.crop}.json"
    record = dict(command=command_line("peers.py", argv), cpu=cpu_description(),
                  omp_threads=os.environ.get("OMP_NUM_THREADS", "unset"),
                  threads=args.threads, crop=args.crop, steps=args.steps, seed=args.seed,
                  preset=args.preset, data_term=args.data_term,
                  settings=dict(parse_setting(text) for text in args.overrides),
                  peers=args.peers, skipped={}, images=[])
    names = None if args.names is None else args.names.split(",")
    run_benchmark(fmd_pairs(args.images, args.crop, args.limit, names), args.peers, args.preset,
                  args.steps, args.seed, record, out)
    report(record, args.table, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
