"""One configuration object for every knob of a Deep Image Prior fit.

The napari widget, the command line and the run records written beside outputs are all built
from :class:`DIPConfig`, so they cannot drift apart. Each field carries its bounds and a
one-line description in its metadata (see :func:`describe_fields`). The named presets, short
factories of it, are in :mod:`napari_dip.presets`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

TASKS = ("denoise", "inpaint", "super_resolve", "deconvolve")
NETWORKS = ("skip", "hourglass", "deep_decoder")
SUPPORTED_FACTORS = (2, 4, 8)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
INITS = ("random", "learned")

Task = Literal["denoise", "inpaint", "super_resolve", "deconvolve"]


SGLD_REFERENCE_NOISE = 25.0 / 255.0
"""With ``sgld_noise_scaling="noise"``, an observation with this noise std (the paper's
sigma=25 on 8-bit images, in [0, 1] units) gets exactly ``sgld_noise`` x the learning rate."""

SGLD_SCALE_LIMITS = (0.25, 2.0)
"""Bounds of the factor ``sgld_noise_scaling="noise"`` applies to the weight noise."""


RAMP_REFERENCE_SIDE = 256
"""With ``reg_noise_ramp_scaling="pixels"``, an image of this many pixels per side (or more)
gets the whole ``reg_noise_ramp``; a smaller one the share of its pixels."""


def _knob(default: Any, doc: str, *, low: float | None = None, high: float | None = None,
          choices: tuple | None = None) -> Any:
    """A dataclass field with its bounds (or choices) and a one-line description."""
    return field(default=default,
                 metadata={"doc": doc, "low": low, "high": high, "choices": choices})


DEFAULT_HISTORY = 32
"""Checkpoints a run keeps when a front door asks for its history (``return_history=True``,
``--save-history``) and no ``history`` setting is given."""


@dataclass(frozen=True)
class DIPConfig:
    """Every setting of one Deep Image Prior fit, with the paper's denoising recipe as defaults,
    but for the speed settings (``precision``, ``memory_format``, ``cuda_graph``), which default
    to what is fastest on the device ("auto"; preset "paper" computes in float32)."""

    # generator
    network: str = _knob("skip", "generator: hourglass with skip connections ('skip'), the same "
                         "without skips ('hourglass', for large holes) or a Deep Decoder",
                         choices=NETWORKS)
    scales: int = _knob(5, "number of down/up-sampling levels of the generator", low=1, high=8)
    channels_down: int = _knob(128, "feature channels of each encoder level", low=1, high=512)
    channels_up: int = _knob(128, "feature channels of each decoder level", low=1, high=512)
    channels_skip: int = _knob(4, "channels of each skip connection (0: none)", low=0, high=512)
    top_channels: int = _knob(0, "if set, level l of the hourglass has top_channels * 2**l "
                              "channels, capped at channels_down / channels_up (0: the same "
                              "width at every level)", low=0, high=512)
    kernel_down: int = _knob(3, "convolution size in the encoder", low=1, high=7)
    kernel_up: int = _knob(3, "convolution size in the decoder", low=1, high=7)
    kernel_skip: int = _knob(1, "convolution size in the skip connections", low=1, high=7)
    upsample: str = _knob("bilinear", "decoder upsampling mode", choices=("bilinear", "nearest"))
    init: str = _knob("random", "starting weights of the generator: drawn from the seed (the "
                      "paper's DIP) or learned ones shipped with the package for the greyscale "
                      "denoiser of presets auto and fast (fewer steps, but lower PSNR so far: "
                      "docs/benchmarks/learned-init.md); the seed still draws the input code",
                      choices=INITS)
    # input code z
    input_type: str = _knob("noise", "input code: uniform noise or a 2-channel meshgrid",
                            choices=("noise", "meshgrid"))
    input_channels: int = _knob(32, "channels of the noise input code", low=1, high=256)
    input_scale: float = _knob(0.1, "the noise input code is uniform on [0, input_scale]",
                               low=0.0, high=10.0)
    reg_noise_std: float = _knob(1.0 / 30.0, "std of the Gaussian perturbation added to the input "
                                 "code at every step", low=0.0, high=1.0)
    reg_noise_ramp: int = _knob(0, "iterations over which the input-code perturbation grows "
                                "linearly from zero to reg_noise_std (0: full from the start)",
                                low=0, high=1_000_000)
    reg_noise_ramp_scaling: str = _knob("none", "'pixels' shortens reg_noise_ramp in proportion "
                                        "to the image's pixels below "
                                        f"{RAMP_REFERENCE_SIDE}x{RAMP_REFERENCE_SIDE} (a 64x64 "
                                        "image gets a sixteenth of it): small images peak "
                                        "early, while the ramp is still on; 'none' uses "
                                        "reg_noise_ramp as given", choices=("none", "pixels"))
    # optimisation
    learning_rate: float = _knob(0.01, "Adam learning rate", low=1e-6, high=1.0)
    max_iterations: int = _knob(3000, "number of optimisation steps (a ceiling when a stopping "
                                "rule is active)", low=1, high=1_000_000)
    ema_weight: float = _knob(0.99, "weight of the exponential moving average of the outputs "
                              "(0 disables it)", low=0.0, high=0.9999)
    ema_init: str = _knob("first", "start of the moving average: the first output (the paper's "
                          "code); zero with Adam-style bias correction (debiased); or a window "
                          "that grows with the run, a quarter of the steps so far (recent). The "
                          "last two do not drag the untrained network's output along",
                          choices=("first", "debiased", "recent"))
    result: str = _knob("ema", "which estimate restore() returns: the moving average or the "
                        "last output", choices=("ema", "last"))
    report_every: int = _knob(50, "iterations between two snapshots", low=1, high=100_000)
    backtrack_drop_db: float = _knob(5.0, "restore the last good weights when the fit to the data "
                                     "drops by more than this many dB (0 disables)",
                                     low=0.0, high=100.0)
    backtrack_every: int = _knob(100, "iterations between two divergence checks", low=1,
                                 high=100_000)
    # data term and regularisation
    data_term: str = _knob("gaussian", "noise model of the data term: squared error, Poisson "
                           "deviance on photon counts, squared error after a variance-"
                           "stabilising transform for Poisson-Gaussian noise, or auto: the one "
                           "the noise model estimated from the image (or stack) suits, with its "
                           "gain and read noise",
                           choices=("gaussian", "poisson", "poisson_gaussian", "auto"))
    gain: float = _knob(1.0, "Poisson models: intensity units per detected photon", low=1e-9,
                        high=1e9)
    read_noise: float = _knob(0.0, "Poisson-Gaussian model: std of the Gaussian (read) noise, in "
                              "intensity units", low=0.0, high=1e9)
    offset: float = _knob(0.0, "Poisson models: dark level (camera offset), in intensity units",
                          low=-1e9, high=1e9)
    tv_weight: float = _knob(0.0, "weight of a total-variation term on the estimate (DIP-TV; "
                             "0: off)", low=0.0, high=10.0)
    tv_scaling: str = _knob("none", "'noise' weighs the total variation against the data term "
                            "in units of the noise, so that tv_weight means the same with "
                            "every data term and noise level (a pixel one noise std off costs "
                            "1); 'none' adds tv_weight x total variation to the data term as "
                            "it is", choices=("none", "noise"))
    intensity_headroom: float = _knob(1.0, "the model's [0, 1] spans this many times the "
                                      "image's intensity range (from its low end), leaving "
                                      "room for an estimate brighter than the observation (a "
                                      "deconvolved one: blurring dims bright details); 1: the "
                                      "image's range. Not applied to a given intensity_range",
                                      low=1.0, high=10.0)
    # automatic stopping
    stopping: str = _knob("none", "automatic stopping rule: none (run max_iterations), the "
                          "running variance of the outputs (any task) or a held-out share of "
                          "pixels", choices=("none", "variance", "holdout"))
    variance_window: int = _knob(100, "variance rule: averaging horizon in iterations", low=2,
                                 high=100_000)
    patience: int = _knob(500, "stopping rules: stop after this many iterations without a new "
                          "best", low=1, high=1_000_000)
    holdout_fraction: float = _knob(0.1, "holdout rule: share of the observed pixels left out of "
                                    "the loss to validate on", low=0.01, high=0.5)
    # Bayesian DIP (stochastic gradient Langevin dynamics)
    sgld_noise: float = _knob(0.0, "SGLD: std of the Gaussian noise added to the convolution "
                              "weights after each step, in units of the learning rate (0: off)",
                              low=0.0, high=1000.0)
    sgld_noise_scaling: str = _knob("none", "SGLD: 'noise' multiplies the weight noise by the "
                                    "observation's estimated noise std over 25/255 (clipped to "
                                    f"{SGLD_SCALE_LIMITS[0]:g}-{SGLD_SCALE_LIMITS[1]:g}): dim "
                                    "or clean data get less; 'none' uses sgld_noise as given",
                                    choices=("none", "noise"))
    weight_decay: float = _knob(0.0, "L2 weight decay of the optimiser (the SGLD prior)",
                                low=0.0, high=1.0)
    burn_in: int = _knob(0, "SGLD: iterations before posterior samples are averaged", low=0,
                         high=1_000_000)
    sample_every: int = _knob(10, "SGLD: iterations between two posterior samples", low=1,
                              high=100_000)
    n_runs: int = _knob(1, "average the results of this many runs with seeds seed, seed+1, ...",
                        low=1, high=64)
    # stacks
    warm_start_fraction: float = _knob(0.25, "stacks: each slice after the first continues from "
                                       "the previous slice's weights for at most this share "
                                       "of the iterations the first slice ran, with this share "
                                       "of the stopping patience (0: every slice from scratch, "
                                       "full length)", low=0.0, high=1.0)

    stack_passes: int = _knob(1, "stacks: 2 adds a backward pass over the slices, each continuing "
                              "from the slice after it, and averages the two passes' results",
                              low=1, high=2)
    slice_batch: int = _knob(1, "stacks: slices fitted together by one generator, each from its "
                             "own input code, in one batch (on a GPU several slices cost little "
                             "more than one; no gain on a CPU); with warm start, each group "
                             "continues from the previous group's weights", low=1, high=64)
    # speed
    precision: str = _knob("auto", "arithmetic of the generator's forward pass: auto (bfloat16 "
                           "on CUDA GPUs that support it, and on CPUs with native bfloat16 for "
                           "images of 256x256 pixels and more, except a deconvolution under the "
                           "Poisson data term; else float32), or forced; falls "
                           "back to float32 if the loss becomes non-finite", choices=PRECISIONS)
    memory_format: str = _knob("auto", "layout of the generator's activations in memory: "
                               "channels-last (auto: on CUDA, and on CPUs with native bfloat16, "
                               "where a step measured 10 to 30 % cheaper) or PyTorch's default "
                               "(contiguous); the same arithmetic, rounded in another order",
                               choices=MEMORY_FORMATS)
    compile: str = _knob("off", "compile the generator with torch.compile (mode name; worth it "
                         "for long runs on a GPU)", choices=COMPILE_MODES)
    cuda_graph: str = _knob("auto", "CUDA: record each step's forward and backward pass once as a "
                            "CUDA graph and replay it (auto), instead of launching its thousand-"
                            "odd kernels one by one from Python (off); not with float16 or "
                            "compile", choices=("auto", "off"))
    # history of the run
    history: int = _knob(0, "checkpoints of each image plane's estimates kept over the run, to "
                         "look back and choose one (the widget's history slider, the command "
                         "line's --save-history; 0: none kept, at least 2 otherwise)", low=0,
                         high=1024)
    history_budget_mb: float = _knob(256.0, "history: the most memory, in MiB, that the kept "
                                     "checkpoints of one image plane take together", low=0.01,
                                     high=1e6)
    # large images
    tile_size: int = _knob(0, "side in input pixels of the overlapping tiles a larger image is "
                           "restored in, one fit per tile (0: the whole image in one fit)",
                           low=0, high=65536)
    tile_overlap: int = _knob(32, "tiling: input pixels shared by neighbouring tiles, where their "
                              "estimates are blended with smooth weights", low=0, high=32768)
    tile_above: int = _knob(0, "tiling: a side of the image up to this many input pixels is not "
                            "split, the tiles span it whole (0 or less than tile_size: split "
                            "every side longer than tile_size)", low=0, high=65536)
    tile_warm_start: float = _knob(0.0, "tiling: each tile after a plane's first continues from "
                                   "the tile before it for at most this share of the iterations "
                                   "the first tile ran, with this share of the stopping patience "
                                   "(0: every tile from scratch)", low=0.0, high=1.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            # numpy scalars and whole floats (3.0) become plain int / float: the config is
            # recorded as JSON and its integers index and size tensors
            value = _checked_value(f, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        _check_kernels(self)
        _check_burn_in(self)
        _check_tiling(self)
        _check_slice_batch(self)
        if self.history == 1:
            raise ValueError("history=1 cannot keep both the first and the latest checkpoint; "
                             "set history to 2 or more, or 0 to keep none")

    def replace(self, **changes: Any) -> DIPConfig:
        """A copy with some fields changed (validated like the original)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; known settings are "
                             f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every setting, for run records and layer metadata."""
        return dataclasses.asdict(self)


def _checked_value(f: dataclasses.Field, value: Any) -> Any:
    """``value`` checked against the field's choices or bounds, numbers as plain ``int`` /
    ``float`` (numpy scalars accepted, a whole float accepted for an integer setting)."""
    meta = f.metadata
    if meta.get("choices") is not None:
        if value not in meta["choices"]:
            raise ValueError(f"{f.name}={value!r} is not allowed; choose one of "
                             f"{list(meta['choices'])}")
        return value
    expected = int if f.type in ("int", int) else float
    given = value.item() if isinstance(value, np.generic) else value  # as messages show it
    number = isinstance(given, (int, float)) and not isinstance(given, bool)
    if not number or isinstance(given, float) and not (
            math.isfinite(given) and (expected is float or given.is_integer())):
        kind = "an integer" if expected is int else "a finite number"
        raise ValueError(f"{f.name}={given!r} must be {kind}")
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and given < low) or (high is not None and given > high):
        raise ValueError(f"{f.name}={given!r} is out of range; expected "
                         f"{low} <= {f.name} <= {high}")
    return expected(given)


def check_seed(seed: Any) -> None:
    """Refuse a seed that is not an integer from 0 to 2**32 - 1 (what every front end takes)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or \
            not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}")


def check_threads(threads: Any) -> None:
    """Refuse a CPU thread setting other than a positive whole number, ``"auto"`` (measured
    before each fit: :mod:`napari_dip.engine.threads`) or None (the process's count as it is)."""
    if threads is None or threads == "auto":
        return
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or \
            threads < 1:
        raise ValueError(f"threads must be a positive whole number or 'auto', got {threads!r}")


def check_setting(name: str, value: Any) -> None:
    """Check one setting against its own bounds or choices (combinations are checked when the
    whole config is built)."""
    fields = {f.name: f for f in dataclasses.fields(DIPConfig)}
    if name not in fields:
        raise ValueError(f"unknown setting {name!r}; known settings are {sorted(fields)}")
    _checked_value(fields[name], value)


def _check_kernels(config: DIPConfig) -> None:
    for name in ("kernel_down", "kernel_up", "kernel_skip"):
        size = getattr(config, name)
        if size % 2 == 0:
            raise ValueError(f"{name}={size} must be odd (1, 3, 5 or 7), so that a convolution "
                             f"keeps the image centred; use {size - 1} or {size + 1}")


def _check_burn_in(config: DIPConfig) -> None:
    if config.sgld_noise > 0 and config.burn_in >= config.max_iterations:
        raise ValueError(f"burn_in={config.burn_in} is not below max_iterations="
                         f"{config.max_iterations}, so Bayesian DIP would draw no posterior "
                         f"sample (no mean, no uncertainty); lower burn_in (the preset's is two "
                         f"thirds of max_iterations: {2 * config.max_iterations // 3}) or raise "
                         f"max_iterations")


# tiles must be several times the generator's size multiple (2**scales), so that its deepest
# level is a few pixels wide rather than the one pixel a much smaller tile would leave
MIN_TILE_MULTIPLES = 4


def _check_tiling(config: DIPConfig) -> None:
    if config.tile_size == 0:
        return
    smallest = MIN_TILE_MULTIPLES * 2 ** config.scales
    if config.tile_size < smallest:
        enough = max(smallest, 2 * config.tile_overlap + 1)  # what the overlap needs too
        raise ValueError(f"tile_size={config.tile_size} is too small for a generator with "
                         f"scales={config.scales}: tiles need at least {MIN_TILE_MULTIPLES} x "
                         f"2**scales = {smallest} pixels per side; raise tile_size to {enough} "
                         f"or more, lower scales, or set tile_size=0 to restore the image whole")
    if 2 * config.tile_overlap >= config.tile_size:
        raise ValueError(f"tile_overlap={config.tile_overlap} must be less than half of "
                         f"tile_size={config.tile_size}; lower tile_overlap to at most "
                         f"{(config.tile_size - 1) // 2} or raise tile_size")


def _check_slice_batch(config: DIPConfig) -> None:
    if config.slice_batch == 1:
        return
    # tiles clash only with planes large enough to be cut: checked when the stack is known
    clash = [(config.stack_passes == 2, "stack_passes=2", "set stack_passes=1"),
             (config.input_type == "meshgrid", "input_type='meshgrid'",
              "use input_type='noise' (a meshgrid input is the same for every slice, so the "
              "generator could not tell them apart)")]
    for present, name, fix in clash:
        if present:
            raise ValueError(f"slice_batch={config.slice_batch} cannot be combined with {name}; "
                             f"{fix}, or set slice_batch=1")


def describe_fields() -> list[dict[str, Any]]:
    """Name, default, bounds and description of every setting (for the CLI and the widget)."""
    return [{"name": f.name, "default": f.default, "type": f.type, **f.metadata}
            for f in dataclasses.fields(DIPConfig)]


SETTING_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Run length and stopping", ("max_iterations", "stopping", "patience", "variance_window",
                                 "holdout_fraction", "report_every")),
    ("Network", ("network", "scales", "channels_down", "channels_up", "channels_skip",
                 "top_channels", "kernel_down", "kernel_up", "kernel_skip", "upsample",
                 "init")),
    ("Input code", ("input_type", "input_channels", "input_scale", "reg_noise_std",
                    "reg_noise_ramp", "reg_noise_ramp_scaling")),
    ("Optimisation", ("learning_rate", "ema_weight", "ema_init", "result", "backtrack_drop_db",
                      "backtrack_every")),
    ("Noise model", ("data_term", "gain", "read_noise", "offset", "tv_weight", "tv_scaling",
                     "intensity_headroom")),
    ("Bayesian and averaging", ("sgld_noise", "sgld_noise_scaling", "weight_decay", "burn_in",
                                "sample_every", "n_runs")),
    ("Stacks and tiles", ("warm_start_fraction", "stack_passes", "slice_batch", "tile_size",
                          "tile_overlap", "tile_above", "tile_warm_start")),
    ("History", ("history", "history_budget_mb")),
    ("Speed and hardware", ("precision", "memory_format", "compile", "cuda_graph")),
)
"""The settings in sections, everyday ones first, for the widget's form and the command line's
``--help-all``. A field that no section names lands in a last section, "Other"."""


def grouped_fields() -> list[tuple[str, list[dict[str, Any]]]]:
    """:func:`describe_fields` sorted into :data:`SETTING_GROUPS` (each field exactly once)."""
    specs = {spec["name"]: spec for spec in describe_fields()}
    groups = [(title, [specs.pop(name) for name in names if name in specs])
              for title, names in SETTING_GROUPS]
    if specs:
        groups.append(("Other", list(specs.values())))
    return [(title, fields) for title, fields in groups if fields]


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    return task


def check_factor(task: str, factor: int | None) -> int | None:
    if task != "super_resolve":
        if factor not in (None, 1):
            raise ValueError(f"factor={factor!r} only applies to task='super_resolve', "
                             f"not {task!r}")
        return None
    if factor is None:
        raise ValueError(f"task='super_resolve' needs factor=, one of {list(SUPPORTED_FACTORS)}")
    if isinstance(factor, bool) or factor not in SUPPORTED_FACTORS:
        raise ValueError(f"factor={factor!r} is not supported; choose one of "
                         f"{list(SUPPORTED_FACTORS)}")
    return int(factor)


def scaled_burn_in(config: DIPConfig, max_iterations: Any) -> Any:
    """``config.burn_in`` as the same share of ``max_iterations`` (returned unchanged when that
    is not a number, for the config's own check to name)."""
    try:
        share = config.burn_in / config.max_iterations
        return int(share * float(max_iterations))
    except (TypeError, ValueError):
        return config.burn_in


def warm_start_config(config: DIPConfig, first_iterations: int,
                      fraction: float | None = None) -> DIPConfig:
    """The short schedule of a warm-started slice: ``warm_start_fraction`` of the iterations the
    first slice ran (with a stopping rule, where it stopped) as its cap, the same share of the
    stopping patience (so that a slice the previous weights already fit ends early rather than
    at its cap), an output average short enough to forget the previous slice within that
    schedule, and the full input perturbation from its first step (a fitted network is past
    the early climb that ``reg_noise_ramp`` speeds up). With ``warm_start_fraction=0`` every
    slice starts from scratch and gets ``config`` itself. ``fraction`` replaces
    ``warm_start_fraction`` (a tile continued from its neighbour: ``tile_warm_start``)."""
    fraction = config.warm_start_fraction if fraction is None else fraction
    if fraction == 0:
        return config
    iterations = max(1, round(first_iterations * fraction))
    ema_weight = config.ema_weight
    if ema_weight > 0:
        ema_weight = min(ema_weight, max(0.0, 1.0 - 4.0 / iterations))
    patience = max(1, round(config.patience * fraction))
    return config.replace(max_iterations=iterations, ema_weight=ema_weight, patience=patience,
                          reg_noise_ramp=0, burn_in=scaled_burn_in(config, iterations))
