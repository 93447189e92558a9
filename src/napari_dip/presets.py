"""Named presets: short factories of :class:`~napari_dip.config.DIPConfig`, one per purpose.

Each maps a task (and super-resolution factor) to a config. How each was chosen, and what it
returns on the evaluation images in what time, is in the benchmark pages of the docs
(``docs/benchmarks/``), linked from each preset.
"""

from __future__ import annotations

from typing import Any

from .config import DIPConfig, check_factor, check_task, scaled_burn_in

DENOISING_TASKS = ("denoise", "deconvolve")
"""Tasks whose every pixel is observed, whose presets are denoising's: deconvolution is
denoising through a blur (``docs/benchmarks/deconvolution.md``)."""


def _paper(task: str, factor: int | None) -> DIPConfig:
    """The recipes of the Deep Image Prior paper's own code, per task, in its arithmetic
    (float32 throughout): the reference (``docs/benchmarks/paper.md``)."""
    if task in DENOISING_TASKS:
        # 128/128/4 skip net, bilinear, lr 0.01, reg noise 1/30, 3000 steps, output averaging
        recipe = DIPConfig()
    elif task == "inpaint":
        # the paper's text-/Bernoulli-mask inpainting recipe: wide skips, nearest upsampling
        recipe = DIPConfig(channels_skip=128, upsample="nearest", reg_noise_std=0.03,
                           max_iterations=6000, result="last")
    else:
        # super-resolution: x4 2000 steps with reg noise 0.03, x8 4000 steps with 0.05;
        # the paper ran no x2, which gets the x4 recipe
        iterations, noise = (4000, 0.05) if factor == 8 else (2000, 0.03)
        recipe = DIPConfig(reg_noise_std=noise, max_iterations=iterations, result="last")
    return recipe.replace(precision="float32")


def _quick(task: str, factor: int | None) -> DIPConfig:
    """Small and short: for the demo, tests and a first look (``docs/benchmarks/speed.md``)."""
    base = _paper(task, factor)
    return base.replace(scales=4, channels_down=32, channels_up=32,
                        channels_skip=16 if task == "inpaint" else 4, input_channels=16,
                        max_iterations=200, ema_weight=0.9, ema_init="recent", result="ema",
                        report_every=25, backtrack_every=25, precision="auto")


SMALL_NETWORK = dict(channels_down=32, channels_up=32, learning_rate=0.02)
"""The generator of preset fast for inpainting and super-resolution: the paper's hourglass at
32 channels per level with a doubled learning rate (``docs/benchmarks/speed.md``)."""

SMALL_DENOISER = dict(channels_down=128, channels_up=128, top_channels=8, input_channels=8,
                      learning_rate=SMALL_NETWORK["learning_rate"])
"""The denoising generator of presets auto and fast: the paper's hourglass with narrow fine
levels that widen towards the coarse ones (8, 16, 32, 64, then 128 channels from full
resolution down), fed an 8-channel input code, at :data:`SMALL_NETWORK`'s learning rate
(``docs/benchmarks/speed.md``)."""

DENOISING_RAMP = dict(reg_noise_ramp=500, reg_noise_ramp_scaling="pixels")
"""The input-code perturbation of presets auto and fast when denoising grows from zero over
their first 500 iterations on images of 256x256 pixels or more, over a share of them as large
as the image's share of 256x256 pixels below that (``docs/benchmarks/speed.md``)."""

DECONVOLUTION = dict(tv_weight=1.0, tv_scaling="noise", intensity_headroom=1.5)
"""What presets auto and fast add to denoising's settings when deconvolving: a total-variation
term (DIP-TV, Liu et al. 2019) weighed in the data term's noise units, against the noise the
generator puts where the blur hides it from the data term, and room above the observation's
intensity range for details brighter than their blurred image
(``docs/benchmarks/deconvolution.md``)."""

DENOISING_TILES = dict(tile_size=288, tile_above=432)
"""Presets auto and fast denoise an image with a side longer than 432 pixels in overlapping
tiles of 288, where the small denoiser fits a large image's detail slowly
(``docs/benchmarks/tiling.md``)."""


def _auto(task: str, factor: int | None) -> DIPConfig:
    """The default: stopped automatically, the iteration count (twice the paper's) a ceiling
    rather than a guess (``docs/benchmarks/stopping.md``).

    Denoising holds out 10 % of the pixels and keeps the moving-average estimate where its error
    on them is lowest, with :data:`SMALL_DENOISER`, :data:`DENOISING_RAMP` and
    :data:`DENOISING_TILES`; inpainting and super-resolution keep the paper's networks and stop
    where the running variance of the outputs is lowest (inpainting waits longer for a new
    minimum). Denoising and deconvolution choose their data term from the noise model
    estimated from the image (``data_term="auto"``): the Poisson terms where the noise grows
    with the signal, as in fluorescence, the squared error where it does not
    (``docs/benchmarks/noise-model.md``). Deconvolution takes denoising's settings and
    :data:`DECONVOLUTION` (``docs/benchmarks/deconvolution.md``).
    """
    base = _paper(task, factor)
    config = base.replace(stopping="holdout" if task in DENOISING_TASKS else "variance",
                          variance_window=20, patience=500 if task == "inpaint" else 300,
                          max_iterations=2 * base.max_iterations, result="ema",
                          ema_weight=0.99, ema_init="recent", precision="auto")
    if task not in DENOISING_TASKS:
        return config
    config = config.replace(data_term="auto")
    if task == "deconvolve":
        config = config.replace(**DECONVOLUTION)
    return config.replace(**SMALL_DENOISER, **DENOISING_RAMP, **DENOISING_TILES)


def _fast(task: str, factor: int | None) -> DIPConfig:
    """For a CPU: auto's stopping with a shorter patience and cap, and small networks for every
    task (``docs/benchmarks/speed.md``): :data:`SMALL_DENOISER` for denoising (with auto's
    tiles), :data:`SMALL_NETWORK` otherwise; super-resolution keeps a long patience."""
    base = _auto(task, factor)
    network = SMALL_DENOISER if task in DENOISING_TASKS else SMALL_NETWORK
    return base.replace(**network, channels_skip=32 if task == "inpaint" else 4,
                        patience=1000 if task == "super_resolve" else 200,
                        max_iterations=min(base.max_iterations, 3000),
                        report_every=25, backtrack_every=50)


def _bayesian(task: str, factor: int | None) -> DIPConfig:
    """Bayesian DIP (Cheng et al., CVPR 2019): an uncertainty map beside the result
    (``docs/benchmarks/bayesian.md``).

    Langevin dynamics on the weights, with noise scaled to the data's estimated noise level; the
    result is the posterior mean of the outputs after a burn-in of two thirds of the paper's
    iterations, their standard deviation the uncertainty. No early stopping; float32, like
    "paper"; in a stack every slice is fitted from scratch with the full schedule.
    """
    base = _paper(task, factor)
    return base.replace(sgld_noise=2.0, sgld_noise_scaling="noise", weight_decay=5e-8,
                        burn_in=2 * base.max_iterations // 3, sample_every=10,
                        backtrack_drop_db=0.0, warm_start_fraction=0.0)


PRESETS = {
    "auto": _auto,
    "fast": _fast,
    "paper": _paper,
    "quick": _quick,
    "bayesian": _bayesian,
}
"""Named presets: each maps (task, factor) to a :class:`~napari_dip.config.DIPConfig`."""

DEFAULT_PRESET = "auto"
"""The preset of the API, the widget and the command line when none is chosen."""


def get_config(preset: str | DIPConfig = "auto", task: str = "denoise", factor: int | None = None,
               **overrides: Any) -> DIPConfig:
    """The configuration of a named preset for a task (and super-resolution factor).

    Parameters
    ----------
    preset : str or DIPConfig
        A name from :data:`PRESETS`, or a ready config (returned with ``overrides`` applied).
    task : {"denoise", "inpaint", "super_resolve", "deconvolve"}
    factor : int, optional
        Super-resolution factor (2, 4 or 8); required for ``task="super_resolve"``.
    **overrides
        Settings that replace the preset's, e.g. ``max_iterations=500``.

    Examples
    --------
    >>> config = get_config("fast", "inpaint", max_iterations=500)
    >>> config.max_iterations, config.stopping
    (500, 'variance')
    """
    check_task(task)
    factor = check_factor(task, factor)
    if isinstance(preset, DIPConfig):
        config = preset
    elif isinstance(preset, str) and preset in PRESETS:
        config = PRESETS[preset](task, factor)
    else:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)} or pass a "
                         "DIPConfig")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "max_iterations" in overrides and "burn_in" not in overrides and config.burn_in:
        # a preset's burn-in is a share of its schedule: keep the share when the schedule changes
        overrides["burn_in"] = scaled_burn_in(config, overrides["max_iterations"])
    return config.replace(**overrides) if overrides else config
