"""From user arrays to the model's tensors and back: layout, channels, intensity scaling, padding.

The generator works on ``(1, C, H, W)`` float tensors in [0, 1] whose sides are multiples of
``2**scales``. Users hand in ``(M, N)`` or ``(M, N, C)`` arrays (any channel axis) of any integer
or float dtype. :class:`IntensityScaling` maps intensities to [0, 1] and back into the input's
dtype and range; :func:`prepare_observation` validates and converts, :func:`channels_to_layout`
and :meth:`IntensityScaling.from_unit` undo it. Input arrays are never modified.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

MIN_SIDE = 4


@dataclass(frozen=True)
class IntensityScaling:
    """Affine map between an image's intensities ``[low, high]`` and the model's [0, 1].

    Chosen from the data by :meth:`from_image`: uint8 images use the full [0, 255] and floats
    that lie in [0, 1] are kept as they are, unless their pixels span less than a twentieth
    of that range (:data:`FIXED_RANGE_SHARE`); anything else (other integers, other floats,
    very dim or flat uint8 and [0, 1] images) uses robust percentiles (0.01 % / 99.99 %), widened
    so that only far outliers (hot pixels) are clipped. Only known pixels count: those an
    inpainting mask marks missing hold no data.
    """

    low: float
    high: float
    dtype: np.dtype

    @classmethod
    def from_image(cls, image: np.ndarray, missing: np.ndarray | None = None
                   ) -> IntensityScaling:
        """The scaling of ``image``, from its pixels where ``missing`` (broadcast to the image's
        shape; None: nothing missing) is false."""
        dtype = np.dtype(image.dtype)
        values = image if missing is None else image[~np.broadcast_to(missing, image.shape)]
        lo, hi = float(values.min()), float(values.max())
        fixed = (0.0, 255.0) if dtype == np.uint8 else (
            (0.0, 1.0) if dtype.kind == "f" and lo >= 0.0 and hi <= 1.0 else None)
        if fixed is not None and hi - lo >= FIXED_RANGE_SHARE * (fixed[1] - fixed[0]):
            return cls(*fixed, dtype)
        if not np.isfinite(hi - lo):
            raise ValueError(f"image spans {lo:g} to {hi:g}, more than float64 arithmetic can "
                             f"scale; divide it by a constant first (e.g. image / {hi:g})")
        p_lo, p_hi = np.percentile(values, [0.01, 99.99])
        margin = 0.25 * (p_hi - p_lo)
        lo, hi = max(lo, p_lo - margin), min(hi, p_hi + margin)
        if hi <= lo:  # constant image: a unit (or, far from zero, a relative) width centred
            width = max(1.0, 1e-6 * abs(lo))  # on the value, which the network then reaches
            lo, hi = lo - width / 2, lo + width / 2  # from either side
        return cls(lo, hi, dtype)

    @property
    def range(self) -> tuple[float, float]:
        """``(low, high)``, as ``intensity_range=`` takes it."""
        return self.low, self.high

    @classmethod
    def given(cls, intensity_range, dtype) -> IntensityScaling:
        """The scaling that maps ``intensity_range`` (low, high) to [0, 1], checked."""
        try:
            low, high = (float(v) for v in intensity_range)
        except (TypeError, ValueError):
            low = high = float("nan")
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"intensity_range={intensity_range!r} must be two finite numbers "
                             f"(low, high) with low < high")
        return cls(low, high, np.dtype(dtype))

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Intensities -> float32 in [0, 1] (clipped), in float64 a block of rows at a time
        (:func:`map_blocks`)."""
        return map_blocks(self._to_unit_block, values, dtype=np.float32)

    def _to_unit_block(self, values: np.ndarray) -> np.ndarray:
        unit = values.astype(np.float64)  # a copy, changed in place
        unit -= self.low
        unit /= self.high - self.low
        return np.clip(unit, 0.0, 1.0, out=unit)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """[0, 1] -> intensities in the original dtype (rounded and clipped for integers).

        The arithmetic is float64 (exact enough for any dtype's range), done a block of rows
        at a time (:func:`map_blocks`).
        """
        return map_blocks(self._from_unit_block, unit, dtype=self.dtype)

    def _from_unit_block(self, unit: np.ndarray) -> np.ndarray:
        values = unit.astype(np.float64)  # a copy, whatever the dtype: changed in place below
        values *= self.high - self.low
        values += self.low
        if self.dtype.kind in "ui":
            info = np.iinfo(self.dtype)
            # the largest float64 not above the dtype's maximum (2**63 - 1 rounds up to 2**63)
            top = np.nextafter(np.float64(info.max), -np.inf) \
                if int(np.float64(info.max)) > info.max else np.float64(info.max)
            np.rint(values, out=values)
            np.clip(values, info.min, top, out=values)
        return values.astype(self.dtype, copy=False)

    def spread_from_unit(self, unit_std: np.ndarray) -> np.ndarray:
        """A spread in [0, 1] units (a standard deviation) -> intensity units, float32 (the
        offset ``low`` does not apply)."""
        return np.multiply(unit_std, np.float32(self.high - self.low), dtype=np.float32)


def map_blocks(function, *arrays, dtype) -> np.ndarray:
    """``function`` applied to ``arrays`` (all of one shape) a block of leading rows at a time,
    into a new array of ``dtype`` (cast as ``astype`` casts). For elementwise work in float64 on
    whole planes: no plane-sized float64 temporaries, and blocks that stay in the cache."""
    arrays = [np.asarray(array) for array in arrays]
    if arrays[0].ndim == 0:
        return np.asarray(function(*(a.reshape(1) for a in arrays))).astype(dtype).reshape(())
    result = np.empty(arrays[0].shape, dtype=dtype)
    rows = max(1, BLOCK_ELEMENTS // max(1, arrays[0][0].size))
    for start in range(0, len(result), rows):
        result[start:start + rows] = function(*(a[start:start + rows] for a in arrays))
    return result


BLOCK_ELEMENTS = 1 << 16
"""Elements per block of :func:`map_blocks`: 512 KiB of float64 temporaries, which stay in the
cache instead of streaming a whole plane's through memory several times
(benchmarks/snapshot_cost.py measures the effect on the snapshots of a large plane)."""


FIXED_RANGE_SHARE = 0.05
"""uint8 images, and float images in [0, 1], keep that range as the model's [0, 1] when their
pixels span at least this share of it; a dimmer or flatter one is stretched like any other
image. Measured (docs/log.md, "Dim images"): the noisy cell scaled into [0, 0.02] of
[0, 1] came out 4.7 dB below the same image in [0, 1] unstretched, and at par stretched; three
dim FMD confocal crops spanning 0.09 to 0.32 of [0, 1] gained nothing from stretching (-0.53
to +0.19 dB, one run each), so those keep the fixed range."""


@dataclass
class Observation:
    """One 2D restoration problem in model space.

    ``target`` is the observed image ``(1, C, h, w)`` in [0, 1], padded; ``weight`` is 1 where a
    pixel is known and 0 where it is masked or padding (None: all known). The estimate has size
    ``size`` (``factor`` times the padded observation) and is cropped to ``crop`` at the end.
    """

    target: torch.Tensor
    weight: torch.Tensor | None
    factor: int
    size: tuple[int, int]
    crop: tuple[int, int]
    guide: torch.Tensor | None = None
    to_input: tuple[float, float] = (1.0, 0.0)


def _as_array(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return array


def check_channel_axis(channel_axis) -> None:
    """Refuse a ``channel_axis`` that is not None or an integer (``True`` included)."""
    if channel_axis is not None and (isinstance(channel_axis, (bool, np.bool_)) or
                                     not isinstance(channel_axis, (int, np.integer))):
        raise ValueError(f"channel_axis={channel_axis!r} must be an integer axis (e.g. -1 for "
                         f"channels last) or None for a greyscale image")


def channels_last(image: np.ndarray, channel_axis: int | None, name: str = "image") -> np.ndarray:
    """``(M, N)`` -> ``(M, N, 1)``; ``channel_axis`` moved last. Refuses other layouts."""
    check_channel_axis(channel_axis)
    if channel_axis is None:
        if image.ndim != 2:
            hint = ("pass channel_axis= for a colour or multichannel image, or use restore_stack() "
                    "for a stack of slices" if image.ndim >= 3 else "")
            raise ValueError(f"{name} has shape {image.shape}: restore() expects a 2D image (M, N) "
                             f"or (M, N, C) with channel_axis{'; ' + hint if hint else ''}")
        return image[..., None]
    if image.ndim != 3:
        raise ValueError(f"{name} has shape {image.shape} with channel_axis={channel_axis}: "
                         f"expected 3 dimensions, two spatial and one channel axis")
    if not -3 <= channel_axis < 3:
        raise ValueError(f"channel_axis={channel_axis} is out of range for a 3D {name}")
    return np.moveaxis(image, channel_axis, -1)


def channels_to_layout(hwc: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """``(M, N, C)`` -> ``(M, N)`` without a channel axis, else the channels moved to
    ``channel_axis`` (the inverse of :func:`channels_last`)."""
    if channel_axis is None:
        return hwc[..., 0]
    return np.moveaxis(hwc, -1, channel_axis)


def _check_finite(name: str, array: np.ndarray, missing: np.ndarray | None = None) -> None:
    """Refuse NaN or infinite values in ``array``, except where ``missing`` (broadcast to its
    shape) marks pixels that hold no data."""
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if missing is not None:
        bad &= ~np.broadcast_to(missing, array.shape)
    if bad.any():
        # worded for every front end: Python, the command line and the widget
        fix = ("replace them with numbers first, or, where pixels hold no data, inpaint "
               "them: a mask (or Labels layer) marking them missing" if name == "image"
               else "replace them with numbers first")
        where = " outside the mask" if missing is not None else ""
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s){where}; "
                         f"{fix}")


def _pad_to(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Reflect-pad the two leading axes of ``(M, N, C)`` up to ``shape`` (bottom/right)."""
    pads = [(0, shape[0] - array.shape[0]), (0, shape[1] - array.shape[1]), (0, 0)]
    mode = "reflect" if min(array.shape[:2]) > 1 else "edge"
    return np.pad(array, pads, mode=mode)


def checked_image(image: np.ndarray, channel_axis: int | None, mask=None,
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a user image of one 2D problem (and its inpainting mask): the image as
    ``(M, N, C)`` (a view) and the mask as :func:`mask_to_missing` returns it (None without a
    mask). Pixels the mask marks missing may hold anything, NaN included."""
    image = _as_array("image", image)
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype.kind == "b":
        raise ValueError("image is boolean (a mask?); restore an image of intensities, e.g. "
                         "the mask converted to 8-bit integers")
    hwc = channels_last(image, channel_axis)
    if min(hwc.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image is {hwc.shape[0]}x{hwc.shape[1]} pixels; restoration needs at "
                         f"least {MIN_SIDE}x{MIN_SIDE}")
    missing = None if mask is None else mask_to_missing(mask, hwc.shape, channel_axis)
    _check_finite("image", hwc, missing)
    return hwc, missing


def prepare_observation(image: np.ndarray, *, mask: np.ndarray | None, factor: int | None,
                        guide: np.ndarray | None, channel_axis: int | None,
                        size_multiple: int, scaling: IntensityScaling | None = None,
                        ) -> tuple[Observation, IntensityScaling]:
    """Validate a user image (and mask, guide) and convert it to an :class:`Observation`.

    ``mask`` is true (non-zero) where a pixel is missing, shaped ``(M, N)`` or like the image.
    The estimate's sides are padded to multiples of ``size_multiple``; padding is unknown to the
    loss, never mistaken for data, and cropped off the result. ``scaling`` imposes an intensity
    mapping (a stack's, shared by its slices) instead of one fitted to this image.
    """
    hwc, missing = checked_image(image, channel_axis, mask)
    scaling = scaling or IntensityScaling.from_image(hwc, missing)
    unit = scaling.to_unit(hwc)

    factor = factor or 1
    h, w = hwc.shape[:2]
    # the estimate (factor x larger) must have sides that are multiples of size_multiple, and at
    # least twice that, so the generator's deepest level is wider than one pixel (BatchNorm)
    step = size_multiple // math.gcd(size_multiple, factor)
    smallest = -(-2 * size_multiple // factor)
    ph, pw = (-(-max(side, smallest) // step) * step for side in (h, w))
    known = np.ones((h, w, 1), dtype=np.float32)
    if missing is not None:
        known = (~missing).astype(np.float32)
        unit = np.where(missing, np.float32(0), unit)  # whatever they held (NaN too): no data
    weight = None
    if missing is not None or (ph, pw) != (h, w):
        weight = np.zeros((ph, pw, known.shape[2]), dtype=np.float32)
        weight[:h, :w] = known
    target = _pad_to(unit, (ph, pw))

    size = (ph * factor, pw * factor)
    guide_tensor = None
    if guide is not None:
        guide_tensor = _prepare_guide(guide, (h * factor, w * factor), size)
    observation = Observation(target=_to_tensor(target),
                              weight=None if weight is None else _to_tensor(weight),
                              factor=factor, size=size, crop=(h * factor, w * factor),
                              guide=guide_tensor,
                              to_input=(scaling.high - scaling.low, scaling.low))
    return observation, scaling


def mask_to_missing(mask, image_shape: tuple[int, ...], channel_axis: int | None) -> np.ndarray:
    """A validated mask as ``(M, N, 1)`` or ``(M, N, C)`` booleans, true = missing."""
    mask = _as_array("mask", mask)
    _check_finite("mask", mask)
    spatial = image_shape[:2]
    missing = None
    if mask.shape == spatial:
        missing = (mask != 0)[..., None]
    elif channel_axis is not None and mask.ndim == 3:
        per_channel = np.moveaxis(mask, channel_axis, -1)
        if per_channel.shape == image_shape:
            missing = per_channel != 0
    if missing is not None:
        _refuse_all_missing(missing)
        return missing
    raise ValueError(f"mask has shape {mask.shape} but the image's pixels are {spatial}; the mask "
                     f"must be {spatial} (true = missing) or match the image's full shape")


def _refuse_all_missing(missing: np.ndarray) -> None:
    if missing.all():
        raise ValueError("the mask marks every pixel as missing; nothing is left to fit. "
                         "The mask must be true (non-zero) only where pixels are missing")


def guide_to_unit(guide, shape: tuple[int, int]) -> np.ndarray:
    """A validated guide image of the restored image's ``shape``, as ``(M', N', C')`` float32
    in [0, 1] (scaled by its own intensity range)."""
    guide = _as_array("guide", guide)
    if guide.ndim == 2:
        guide = guide[..., None]
    if guide.ndim != 3 or guide.shape[:2] != shape:
        raise ValueError(f"guide has shape {guide.shape}; it must be {shape} or {shape + ('C',)} "
                         f"(channels last), the size of the restored image")
    _check_finite("guide", guide)
    return IntensityScaling.from_image(guide).to_unit(guide)


def _prepare_guide(guide, shape: tuple[int, int], padded: tuple[int, int]) -> torch.Tensor:
    return _to_tensor(_pad_to(guide_to_unit(guide, shape), padded))


def _to_tensor(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))[None]


def from_tensor(tensor: torch.Tensor, crop: tuple[int, int], item: int = 0) -> np.ndarray:
    """Item ``item`` of a ``(B, C, H, W)`` tensor -> ``(M, N, C)`` float32 array cropped to
    ``crop``."""
    array = tensor.detach()[item, :, :crop[0], :crop[1]].float().cpu().numpy()
    return array.transpose(1, 2, 0)


class SliceLayout:
    """How a stack ``(..., M, N)`` (with an optional channel axis) splits into 2D slices.

    The last two non-channel axes are the image plane; the others are looped over in C order.
    All slices share one :class:`IntensityScaling`, taken from the whole stack, so the
    restored slices stay consistent with each other. :attr:`result` is the output stack in the
    input's layout, filled slice by slice with :meth:`put`.
    """

    def __init__(self, image, channel_axis: int | None, *, mask=None, guide=None,
                 factor: int | None = None,
                 intensity_range: tuple[float, float] | None = None) -> None:
        image = _as_array("image", image)
        if image.size == 0:
            raise ValueError(f"image is empty (shape {image.shape})")
        check_channel_axis(channel_axis)
        needed = 2 if channel_axis is None else 3
        if image.ndim < needed:
            raise ValueError(f"image has shape {image.shape}: a stack needs at least {needed} "
                             "dimensions" + (" with channel_axis" if channel_axis is not None
                                             else ""))
        if channel_axis is not None and not -image.ndim <= channel_axis < image.ndim:
            raise ValueError(f"channel_axis={channel_axis} is out of range for an image with "
                             f"{image.ndim} dimensions")
        self.channel_axis = None if channel_axis is None else channel_axis % image.ndim
        hwc = image[..., None] if channel_axis is None else np.moveaxis(image, channel_axis, -1)
        self._hwc = hwc
        self.leading = hwc.shape[:-3]
        self.indices = list(np.ndindex(*self.leading))
        f = factor or 1
        plane = hwc.shape[-3:-1]
        self._mask = self._per_slice_or_shared("mask", mask, plane)
        missing = None
        if self._mask is not None:
            value, per_slice = self._mask
            if (value.shape[len(self.leading):] if per_slice else value.shape) != plane:
                raise ValueError(f"mask has shape {value.shape}; for this stack it must be "
                                 f"{plane} (one mask for every slice) or {self.leading + plane} "
                                 f"(one per slice), true = missing")
            _check_finite("mask", value)
            missing = (value != 0)[..., None]
            self._check_every_slice_keeps_pixels(missing[..., 0], per_slice)
        _check_finite("image", hwc, missing)
        self.scaling = None if hwc.dtype.kind == "b" else (
            IntensityScaling.from_image(hwc, missing) if intensity_range is None
            else IntensityScaling.given(intensity_range, hwc.dtype))
        self._result_shape = self.leading + (hwc.shape[-3] * f, hwc.shape[-2] * f,
                                             hwc.shape[-1])
        self._result_hwc = None  # allocated at the first put: a layout that only checks and
        self._uncertainty_hwc = None  # scales a stack (a part of one) never holds its result
        self._guide = self._per_slice_or_shared("guide", guide, (plane[0] * f, plane[1] * f))
        # where the channel axis sits among the slice's three axes
        spatial = [a for a in range(image.ndim) if a != self.channel_axis][-2:]
        self._slice_channel = (None if channel_axis is None
                               else sorted(spatial + [self.channel_axis]).index(self.channel_axis))

    def _check_every_slice_keeps_pixels(self, missing: np.ndarray, per_slice: bool) -> None:
        """Refuse, before any slice is fitted, a mask that leaves some slice no known pixel."""
        if not per_slice:
            _refuse_all_missing(missing)
            return
        full = missing.reshape(len(self.indices), -1).all(axis=1)
        if full.any():
            slices = [self.indices[i] for i in np.flatnonzero(full)]
            raise ValueError(f"the mask marks every pixel of slice(s) {slices[:5]}"
                             f"{' ...' if len(slices) > 5 else ''} as missing, so they have "
                             f"nothing to fit; leave known pixels in every slice")

    def _per_slice_or_shared(self, name, value, plane: tuple[int, int]):
        """``(array, per_slice)``: per slice when its leading axes are the stack's and the
        next two the plane's (``plane``: the sides it must have), else shared by every slice
        (its shape is then checked where the slice is prepared)."""
        if value is None:
            return None
        value = _as_array(name, value)
        n = len(self.leading)
        per_slice = n > 0 and value.shape[:n] == self.leading and value.shape[n:n + 2] == plane
        return value, per_slice

    def _pick(self, stored, index):
        if stored is None:
            return None
        value, per_slice = stored
        return value[index] if per_slice else value

    @property
    def slices_differ(self) -> bool:
        """Whether some slice has a mask or guide of its own (else every slice shares them)."""
        return any(stored is not None and stored[1] for stored in (self._mask, self._guide))

    @property
    def one_guide(self) -> bool:
        """Whether a single guide image serves every slice."""
        return self._guide is not None and not self._guide[1]

    def slice(self, index: tuple[int, ...]) -> np.ndarray:
        """The ``(M, N, C)`` slice at ``index`` (a view: never write to it)."""
        return self._hwc[index]

    def mask_slice(self, index):
        return self._pick(self._mask, index)

    def guide_slice(self, index):
        return self._pick(self._guide, index)

    @property
    def result(self) -> np.ndarray:
        """The output stack in the input's layout and dtype (a view, updated by :meth:`put`;
        slices not put yet are 0)."""
        return channels_to_layout(self._result_array(), self.channel_axis)

    def _result_array(self) -> np.ndarray:
        if self._result_hwc is None:
            self._result_hwc = np.zeros(self._result_shape, dtype=self._hwc.dtype)
        return self._result_hwc

    @property
    def uncertainty(self) -> np.ndarray | None:
        """The per-pixel uncertainty maps put so far, as a float32 stack shaped like
        :attr:`result` (a view; slices without a map are 0); None until one was put."""
        if self._uncertainty_hwc is None:
            return None
        return channels_to_layout(self._uncertainty_hwc, self.channel_axis)

    def get(self, index: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
        """Copies of what :meth:`put` stored for slice ``index``: its ``(M, N, C)`` estimate and
        uncertainty map (None without one)."""
        uncertainty = None if self._uncertainty_hwc is None else \
            self._uncertainty_hwc[index].copy()
        return self._result_array()[index].copy(), uncertainty

    def put(self, index: tuple[int, ...], estimate_hwc: np.ndarray,
            uncertainty_hwc: np.ndarray | None = None) -> None:
        """Store slice ``index``'s estimate (and its uncertainty map, if it has one), both
        ``(M, N, C)`` with the output's plane."""
        self._result_array()[index] = estimate_hwc
        if uncertainty_hwc is not None:
            if self._uncertainty_hwc is None:
                self._uncertainty_hwc = np.zeros(self._result_shape, dtype=np.float32)
            self._uncertainty_hwc[index] = uncertainty_hwc

    def user_snapshot(self, snapshot):
        """A snapshot whose images are in the caller's slice layout."""
        def layout(hwc):
            return None if hwc is None else channels_to_layout(hwc, self._slice_channel)

        return dataclasses.replace(snapshot, image=layout(snapshot.image),
                                   average=layout(snapshot.average),
                                   estimate=layout(snapshot.estimate),
                                   uncertainty=layout(snapshot.uncertainty))
