"""One 2D problem: user arrays checked and converted to the model's tensors, and back.

The generator works on ``(1, C, H, W)`` float tensors in [0, 1] whose sides are multiples of
``2**scales``. Users hand in ``(M, N)`` or ``(M, N, C)`` arrays (any channel axis) of any integer
or float dtype. :func:`checked_image` validates, :func:`prepare_observation` converts (with an
:class:`~napari_dip.engine.scaling.IntensityScaling`), :func:`channels_to_layout` and
:func:`from_tensor` undo it. Input arrays are never modified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .scaling import IntensityScaling

MIN_SIDE = 4


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
    return observation_of(hwc, missing, factor=factor, guide=guide, size_multiple=size_multiple,
                          scaling=scaling)


@dataclass
class CheckedPlane:
    """One 2D problem as :func:`checked_image` returned it: the image ``(M, N, C)``, where it
    is missing (``(M, N, 1)`` or ``(M, N, C)`` booleans, or None), its guide as given (checked)
    and the intensity scaling it is fitted in."""

    hwc: np.ndarray
    missing: np.ndarray | None
    guide: np.ndarray | None
    scaling: IntensityScaling


def observation_of(hwc: np.ndarray, missing: np.ndarray | None, *, factor: int | None,
                   guide: np.ndarray | None, size_multiple: int,
                   scaling: IntensityScaling | None = None,
                   ) -> tuple[Observation, IntensityScaling]:
    """A checked image ``(M, N, C)`` (and where it is missing) as an :class:`Observation`:
    :func:`prepare_observation` without the checks, for problems checked before."""
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
