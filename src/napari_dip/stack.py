"""From user arrays to the model's tensors and back: layout, channels, intensity scaling, padding.

The generator works on ``(1, C, H, W)`` float tensors in [0, 1] whose sides are multiples of
``2**scales``. Users hand in ``(M, N)`` or ``(M, N, C)`` arrays (any channel axis) of any integer
or float dtype. :class:`IntensityScaling` maps intensities to [0, 1] and back into the input's
dtype and range; :func:`prepare_observation` validates and converts, :func:`to_user_layout` undoes
it. Input arrays are never modified.
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

    Chosen from the data by :meth:`from_image`: uint8 images use the full [0, 255]; floats that
    already lie in [0, 1] are kept as they are; anything else uses robust percentiles
    (0.01 % / 99.99 %), widened so that only far outliers (hot pixels) are clipped.
    """

    low: float
    high: float
    dtype: np.dtype

    @classmethod
    def from_image(cls, image: np.ndarray) -> IntensityScaling:
        dtype = np.dtype(image.dtype)
        if dtype == np.uint8:
            return cls(0.0, 255.0, dtype)
        lo, hi = float(image.min()), float(image.max())
        if dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
            return cls(0.0, 1.0, dtype)
        p_lo, p_hi = np.percentile(image, [0.01, 99.99])
        margin = 0.25 * (p_hi - p_lo)
        lo, hi = max(lo, p_lo - margin), min(hi, p_hi + margin)
        if hi <= lo:  # constant image
            hi = lo + 1.0
        return cls(lo, hi, dtype)

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Intensities -> float32 in [0, 1] (clipped)."""
        unit = (np.asarray(values, dtype=np.float64) - self.low) / (self.high - self.low)
        return np.clip(unit, 0.0, 1.0).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """[0, 1] -> intensities in the original dtype (rounded and clipped for integers)."""
        values = np.asarray(unit, dtype=np.float64) * (self.high - self.low) + self.low
        if self.dtype.kind in "ui":
            info = np.iinfo(self.dtype)
            return np.clip(np.rint(values), info.min, info.max).astype(self.dtype)
        return values.astype(self.dtype)


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


def channels_last(image: np.ndarray, channel_axis: int | None, name: str = "image") -> np.ndarray:
    """``(M, N)`` -> ``(M, N, 1)``; ``channel_axis`` moved last. Refuses other layouts."""
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


def to_user_layout(unit: np.ndarray, scaling: IntensityScaling,
                   channel_axis: int | None) -> np.ndarray:
    """``(M, N, C)`` in [0, 1] -> the caller's layout, dtype and intensity range."""
    return channels_to_layout(scaling.from_unit(unit), channel_axis)


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); replace them first, "
                         f"e.g. with np.nan_to_num, or mark them missing with task='inpaint'")


def _pad_to(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Reflect-pad the two leading axes of ``(M, N, C)`` up to ``shape`` (bottom/right)."""
    pads = [(0, shape[0] - array.shape[0]), (0, shape[1] - array.shape[1]), (0, 0)]
    mode = "reflect" if min(array.shape[:2]) > 1 else "edge"
    return np.pad(array, pads, mode=mode)


def checked_image(image: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Validate a user image of one 2D problem and return it as ``(M, N, C)`` (a view)."""
    image = _as_array("image", image)
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype.kind == "b":
        raise ValueError("image is boolean; pass intensities (e.g. image.astype(np.uint8))")
    hwc = channels_last(image, channel_axis)
    if min(hwc.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image is {hwc.shape[0]}x{hwc.shape[1]} pixels; restoration needs at "
                         f"least {MIN_SIDE}x{MIN_SIDE}")
    _check_finite("image", hwc)
    return hwc


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
    hwc = checked_image(image, channel_axis)
    scaling = scaling or IntensityScaling.from_image(hwc)
    unit = scaling.to_unit(hwc)

    factor = factor or 1
    h, w = hwc.shape[:2]
    # the estimate (factor x larger) must have sides that are multiples of size_multiple, and at
    # least twice that, so the generator's deepest level is wider than one pixel (BatchNorm)
    step = size_multiple // math.gcd(size_multiple, factor)
    smallest = -(-2 * size_multiple // factor)
    ph, pw = (-(-max(side, smallest) // step) * step for side in (h, w))
    known = np.ones((h, w, 1), dtype=np.float32)
    if mask is not None:
        missing = mask_to_missing(mask, hwc.shape, channel_axis)
        known = (~missing).astype(np.float32)
    needs_weight = mask is not None or (ph, pw) != (h, w)
    weight = None
    if needs_weight:
        weight = np.zeros((ph, pw, known.shape[2]), dtype=np.float32)
        weight[:h, :w] = known
    target = _pad_to(unit * known if mask is not None else unit, (ph, pw))

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
        if missing.all():
            raise ValueError("the mask marks every pixel as missing; nothing is left to fit. "
                             "The mask must be true (non-zero) only where pixels are missing")
        return missing
    raise ValueError(f"mask has shape {mask.shape} but the image's pixels are {spatial}; the mask "
                     f"must be {spatial} (true = missing) or match the image's full shape")


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
                 factor: int | None = None) -> None:
        image = _as_array("image", image)
        if image.size == 0:
            raise ValueError(f"image is empty (shape {image.shape})")
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
        _check_finite("image", hwc)
        self._hwc = hwc
        self.leading = hwc.shape[:-3]
        self.indices = list(np.ndindex(*self.leading))
        self.scaling = IntensityScaling.from_image(hwc) if hwc.dtype.kind != "b" else None
        f = factor or 1
        self._result_hwc = np.zeros(self.leading + (hwc.shape[-3] * f, hwc.shape[-2] * f,
                                                    hwc.shape[-1]), dtype=image.dtype)
        self.result = channels_to_layout(self._result_hwc, self.channel_axis)  # a view
        self._mask = self._per_slice_or_shared("mask", mask)
        plane = hwc.shape[-3:-1]
        if self._mask is not None:
            value, per_slice = self._mask
            if (value.shape[len(self.leading):] if per_slice else value.shape) != plane:
                    raise ValueError(f"mask has shape {value.shape}; for this stack it must be "
                                 f"{plane} (one mask for every slice) or {self.leading + plane} "
                                 f"(one per slice), true = missing")
        self._guide = self._per_slice_or_shared("guide", guide)
        # where the channel axis sits among the slice's three axes
        spatial = [a for a in range(image.ndim) if a != self.channel_axis][-2:]
        self._slice_channel = (None if channel_axis is None
                               else sorted(spatial + [self.channel_axis]).index(self.channel_axis))

    def _per_slice_or_shared(self, name, value):
        """``(array, per_slice)``: per slice when its leading axes are the stack's, else shared
        by every slice (its shape is then checked where the slice is prepared)."""
        if value is None:
            return None
        value = _as_array(name, value)
        n = len(self.leading)
        per_slice = n > 0 and value.shape[:n] == self.leading and value.ndim >= n + 2
        return value, per_slice

    def _pick(self, stored, index):
        if stored is None:
            return None
        value, per_slice = stored
        return value[index] if per_slice else value

    def slice(self, index: tuple[int, ...]) -> np.ndarray:
        """The ``(M, N, C)`` slice at ``index`` (a view: never write to it)."""
        return self._hwc[index]

    def mask_slice(self, index):
        return self._pick(self._mask, index)

    def guide_slice(self, index):
        return self._pick(self._guide, index)

    def put(self, index: tuple[int, ...], estimate_hwc: np.ndarray) -> None:
        self._result_hwc[index] = estimate_hwc

    def user_snapshot(self, snapshot):
        """A snapshot whose images are in the caller's slice layout."""
        def layout(hwc):
            return None if hwc is None else channels_to_layout(hwc, self._slice_channel)

        return dataclasses.replace(snapshot, image=layout(snapshot.image),
                                   average=layout(snapshot.average),
                                   estimate=layout(snapshot.estimate),
                                   uncertainty=layout(snapshot.uncertainty))
