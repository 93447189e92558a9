"""The image's own noise: a Poisson-Gaussian model estimated from one image or one stack.

Microscopists rarely know their camera's gain and offset, but the model the likelihoods need,
``variance = gain * signal + read_variance`` (in the image's own units), can be read off the
image itself, as Foi et al. (2008, "Practical Poissonian-Gaussian noise modeling and fitting
for single-image raw-data") do:

1. noise samples from a high-pass filter: each pixel minus the mean of its four diagonal
   neighbours, scaled to the noise's own variance. It removes any locally linear signal,
   keeps little of the fine texture a wider filter lets through, and is nearly blind to
   noise correlated between horizontal or vertical neighbours (a camera's or a scanner's
   read-out), which a filter reaching those neighbours would take for less noise;
2. the local signal level: the mean of the 5 x 5 window;
3. bins of equal count by level; in each, a sample counts as flat unless the high-pass
   averaged over 7 x 7 pixels stands out of its noise (curving signal) or the high-pass
   energy over 7 x 7 pixels exceeds twice the bin's median (edges, spots, texture). Judged
   against the bin itself, not against a fitted model, a wrong first fit cannot feed back;
4. a robust variance per bin (trimmed at 4 MAD-scales around the median); bins whose 5 x 5
   windows hold over 2 % clipped pixels (saturated, or on a clipped dark floor: a spike of
   the lowest frequent value) are left out, as clipping hides part of their noise;
5. a weighted, robust (bisquare) straight-line fit of variance against level, the gain and
   the read variance kept non-negative.

The estimate against ground truth is in ``docs/benchmarks/noise-model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

_LOCAL_WINDOW = 5  # pixels: the local mean
_TEST_WINDOW = 7  # pixels: the curvature and energy tests
# The high-pass: a pixel minus the mean of its four diagonal neighbours.
_HIGH_PASS = np.array([[-0.25, 0.0, -0.25], [0.0, 1.0, 0.0], [-0.25, 0.0, -0.25]])
_FOOTPRINT = max(_LOCAL_WINDOW, _HIGH_PASS.shape[0] + _TEST_WINDOW - 1)  # pixels a sample reads
_CURVATURE_LIMIT = 9.0  # squared z-score: 3 standard deviations of the test's own noise
_ENERGY_LIMIT = 2.0  # times the median energy of the bin
_TRIM = 4.0  # MAD-scales kept around the median in a bin
_TRIMMED_GAUSSIAN_VARIANCE = 0.998929  # variance of N(0, 1) truncated at +-4
_SAMPLES_PER_BIN = 1500
_MAX_CLIPPED = 0.02  # fraction of clipped pixels a bin's windows may hold
_MOSTLY_CLIPPED = 0.2  # a sample whose window is this clipped is not even binned
_MAX_BINS = 32
_MIN_SAMPLES = 1000
_MAX_SAMPLES = 2 ** 20  # over all planes of a stack
_MIN_SAMPLES_PER_BIN = 100
# choose_likelihood: a variance that changes less than 21 % (its standard deviation less than
# 10 %) over the image's range is constant; a read variance under 10 % of the signal-dependent
# variance at the image's median is negligible.
_CONSTANT_VARIANCE_SPAN = 0.21
_NEGLIGIBLE_READ = 0.1


@dataclass(frozen=True)
class NoiseModel:
    """``variance = gain * signal + read_variance``, in the image's own units.

    ``gain`` is the image units per detected photon (Poisson part), ``read_variance`` the
    signal-independent variance (camera read-out, quantisation). ``notes`` say where the fit
    was constrained and why.
    """

    gain: float
    read_variance: float
    notes: tuple[str, ...] = ()

    def variance(self, signal):
        """The noise variance at ``signal`` (negative signal counts as 0)."""
        return self.gain * np.clip(signal, 0, None) + self.read_variance

    def std(self, signal):
        """The noise standard deviation at ``signal``."""
        return np.sqrt(self.variance(signal))

    def as_dict(self) -> dict:
        """The JSON-ready form that snapshots, run records and layer metadata keep."""
        return {"gain": float(self.gain), "read_variance": float(self.read_variance),
                "notes": list(self.notes)}


def _robust_variance(values: np.ndarray) -> float:
    """Variance of ``values`` trimmed at 4 MAD-scales around the median, corrected to be
    unbiased for Gaussian values: a few outliers (an undetected edge) barely move it."""
    centre = np.median(values)
    scale = 1.4826 * np.median(np.abs(values - centre))
    if scale == 0:
        return float(values.var())
    kept = values[np.abs(values - centre) <= _TRIM * scale]
    return float(kept.var() / _TRIMMED_GAUSSIAN_VARIANCE)


def _equal_count_parts(signal: np.ndarray) -> list[np.ndarray]:
    """Indices of the samples in equal-count bins by signal. Equal signals are ordered at
    random (seeded), so that a bin boundary inside a run of equal values does not split it by
    position in the image."""
    count = min(_MAX_BINS, max(1, signal.size // _SAMPLES_PER_BIN))
    tie_breaker = np.random.default_rng(0).random(signal.size)
    return np.array_split(np.lexsort((tie_breaker, signal)), count)


def _weighted_line(levels, variances, weights, *, slope: bool = True,
                   intercept: bool = True) -> tuple[float, float]:
    columns = [levels] * slope + [np.ones_like(levels)] * intercept
    design = np.stack(columns, axis=1) * np.sqrt(weights)[:, None]
    solution = np.linalg.lstsq(design, variances * np.sqrt(weights), rcond=None)[0]
    gain = float(solution[0]) if slope else 0.0
    read = float(solution[-1]) if intercept else 0.0
    return gain, read


def _robust_line(levels, variances, counts, **free) -> tuple[float, float]:
    """Iteratively reweighted least squares: weights ``count / predicted**2`` (a variance
    estimate's own spread grows with the variance) times bisquare weights of the residuals."""
    floor = max(1e-3 * float(np.median(variances)), 1e-12)
    predicted = np.maximum(variances, floor)
    robustness = np.ones_like(levels)
    for _ in range(20):
        gain, read = _weighted_line(levels, variances, counts / predicted ** 2 * robustness,
                                    **free)
        predicted = np.maximum(gain * levels + read, floor)
        if levels.size >= 6:
            z = (variances - predicted) / (predicted * np.sqrt(2 / counts))
            scale = max(1.4826 * float(np.median(np.abs(z))), 1.0)
            robustness = np.clip(1 - (z / (4.685 * scale)) ** 2, 0, None) ** 2
    return gain, read


def _line_model(levels: np.ndarray, variances: np.ndarray, counts: np.ndarray) -> NoiseModel:
    """The model fitted to binned variances, with the gain and read variance kept >= 0."""
    if levels.size < 2 or np.ptp(levels) == 0:
        return NoiseModel(0.0, float(np.average(variances, weights=counts)), (
            "one signal level only: the variance cannot be split into a signal-dependent part "
            "and a constant one, so all of it is taken as read variance",))
    gain, read = _robust_line(levels, variances, counts)
    notes = ()
    if gain < 0:
        notes = (f"the fitted gain was negative ({gain:.3g}): the variance does not grow with "
                 "the signal here, so the gain is held at 0",)
        gain, read = _robust_line(levels, variances, counts, slope=False)
    elif read < 0:
        notes = (f"the fitted read variance was negative ({read:.3g}), as when the image holds "
                 f"a dark offset of about {-read / gain:.3g} (subtract it for an exact model); "
                 "the line is refitted through 0",)
        gain, read = _robust_line(levels, variances, counts, intercept=False)
    return NoiseModel(max(gain, 0.0), max(read, 0.0), notes)


def fit_noise_model(signal, residual) -> NoiseModel:
    """Fit ``variance = gain * signal + read_variance`` to noise samples at known levels.

    With a clean image this is a calibration: ``signal`` the clean values, ``residual`` the
    noisy minus the clean. The samples are binned by signal into equal-count bins, each bin's
    variance is robust (trimmed at 4 MAD-scales), and the line is a weighted bisquare fit. The
    gain and the read variance are kept non-negative: where the free fit gives a negative one,
    the line is refitted with it held at 0 and a note says why.

    Parameters
    ----------
    signal, residual : array_like
        The same number of values, any shape.
    """
    signal = np.asarray(signal, dtype=np.float64).ravel()
    residual = np.asarray(residual, dtype=np.float64).ravel()
    if signal.size != residual.size or signal.size < 2:
        raise ValueError(f"signal and residual need the same number (at least 2) of values, got "
                         f"{signal.size} and {residual.size}")
    parts = _equal_count_parts(signal)
    return _line_model(np.array([signal[part].mean() for part in parts]),
                       np.array([_robust_variance(residual[part]) for part in parts]),
                       np.array([part.size for part in parts], dtype=float))


@cache
def _curvature_noise_gain() -> float:
    """Variance of the curvature test (the high-pass averaged over 7 x 7) over the pixel noise
    variance, for independent noise."""
    from scipy.ndimage import correlate, uniform_filter

    impulse = np.zeros((4 * _FOOTPRINT + 1,) * 2)
    impulse[impulse.shape[0] // 2, impulse.shape[1] // 2] = 1.0
    high_pass = correlate(impulse, _HIGH_PASS, mode="constant")
    return float((uniform_filter(high_pass, _TEST_WINDOW, mode="constant") ** 2).sum())


def _clipped_floor(plane: np.ndarray) -> float | None:
    """The value the plane's dark end is clipped at, if any: the lowest value held by at least
    1 % of the pixels, when it is more frequent than the next value up. A clipped floor is a
    spike there; the dark end of unclipped noise rises towards its mode instead."""
    values = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane.ravel()
    distinct, counts = np.unique(values, return_counts=True)
    frequent = np.flatnonzero(counts >= 0.01 * values.size)
    if frequent.size == 0 or frequent[0] + 1 >= distinct.size:
        return None
    first = frequent[0]
    return float(distinct[first]) if counts[first] > counts[first + 1] else None


def _plane_samples(plane: np.ndarray, excluded: np.ndarray | None, floor: float | None,
                   limit: int, rng: np.random.Generator) -> np.ndarray:
    """(5, n) rows: level, noise sample, curvature and energy (both in variance units), and the
    fraction of clipped pixels (saturated, or at or below the floor) in the sample's 5 x 5
    window, at up to ``limit`` pixels with no unknown (masked, non-finite) pixel within the
    tests' 9 x 9 window."""
    from scipy.ndimage import correlate, uniform_filter

    values = plane.astype(np.float64)
    known = np.isfinite(values) if excluded is None else np.isfinite(values) & ~excluded
    if not known.any():
        return np.empty((5, 0))
    clipped = values <= (-np.inf if floor is None else floor)
    if np.issubdtype(plane.dtype, np.integer):
        clipped |= plane == np.iinfo(plane.dtype).max
    values = np.where(known, values, np.median(values[known]))
    level = uniform_filter(values, _LOCAL_WINDOW, mode="reflect")
    high_pass = correlate(values, _HIGH_PASS, mode="reflect")
    sample = high_pass / np.sqrt((_HIGH_PASS ** 2).sum())
    curvature = uniform_filter(high_pass, _TEST_WINDOW, mode="reflect") ** 2
    energy = uniform_filter(sample ** 2, _TEST_WINDOW, mode="reflect")
    clipped_fraction = uniform_filter(clipped.astype(np.float64), _LOCAL_WINDOW, mode="reflect")
    known_around = uniform_filter(known.astype(np.float64), _FOOTPRINT, mode="constant")
    where = np.flatnonzero(known_around > 1 - 1e-9)
    if where.size > limit:
        where = np.sort(rng.choice(where, limit, replace=False))
    return np.stack([row.ravel()[where] for row in (
        level, sample, curvature / _curvature_noise_gain(), energy, clipped_fraction)])


def _fit_flat_samples(samples: np.ndarray) -> NoiseModel:
    """Bin the samples by level; in each bin keep the flat ones, judged against the bin's
    median energy (robust to a minority of edges, and independent of any model fit); leave out
    bins whose windows are clipped too often; fit."""
    level, sample, curvature, energy, clipped = samples[:, samples[4] < _MOSTLY_CLIPPED]
    levels, variances, counts = [], [], []
    for part in _equal_count_parts(level) if level.size else []:
        reference = np.median(energy[part])
        flat = part[(energy[part] <= _ENERGY_LIMIT * reference)
                    & (curvature[part] <= _CURVATURE_LIMIT * reference)]
        # clipping 2 % of a Gaussian's lower tail hides about 4 % of its variance
        if flat.size >= _MIN_SAMPLES_PER_BIN and np.mean(clipped[flat]) <= _MAX_CLIPPED:
            levels.append(level[flat].mean())
            variances.append(_robust_variance(sample[flat]))
            counts.append(flat.size)
    if len(counts) < 2:
        raise ValueError(
            f"too few unclipped, flat regions to measure the noise in ({len(counts)} level(s) "
            f"of {_MIN_SAMPLES_PER_BIN}+ pixels less than {100 * _MAX_CLIPPED:g} % clipped): "
            "the image is mostly clipped at its dark or bright end, or all edges and texture. "
            "Estimate the model on another image of the same camera and settings, or a stack")
    return _line_model(np.array(levels), np.array(variances), np.array(counts, dtype=float))


def _check_image(image, name: str, ndim: int, hint: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != ndim:
        raise ValueError(f"{name} expects {hint}, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{name} needs real intensities, got dtype {array.dtype}")
    return array


def _check_mask(mask, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape[-mask.ndim:] or mask.ndim not in (2, len(shape)):
        raise ValueError(f"the mask, shape {mask.shape}, must have the image's shape {shape} "
                         "(or its plane's, for a stack)")
    return np.broadcast_to(mask.astype(bool), shape)


def _estimate(planes: np.ndarray, excluded: np.ndarray | None) -> NoiseModel:
    rng = np.random.default_rng(0)
    limit = max(_MAX_SAMPLES // len(planes), 2 ** 14)
    floors = [_clipped_floor(plane) for plane in planes]
    samples = np.concatenate([
        _plane_samples(plane, None if excluded is None else excluded[index], floors[index],
                       limit, rng)
        for index, plane in enumerate(planes)], axis=1)
    if samples.shape[1] < _MIN_SAMPLES:
        raise ValueError(
            f"only {samples.shape[1]} pixels have a usable {_FOOTPRINT} x {_FOOTPRINT} "
            "neighbourhood (no masked or non-finite pixel), at least "
            f"{_MIN_SAMPLES} are needed: pass a larger image (about 48 x 48 or more), or mask "
            "fewer pixels")
    model = _fit_flat_samples(samples)
    clipped = sorted({floor for floor in floors if floor is not None})
    if clipped:
        where = "" if len(planes) == 1 else f" in {len(planes) - floors.count(None)} planes"
        note = (f"the dark end is clipped at {', '.join(f'{v:g}' for v in clipped)}{where}: "
                "pixels near it were left out, as clipping hides part of their noise")
        model = NoiseModel(model.gain, model.read_variance, (*model.notes, note))
    return model


def estimate_noise_model(image, *, mask=None) -> NoiseModel:
    """The Poisson-Gaussian noise model of one image, from the image alone.

    Parameters
    ----------
    image : array_like, shape (H, W)
        One plane, in its own units (uint8, uint16 or float). For integer images, pixels at the
        type's maximum count as saturated and are left out with their neighbourhoods.
    mask : array_like of bool, shape (H, W), optional
        True where a pixel is unknown (as for inpainting): it is left out.

    Returns
    -------
    NoiseModel

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> signal = np.linspace(10, 200, 128)[None, :].repeat(128, axis=0)
    >>> image = 2.0 * rng.poisson(signal / 2.0) + rng.normal(0, 3, signal.shape)
    >>> model = estimate_noise_model(image)
    >>> bool(abs(model.gain - 2) < 0.2 and abs(model.read_variance - 9) < 2)
    True
    """
    array = _check_image(image, "estimate_noise_model", 2,
                         "one plane (H, W): for a stack use estimate_noise_model_stack, for "
                         "channels estimate each one, e.g. image[..., 0]")
    excluded = _check_mask(mask, array.shape)
    return _estimate(array[None], None if excluded is None else excluded[None])


def estimate_noise_model_stack(stack, *, mask=None) -> NoiseModel:
    """One noise model for all planes of a stack, from the samples of every plane pooled.

    Parameters
    ----------
    stack : array_like, shape (S, H, W)
        Planes of one acquisition (same camera and settings).
    mask : array_like of bool, shape (S, H, W) or (H, W), optional
        True where a pixel is unknown.
    """
    array = _check_image(stack, "estimate_noise_model_stack", 3,
                         "a stack of planes (S, H, W): reshape other axes into S")
    return _estimate(array, _check_mask(mask, array.shape))


def choose_likelihood(model: NoiseModel, image) -> Literal["gaussian", "poisson",
                                                             "poisson_gaussian"]:
    """The data term that suits ``model`` on ``image``'s range of values.

    The image's range runs from its 1st to its 99th percentile (negative values count as 0).

    - ``"gaussian"`` when the variance is as good as constant over that range: it changes by
      under 21 % (its standard deviation by under 10 %), whatever the gain;
    - ``"poisson"`` when the read variance is under 10 % of the signal-dependent variance at
      the image's median;
    - ``"poisson_gaussian"`` otherwise.
    """
    values = np.asarray(image, dtype=np.float64)
    values = np.clip(values[np.isfinite(values)], 0, None)
    if values.size == 0:
        raise ValueError("the image has no finite value to choose a likelihood from")
    low, median, high = np.percentile(values, [1, 50, 99])
    if model.gain * (high - low) <= _CONSTANT_VARIANCE_SPAN * model.variance(low):
        return "gaussian"
    if model.read_variance <= _NEGLIGIBLE_READ * model.gain * median:
        return "poisson"
    return "poisson_gaussian"


def auto_data_term(image: np.ndarray, missing: np.ndarray | None = None,
                   ) -> tuple[dict, dict]:
    """What ``data_term="auto"`` becomes for ``image``: the settings of the likelihood that
    :func:`choose_likelihood` picks for the noise model estimated from it, and a report of the
    estimate for snapshots and records.

    ``image`` is ``(..., M, N, C)``: every plane and channel is pooled into one estimate (one
    camera). ``missing`` (broadcast to it) marks pixels that hold no data. Where the noise
    cannot be measured (too small, clipped or textured), the data term is Gaussian and the
    report says why. The model has no dark-offset term: an offset ``c`` lowers the fitted read
    variance by ``gain * c`` (below 0, the line is refitted through 0), and the Poisson
    likelihood counts it as signal.
    """
    plane = image.shape[-3:-1]
    planes = np.moveaxis(image, -1, -3).reshape((-1,) + plane)
    excluded = None
    if missing is not None:
        excluded = np.moveaxis(np.broadcast_to(missing, image.shape), -1, -3).reshape(
            planes.shape)
    try:
        model = estimate_noise_model_stack(planes, mask=excluded)
    except ValueError as error:
        return {"data_term": "gaussian"}, {"data_term": "gaussian", "noise_model": None,
                                           "note": str(error)}
    values = planes if excluded is None else planes[~excluded]
    chosen = choose_likelihood(model, values)
    settings = {"data_term": chosen}
    if chosen != "gaussian":
        settings.update(gain=float(model.gain), offset=0.0,
                        read_noise=float(np.sqrt(model.read_variance)))
    return settings, {"data_term": chosen, "noise_model": model.as_dict()}
