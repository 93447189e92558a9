"""Train the learned starting point of the denoising generator (``init="learned"``).

A Reptile-style meta-learned initialisation (Nichol et al. 2018; MetaDIP): each outer step
draws one small denoising problem (a noisy crop), runs ``--inner-steps`` Deep Image Prior steps
of preset auto's denoising fit from the current weights (the engine's own loop, learning rate
and input code), and moves the weights a share ``epsilon`` of the way towards the adapted
ones. ``epsilon`` falls linearly over the planned outer steps. A start that many short fits
pull towards reaches a good estimate in fewer steps.

Training data, nothing else: scikit-image's bundled chelsea, coffee, rocket, brick, grass,
gravel, horse, hubble_deep_field, retina, motorcycle_left, page and text (greyscale), and
fluorescence-like scenes synthesised here (Gaussian blobs, filaments along random smooth
curves, membranes along Voronoi cell boundaries) with Poisson photon noise at several levels
and Gaussian read noise. No evaluation image is read.

Every ``--checkpoint-every`` outer steps the weights and a JSON record (inputs, settings, seed,
steps done, package version, validation curve) are written atomically beside each other, so an
interrupted run still leaves a usable file. One CPU thread::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/train_init.py --minutes 50

The JSON's ``reproduce`` is the command that trains the same weights again (the seed, the
planned outer steps and ``--stop-after`` the steps done): with one thread, the same CPU and the
same PyTorch, the training is deterministic.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage import color, data

import napari_dip
from napari_dip.engine.fit import fit, make_input_code, seeded_generator_network
from napari_dip.engine.pretrained import WEIGHTS_DIR, architecture, architecture_key
from napari_dip.presets import get_config
from napari_dip.engine.problem import Observation

TRAINING_IMAGES = ("chelsea", "coffee", "rocket", "brick", "grass", "gravel", "horse",
                   "hubble_deep_field", "retina", "motorcycle_left", "page", "text")

SCENE_SETTINGS = {
    "synthetic_share": 0.6,
    "crop_sides": [64, 96],
    "blobs": {"count": [5, 40], "sigma_px": [1.0, 4.0]},
    "filaments": {"count": [2, 12], "width_sigma_px": [0.7, 2.0], "steps": [40, 200]},
    "membranes": {"cells": [3, 20], "width_px": [1.0, 3.0]},
    "background": [0.0, 0.1],
    "peak_intensity": [0.15, 1.0],
    "photons_at_peak_log_uniform": [3.0, 300.0],
    "read_noise_std": [0.0, 0.03],
    "natural_gaussian_sigma_255": [5.0, 50.0],
    "natural_dimming": [0.3, 1.0],
    "natural_poisson_share": 0.5,
}
"""What the synthetic scenes and the noise are drawn from (recorded in the JSON)."""


def load_training_images() -> dict[str, np.ndarray]:
    """The twelve scikit-image pictures, greyscale float32 in [0, 1]."""
    images = {}
    for name in TRAINING_IMAGES:
        image = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
        image = np.asarray(image)
        if image.ndim == 3:
            image = color.rgb2gray(image[..., :3])
        elif image.dtype == bool:
            image = image.astype(np.float32)
        else:
            image = image / 255.0
        images[name] = np.asarray(image, np.float32)
    return images


def _blobs(rng: np.random.Generator, side: int) -> np.ndarray:
    settings, scene = SCENE_SETTINGS["blobs"], np.zeros((side, side), np.float32)
    count = rng.integers(*settings["count"], endpoint=True)
    ys, xs = rng.integers(0, side, (2, count))
    scene[ys, xs] = rng.uniform(0.3, 1.0, count)
    sigma = rng.uniform(*settings["sigma_px"])
    return ndimage.gaussian_filter(scene, sigma) * (2 * np.pi * sigma ** 2)


def _filaments(rng: np.random.Generator, side: int) -> np.ndarray:
    settings, scene = SCENE_SETTINGS["filaments"], np.zeros((side, side), np.float32)
    for _ in range(rng.integers(*settings["count"], endpoint=True)):
        position, angle = rng.uniform(0, side, 2), rng.uniform(0, 2 * np.pi)
        turn, brightness = 0.0, rng.uniform(0.3, 1.0)
        for _ in range(rng.integers(*settings["steps"], endpoint=True)):
            turn = 0.9 * turn + rng.normal(0, 0.05)  # a smooth random curvature
            angle += turn
            position = position + 0.7 * np.array([np.sin(angle), np.cos(angle)])
            y, x = int(position[0]) % side, int(position[1]) % side
            scene[y, x] = max(scene[y, x], brightness)
    sigma = rng.uniform(*settings["width_sigma_px"])
    return ndimage.gaussian_filter(scene, sigma) * (2.5 * sigma)


def _membranes(rng: np.random.Generator, side: int) -> np.ndarray:
    settings = SCENE_SETTINGS["membranes"]
    seeds = rng.uniform(0, side, (rng.integers(*settings["cells"], endpoint=True), 2))
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    distances = np.sort(np.hypot(yy[..., None] - seeds[:, 0], xx[..., None] - seeds[:, 1]), -1)
    gap = distances[..., 1] - distances[..., 0] if len(seeds) > 1 else distances[..., 0]
    width = rng.uniform(*settings["width_px"])
    edges = np.exp(-0.5 * (gap / width) ** 2)
    return ndimage.gaussian_filter(edges, 0.7).astype(np.float32) * rng.uniform(0.3, 1.0)


def synthetic_scene(rng: np.random.Generator, side: int) -> np.ndarray:
    """A clean fluorescence-like scene in [0, 1]: a background plus one to three of blobs,
    filaments and membranes, scaled to a random peak intensity."""
    makers = [_blobs, _filaments, _membranes]
    chosen = rng.choice(3, size=rng.integers(1, 3, endpoint=True), replace=False)
    scene = sum(makers[i](rng, side) for i in chosen)
    scene = scene / max(float(scene.max()), 1e-6) * rng.uniform(*SCENE_SETTINGS["peak_intensity"])
    return np.clip(scene + rng.uniform(*SCENE_SETTINGS["background"]), 0, 1).astype(np.float32)


def photon_noise(rng: np.random.Generator, clean: np.ndarray) -> np.ndarray:
    """Poisson noise with a random photon count at full scale, plus Gaussian read noise."""
    low, high = SCENE_SETTINGS["photons_at_peak_log_uniform"]
    photons = np.exp(rng.uniform(np.log(low), np.log(high)))
    noisy = rng.poisson(clean * photons) / photons
    return noisy + rng.normal(0, rng.uniform(*SCENE_SETTINGS["read_noise_std"]), clean.shape)


def natural_crop(rng: np.random.Generator, images: dict[str, np.ndarray], side: int
                 ) -> np.ndarray:
    """A random, randomly flipped and rotated, possibly dimmed crop of a training picture."""
    image = images[TRAINING_IMAGES[rng.integers(len(TRAINING_IMAGES))]]
    y = rng.integers(0, image.shape[0] - side + 1)
    x = rng.integers(0, image.shape[1] - side + 1)
    crop = np.rot90(image[y:y + side, x:x + side], rng.integers(4))
    crop = crop[:, ::-1] if rng.random() < 0.5 else crop
    return np.ascontiguousarray(crop) * rng.uniform(*SCENE_SETTINGS["natural_dimming"])


def draw_problem(rng: np.random.Generator, images: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One denoising problem: (noisy, clean), float32 in [0, 1]."""
    side = int(rng.choice(SCENE_SETTINGS["crop_sides"]))
    if rng.random() < SCENE_SETTINGS["synthetic_share"]:
        clean = synthetic_scene(rng, side)
        noisy = photon_noise(rng, clean)
    else:
        clean = natural_crop(rng, images, side)
        if rng.random() < SCENE_SETTINGS["natural_poisson_share"]:
            noisy = photon_noise(rng, clean)
        else:
            sigma = rng.uniform(*SCENE_SETTINGS["natural_gaussian_sigma_255"]) / 255
            noisy = clean + rng.normal(0, sigma, clean.shape)
    return np.clip(noisy, 0, 1).astype(np.float32), clean.astype(np.float32)


def short_fit(network: torch.nn.Module, noisy: np.ndarray, config, seed: int, steps: int,
              clean: np.ndarray | None = None) -> tuple[torch.nn.Module, list[float]]:
    """``steps`` steps of the engine's denoising fit from ``network`` (changed in place) on
    ``noisy``; with ``clean``, the PSNR of the output every 25 steps."""
    side = noisy.shape[0]
    observation = Observation(torch.from_numpy(noisy)[None, None], None, 1, (side, side),
                              (side, side))
    code = make_input_code(config, (side, side), 1, torch.Generator().manual_seed(seed))
    short = config.replace(max_iterations=steps, report_every=25, stopping="none")
    curve = []
    for step in fit(observation, short, seed=seed, network=network, code=code):
        if clean is not None:
            error = float(((step.output[0, 0].float().numpy() - clean) ** 2).mean())
            curve.append(round(10 * np.log10(1 / max(error, 1e-12)), 3))
    return step.network, curve


def _save_atomically(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def save_checkpoint(out: Path, key: str, network: torch.nn.Module, record: dict) -> None:
    """The weights (``<key>.pt``) and their record (``<key>.json``), each written atomically."""
    state = {name: value.detach().contiguous().clone() for name, value in
             network.state_dict().items()}
    payload = {"architecture": record["architecture"], "state_dict": state}
    _save_atomically(out / f"{key}.pt", lambda p: torch.save(payload, p))
    _save_atomically(out / f"{key}.json",
                     lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))


def validation_set(seed: int, images: dict[str, np.ndarray], count: int = 4) -> list:
    """Fixed problems from the training distribution (own seed) to follow the training by."""
    rng = np.random.default_rng(seed + 10_000)
    return [draw_problem(rng, images) for _ in range(count)]


def validate(network: torch.nn.Module, problems: list, config, steps: int) -> list[float]:
    """Mean PSNR curve (every 25 steps) of short fits from ``network`` on ``problems``."""
    curves = [short_fit(copy.deepcopy(network), noisy, config, 1000 + i, steps, clean)[1]
              for i, (noisy, clean) in enumerate(problems)]
    return [round(float(v), 3) for v in np.mean(curves, axis=0)]


def reptile_update(meta: torch.nn.Module, adapted: torch.nn.Module, epsilon: float) -> None:
    """Move ``meta``'s floating-point weights and statistics ``epsilon`` of the way to
    ``adapted``'s."""
    adapted_state = adapted.state_dict()
    with torch.no_grad():
        for name, value in meta.state_dict().items():
            if value.is_floating_point():
                value.add_(epsilon * (adapted_state[name].to(value.dtype) - value))


def reproduce_command(args: argparse.Namespace, done: int) -> str:
    """The command that trains these weights again, to the same outer step."""
    return (f"OMP_NUM_THREADS=1 python benchmarks/train_init.py --seed {args.seed} "
            f"--outer-steps {args.outer_steps} --stop-after {done} "
            f"--inner-steps {args.inner_steps[0]} {args.inner_steps[1]} "
            f"--epsilon {args.epsilon[0]} {args.epsilon[1]} "
            f"--checkpoint-every {args.checkpoint_every} --validate-steps {args.validate_steps}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outer-steps", type=int, default=2000,
                        help="planned outer steps (the epsilon schedule spans them)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="end after this many outer steps (default: --outer-steps)")
    parser.add_argument("--minutes", type=float, default=110.0,
                        help="end after this much wall time (with a checkpoint)")
    parser.add_argument("--inner-steps", type=int, nargs=2, default=[50, 150],
                        help="inner DIP steps per problem, drawn uniformly from this range")
    parser.add_argument("--epsilon", type=float, nargs=2, default=[0.5, 0.05],
                        help="outer step size at the start and at the planned end")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--validate-steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    stop_after = args.stop_after or args.outer_steps
    # the shipped weights were trained with the squared error, and fit() is called directly here
    config = get_config("auto", "denoise", data_term="gaussian")
    arch = architecture(config, out_channels=1, in_channels=config.input_channels)
    key = architecture_key(arch)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    meta = seeded_generator_network(config, 1, None, torch.Generator().manual_seed(args.seed))
    images = load_training_images()
    problems = validation_set(args.seed, images)
    record = {"architecture": arch, "key": key, "method": "reptile",
              "package_version": napari_dip.__version__, "torch_version": torch.__version__,
              "seed": args.seed, "training_images": list(TRAINING_IMAGES),
              "scene_settings": SCENE_SETTINGS, "preset": "auto", "task": "denoise",
              "learning_rate": config.learning_rate, "inner_steps": args.inner_steps,
              "epsilon": args.epsilon, "planned_outer_steps": args.outer_steps,
              "threads": torch.get_num_threads(),
              "validation": {"steps": args.validate_steps, "random_start": validate(
                  meta, problems, config, args.validate_steps), "learned": []}}
    args.out.mkdir(parents=True, exist_ok=True)
    start, done = time.monotonic(), 0
    print(f"random start: {record['validation']['random_start']}", flush=True)
    out_of_time = False
    while done < stop_after and not out_of_time:
        noisy, _ = draw_problem(rng, images)
        steps = int(rng.integers(args.inner_steps[0], args.inner_steps[1], endpoint=True))
        adapted, _ = short_fit(copy.deepcopy(meta), noisy, config,
                               int(rng.integers(2 ** 31)), steps)
        share = done / max(1, args.outer_steps - 1)
        reptile_update(meta, adapted, args.epsilon[0] + share * (args.epsilon[1] -
                                                                 args.epsilon[0]))
        done += 1
        out_of_time = time.monotonic() - start >= 60 * args.minutes
        if done % args.checkpoint_every == 0 or done == stop_after or out_of_time:
            curve = validate(meta, problems, config, args.validate_steps)
            record["validation"]["learned"].append({"outer_steps": done, "psnr": curve})
            record.update(outer_steps_done=done, minutes=round((time.monotonic() - start) / 60, 2),
                          reproduce=reproduce_command(args, done))
            save_checkpoint(args.out, key, meta, record)
            print(f"{done} steps, {record['minutes']} min: {curve}", flush=True)


if __name__ == "__main__":
    main()
