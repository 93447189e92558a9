"""One configuration object for every knob of a Deep Image Prior fit, and named presets.

The napari widget, the command line and the run records written beside outputs are all built
from :class:`DIPConfig`, so they cannot drift apart. Each field carries its bounds and a
one-line description in its metadata (see :func:`describe_fields`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

TASKS = ("denoise", "inpaint", "super_resolve")
NETWORKS = ("skip", "hourglass", "deep_decoder")
SUPPORTED_FACTORS = (2, 4, 8)
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

Task = Literal["denoise", "inpaint", "super_resolve"]


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
                           "deviance on photon counts, or squared error after a variance-"
                           "stabilising transform for Poisson-Gaussian noise",
                           choices=("gaussian", "poisson", "poisson_gaussian"))
    gain: float = _knob(1.0, "Poisson models: intensity units per detected photon", low=1e-9,
                        high=1e9)
    read_noise: float = _knob(0.0, "Poisson-Gaussian model: std of the Gaussian (read) noise, in "
                              "intensity units", low=0.0, high=1e9)
    offset: float = _knob(0.0, "Poisson models: dark level (camera offset), in intensity units",
                          low=-1e9, high=1e9)
    tv_weight: float = _knob(0.0, "weight of a total-variation term on the estimate (DIP-TV; "
                             "0: off)", low=0.0, high=10.0)
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
                           "images of 256x256 pixels and more; else float32), or forced; falls "
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
    # large images
    tile_size: int = _knob(0, "side in input pixels of the overlapping tiles a larger image is "
                           "restored in, one fit per tile (0: the whole image in one fit)",
                           low=0, high=65536)
    tile_overlap: int = _knob(32, "tiling: input pixels shared by neighbouring tiles, where their "
                              "estimates are blended with smooth weights", low=0, high=32768)
    tile_above: int = _knob(0, "tiling: a side of the image up to this many input pixels is not "
                            "split, the tiles span it whole (0 or less than tile_size: split "
                            "every side longer than tile_size)", low=0, high=65536)

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
                 "top_channels", "kernel_down", "kernel_up", "kernel_skip", "upsample")),
    ("Input code", ("input_type", "input_channels", "input_scale", "reg_noise_std",
                    "reg_noise_ramp", "reg_noise_ramp_scaling")),
    ("Optimisation", ("learning_rate", "ema_weight", "ema_init", "result", "backtrack_drop_db",
                      "backtrack_every")),
    ("Noise model", ("data_term", "gain", "read_noise", "offset", "tv_weight")),
    ("Bayesian and averaging", ("sgld_noise", "sgld_noise_scaling", "weight_decay", "burn_in",
                                "sample_every", "n_runs")),
    ("Stacks and tiles", ("warm_start_fraction", "stack_passes", "slice_batch", "tile_size",
                          "tile_overlap", "tile_above")),
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


# ----------------------------------------------------------------------------- presets

def _paper(task: str, factor: int | None) -> DIPConfig:
    """The recipes of the Deep Image Prior paper's own code, per task, in its arithmetic
    (float32 throughout, as that code runs), so that this reference gives the same curve on
    every processor."""
    if task == "denoise":
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
    """Small and short: for the demo, tests and a first look (about 15 s for 128x128 on 2 cores)."""
    base = _paper(task, factor)
    return base.replace(scales=4, channels_down=32, channels_up=32,
                        channels_skip=16 if task == "inpaint" else 4, input_channels=16,
                        max_iterations=200, ema_weight=0.9, ema_init="recent", result="ema",
                        report_every=25, backtrack_every=25, precision="auto")


SMALL_NETWORK = dict(channels_down=32, channels_up=32, learning_rate=0.02)
"""The generator of preset fast: the paper's hourglass at 32 channels per level (about a sixth
of the arithmetic per step) with a doubled learning rate."""

SMALL_DENOISER = dict(channels_down=128, channels_up=128, top_channels=8, input_channels=8,
                      learning_rate=SMALL_NETWORK["learning_rate"])
"""The denoising generator of presets auto and fast: the paper's hourglass with narrow fine
levels that widen towards the coarse ones, 8, 16, 32, 64, then 128 channels from full
resolution down, fed an 8-channel input code instead of 32, at :data:`SMALL_NETWORK`'s
learning rate. Measured (docs/log.md, "How preset fast was chosen"):

- narrow fine levels (8, 16, then 32 channels) against 32 channels everywhere: more PSNR
  returned on all 14 CBM3D9 and FMD crops at 64x64 (mean +0.33 dB on CBM3D9), and a step
  about 2.5 times cheaper at 256x256;
- the 8-channel code against 32 channels, over three seeds on those crops: +0.34 dB on the
  FMD microscopy crops, the same on CBM3D9;
- widening the two coarsest levels to 64 and 128 channels instead of 32 (they work on 32x32
  and 16x16 pixels at 256x256, so the step costs about the same): on House at 256x256, over
  two seeds, the paper recipe's best less 0.3 dB was reached in 14 and 23 % less CPU time,
  and 0.12 and 0.15 dB more returned; on the CBM3D9 and FMD crops at 64x64, over two seeds,
  the same within their spread (means +0.05 and -0.04 dB).

On House at 256x256, measured side by side with preset paper on one processor, auto came
within 0.3 dB of the paper recipe's best in 1/20.4 and 1/19.4 of its CPU time to that best
(two seeds; before the input-noise ramp of :data:`DENOISING_RAMP`, with it in 1/22.4 and
1/20.8), at 0.059 s of CPU per step (bfloat16, channels-last) against the paper network's
1.76 s (float32, channels-last), measured taking turns on one core."""

DENOISING_RAMP = dict(reg_noise_ramp=500, reg_noise_ramp_scaling="pixels")
"""The input-code perturbation of presets auto and fast when denoising grows from zero over
their first 500 iterations on images of 256x256 pixels or more, and over a share of them as
large as the image's share of 256x256 pixels below that (125 at 128x128, 31 at 64x64).
Measured (docs/benchmarks/speed.md): on House at 256x256 the paper recipe's best less
0.3 dB came after 1250 and 1300 iterations instead of 1450 and 1500 (two seeds), and
0.08 and 0.13 dB more was returned; on the nine CBM3D9 images in 256x256 crops, with fast's
cap of 3000 iterations (where most were still climbing), 0.11 dB more on average, more on
seven of them (up to 0.21 dB) and less on two (0.09 and 0.07 dB); on the fourteen CBM3D9 and
FMD crops at 128x128 (+0.05 and +0.02 dB on average) and at 64x64 the returned PSNR was the
same within the spread that a change of rounding alone gives. The unscaled ramp of 500
iterations had returned 0.47 and 0.68 dB less on the five FMD crops at 64x64 (two seeds; up to
1.8 dB on fish, which peaks within a few hundred iterations)."""


DENOISING_TILES = dict(tile_size=288, tile_above=432)
"""Presets auto and fast denoise an image with a side longer than 432 pixels in overlapping
tiles of 288 (a side up to 432 stays whole: two tiles of 288 along it would fit most of its
pixels twice). :data:`SMALL_DENOISER` fits a large image's detail slowly. Measured
(docs/benchmarks/tiling.md), one run each, each fit stopped by the hold-out
rule: auto in tiles of 288 against one fit of the whole image returned more on all eight
CBM3D9 photographs of 512x512 and 512x768 (+0.25 to +1.32 dB, mean +0.60, above the whole
run's peak on every one) and on a 512x512 confocal image with real noise (FMD mice, +0.14 dB), for
0.85 to 1.22 times the work; fast on Lena +0.68 dB. At 384x384 (four CBM3D9 crops) tiles
returned +0.19 to +0.71 dB (mean +0.43) but for 1.71 to 2.25 times the work, about the trade
of ``n_runs=2``, so a side up to 432 stays whole (``tile_above=0`` tiles it); at 448x448 (F16)
+0.55 dB for 1.21 times the work. Not measured: tiles on a GPU, where they run one after
another and a step costs about the same at these sizes whatever the image's size."""


def _auto(task: str, factor: int | None) -> DIPConfig:
    """Stopped automatically; the iteration count becomes a ceiling (twice the paper's) rather
    than a guess.

    Denoising holds out 10 % of the pixels and keeps the moving-average estimate where its error
    on them is lowest; inpainting and super-resolution stop where the running variance of the
    outputs is lowest (measured in docs/log.md: on a textured image the variance minimum
    came 2 dB before the best denoising estimate, the hold-out minimum within 0.2 dB).

    Denoising uses :data:`SMALL_DENOISER`, its input perturbation ramped up over the first
    iterations (:data:`DENOISING_RAMP`), and restores an image with a side longer than 432
    pixels in tiles (:data:`DENOISING_TILES`). Measured (with its coarse levels at 32 channels, as
    they were then) against the same preset with the paper's 128-channel network
    (docs/log.md): on average 0.29 dB more on the CBM3D9 crops and more on every FMD
    microscopy crop, at a fraction of the arithmetic per step.
    Inpainting and super-resolution keep the paper's networks (not compared).

    Inpainting waits 500 iterations for a new variance minimum, the other tasks 300: on one of
    five 64x64 inpainting crops run long (barbara) the variance made no new minimum for 300
    iterations while the PSNR went on rising, and 300 stopped it 1.05 dB short; 500, chosen on
    those five, returned an estimate within 0.5 dB of the run's peak on all of them, and then
    on the other six crops of the set too (docs/benchmarks/stopping.md).
    """
    base = _paper(task, factor)
    config = base.replace(stopping="holdout" if task == "denoise" else "variance",
                          variance_window=20, patience=500 if task == "inpaint" else 300,
                          max_iterations=2 * base.max_iterations, result="ema",
                          ema_weight=0.99, ema_init="recent", precision="auto")
    if task != "denoise":
        return config
    return config.replace(**SMALL_DENOISER, **DENOISING_RAMP, **DENOISING_TILES)


def _fast(task: str, factor: int | None) -> DIPConfig:
    """CPU-friendly: auto's stopping with a shorter patience and cap, and small networks for
    every task: :data:`SMALL_DENOISER` for denoising (with auto's tiles for large images),
    :data:`SMALL_NETWORK` otherwise (inpainting with 32-channel skips).

    Chosen by measurement on Set12 Peppers and Airplane (docs/log.md): at 32 channels a
    learning rate of 0.02 reached the peak in fewer steps than 0.01 without losing height;
    removing the input-code noise (and a higher rate) peaked sooner but 2 dB lower; 16 channels
    everywhere gained less per second. Narrowing the fine levels of the 32-channel network
    (``top_channels=8``) was chosen on House at 256x256 and checked on the stopping crops.

    Super-resolution keeps a patience of 1000: on nine Set5 and Set14 crops its PSNR climbed to
    the cap, while the running variance went up to 580 iterations without a new minimum
    (coastguard: from 240 to 820); shorter patiences stopped there, up to 1.4 dB short.
    """
    base = _auto(task, factor)
    network = SMALL_DENOISER if task == "denoise" else SMALL_NETWORK
    return base.replace(**network, channels_skip=32 if task == "inpaint" else 4,
                        patience=1000 if task == "super_resolve" else 200,
                        max_iterations=min(base.max_iterations, 3000),
                        report_every=25, backtrack_every=50)


def _bayesian(task: str, factor: int | None) -> DIPConfig:
    """Bayesian DIP (Cheng et al., CVPR 2019): Langevin dynamics on the weights; the result is
    the posterior mean of the outputs after burn-in, with their standard deviation as an
    uncertainty map. No early stopping needed. In float32, like "paper": reduced precision was
    not measured with the injected weight noise.

    The weight noise (2 x the learning rate, as in the SGLD code that followed the paper, at
    the paper's sigma=25) and the burn-in (the first two thirds of the paper's iterations) were
    chosen on two 64x64 CBM3D9 crops (docs/log.md, "Bayesian DIP"): with a tenth of that
    noise the sampled networks fitted the noise and the posterior mean ended 3.85 dB lower on
    Baboon, 5.61 dB on F16. The noise is scaled to the data's estimated noise level
    (``sgld_noise_scaling="noise"``, at least a quarter): unscaled, it kept the network from
    fitting a dim fluorescence crop (FMD BPAE_B: 33.32 dB, below the noisy input's 38.99);
    scaled, 51.23 dB. Not every fluorescence image gains: on the FMD mice crop the smaller
    noise let the samples fit the image's noise (33.86 dB against 36.60 unscaled).

    In a stack every slice is fitted from scratch with the full schedule
    (``warm_start_fraction=0``): on three slices of the bundled nuclei stack, slices continued
    from the slice before on a quarter of the schedule returned 1.27 and 1.66 dB less than
    fitted alone (27.45 and 26.30 dB against 28.72 and 27.96), and on the full schedule 4.56
    and 5.71 dB less (the samples went on to fit the noise); a stack then costs a fit per
    slice (docs/log.md, "Bayesian DIP")."""
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
"""Named presets: each maps (task, factor) to a :class:`DIPConfig`."""

DEFAULT_PRESET = "auto"
"""The preset of the API, the widget and the command line when none is chosen."""


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


def get_config(preset: str | DIPConfig = "auto", task: str = "denoise", factor: int | None = None,
               **overrides: Any) -> DIPConfig:
    """The configuration of a named preset for a task (and super-resolution factor).

    Parameters
    ----------
    preset : str or DIPConfig
        A name from :data:`PRESETS`, or a ready config (returned with ``overrides`` applied).
    task : {"denoise", "inpaint", "super_resolve"}
    factor : int, optional
        Super-resolution factor (2, 4 or 8); required for ``task="super_resolve"``.
    **overrides
        Settings that replace the preset's, e.g. ``max_iterations=500``.
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
        overrides["burn_in"] = _scaled_burn_in(config, overrides["max_iterations"])
    return config.replace(**overrides) if overrides else config


def _scaled_burn_in(config: DIPConfig, max_iterations: Any) -> Any:
    """``config.burn_in`` as the same share of ``max_iterations`` (returned unchanged when that
    is not a number, for the config's own check to name)."""
    try:
        share = config.burn_in / config.max_iterations
        return int(share * float(max_iterations))
    except (TypeError, ValueError):
        return config.burn_in


def warm_start_config(config: DIPConfig, first_iterations: int) -> DIPConfig:
    """The short schedule of a warm-started slice: ``warm_start_fraction`` of the iterations the
    first slice ran (with a stopping rule, where it stopped) as its cap, the same share of the
    stopping patience (so that a slice the previous weights already fit ends early rather than
    at its cap), an output average short enough to forget the previous slice within that
    schedule, and the full input perturbation from its first step (a fitted network is past
    the early climb that ``reg_noise_ramp`` speeds up). With ``warm_start_fraction=0`` every
    slice starts from scratch and gets ``config`` itself."""
    if config.warm_start_fraction == 0:
        return config
    iterations = max(1, round(first_iterations * config.warm_start_fraction))
    ema_weight = config.ema_weight
    if ema_weight > 0:
        ema_weight = min(ema_weight, max(0.0, 1.0 - 4.0 / iterations))
    patience = max(1, round(config.patience * config.warm_start_fraction))
    return config.replace(max_iterations=iterations, ema_weight=ema_weight, patience=patience,
                          reg_noise_ramp=0, burn_in=_scaled_burn_in(config, iterations))
