"""One axis model for arrays, TIFF axis letters and napari layers, without Qt, napari or torch.

:class:`ImageAxes` names the role of every axis of an image's data: the channel axis (if any),
the two image-plane axes and the leading axes (Z, T, ...) a stack run loops over. It is built
from an array's ``channel_axis`` (:meth:`ImageAxes.of`), from a napari layer (its RGB flag) or
from a file's axis letters (:meth:`ImageAxes.from_letters`, e.g. ``"TZCYX"``), and arranges data
for the stack runner (:meth:`ImageAxes.to_engine`: the image plane last). For the widget it
also plans which part of a layer a run restores (:func:`plan_run`, :func:`mask_for_plan`) and
where the result goes (:func:`output_geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNEL_AXES = "CS"
"""Axis letters that hold channels: tifffile's C (channel) and S (sample, e.g. RGB)."""


@dataclass(frozen=True)
class ImageAxes:
    """The roles of the axes of an image's data.

    ``channel`` is the data axis holding channels (the last one for RGB layers) or None;
    ``plane`` the two image-plane axes (Y, X: the last two non-channel axes, unless axis letters
    place them elsewhere); ``leading`` every other axis (Z, T, ...), each a candidate for a
    slice-wise stack run. An ``rgb`` layer has no layer dimension (no scale, no slider) for its
    channel axis. ``letters`` are a file's axis letters (empty for an array or a layer).
    """

    ndim: int
    channel: int | None
    plane: tuple[int, int]
    leading: tuple[int, ...]
    rgb: bool = False
    letters: str = ""

    @classmethod
    def of(cls, ndim: int, *, rgb: bool = False, channel: int | None = None) -> ImageAxes:
        """The axes of ``ndim``-D data with a channel axis ``channel`` (or RGB last)."""
        if rgb:
            channel = ndim - 1
        elif channel is not None:
            if not -ndim <= channel < ndim:
                raise ValueError(f"channel axis {channel} is out of range for {ndim}D data")
            channel %= ndim
        spatial = tuple(a for a in range(ndim) if a != channel)
        if len(spatial) < 2:
            raise ValueError(f"the layer has {ndim} dimension(s)"
                             f"{' including channels' if channel is not None else ''}; "
                             f"restoration needs two image-plane axes")
        return cls(ndim, channel, spatial[-2:], spatial[:-2], rgb)

    @classmethod
    def from_letters(cls, letters: str) -> ImageAxes:
        """The axes a file's letters name: C or S channels, Y and X the plane (checked by the
        reader: each letter once, Y and X present)."""
        channels = [i for i, letter in enumerate(letters) if letter in CHANNEL_AXES]
        plane = (letters.index("Y"), letters.index("X"))
        leading = tuple(i for i, letter in enumerate(letters)
                        if letter not in CHANNEL_AXES and i not in plane)
        return cls(len(letters), channels[0] if channels else None, plane, leading,
                   letters=letters)

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.leading + self.plane

    @property
    def layer_dims(self) -> tuple[int, ...]:
        """The data axes that are napari layer dimensions (all but an RGB axis)."""
        return tuple(a for a in range(self.ndim) if not (self.rgb and a == self.channel))

    def _non_channel(self) -> list[int]:
        return [i for i in range(self.ndim) if i != self.channel and
                not (self.letters and self.letters[i] in CHANNEL_AXES)]

    @property
    def order(self) -> tuple[int, ...]:
        """The permutation of the data's axes that puts the image plane last among the
        non-channel axes, as the stack runner wants it (the identity for usual data)."""
        others = self._non_channel()
        if sorted(others[-2:]) == sorted(self.plane):
            return tuple(range(self.ndim))
        channels = [i for i in range(self.ndim) if i not in others]
        return tuple([i for i in others if i not in self.plane] + channels + list(self.plane))

    @property
    def channel_axis(self) -> int | None:
        """The channel axis of the data arranged by :meth:`to_engine` (None: greyscale)."""
        return None if self.channel is None else self.order.index(self.channel)

    @property
    def stack_axes(self) -> str:
        """The looped-over axes' letters (everything but channels and the image plane), in the
        stack runner's order, e.g. ``"TZ"``."""
        permuted = "".join(self.letters[i] for i in self.order)
        return "".join(a for a in permuted if a not in CHANNEL_AXES)[:-2]

    @property
    def slice_channel(self) -> int | None:
        """Where the channel axis sits among a slice's three axes (None: greyscale)."""
        if self.channel is None:
            return None
        return sorted(self.plane + (self.channel,)).index(self.channel)

    def to_engine(self, data: np.ndarray) -> np.ndarray:
        return np.transpose(data, self.order)

    def from_engine(self, data: np.ndarray) -> np.ndarray:
        return np.transpose(data, np.argsort(self.order))

    def mask_to_engine(self, mask: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        """A mask file's array as the stack runner wants it: ``(M, N)`` or one plane per slice.

        Accepts the image plane alone (Y, X), the image's shape without its channel axis, or
        the image's full shape (a pixel is missing when it is missing in any channel).
        Non-zero means missing.
        """
        mask = np.asarray(mask)
        plane = tuple(image_shape[a] for a in self.plane)
        non_channel = self._non_channel()
        if np.squeeze(mask).shape == plane:
            missing = np.squeeze(mask) != 0
            engine_plane = [i for i in self.order if i in non_channel][-2:]
            return missing.T if engine_plane == [self.plane[1], self.plane[0]] else missing
        if mask.shape == tuple(image_shape):
            missing = self.to_engine(mask != 0)
            return missing if self.channel_axis is None else missing.any(axis=self.channel_axis)
        if mask.shape == tuple(image_shape[i] for i in non_channel):
            engine_order = [non_channel.index(i) for i in self.order if i in non_channel]
            return np.transpose(mask != 0, engine_order)
        raise ValueError(f"mask has shape {mask.shape}; for an image of shape {tuple(image_shape)} "
                         f"(axes {self.letters}) it must be the image plane {plane}, the image's "
                         f"shape, or the image's shape without channels")


def stack_scopes(axes: ImageAxes) -> list[tuple[int, ...]]:
    """The choices of axes to loop over in a whole-stack run: each leading axis alone, then
    all of them together when there are several."""
    scopes = [(a,) for a in axes.leading]
    if len(axes.leading) > 1:
        scopes.append(axes.leading)
    return scopes


@dataclass(frozen=True)
class RunPlan:
    """The region of the layer's data one run restores.

    ``region`` indexes the data and keeps every axis (fixed axes become length 1), so the
    restored region lines up with the input once ``fixed`` offsets are added to its translate.
    """

    axes: ImageAxes
    region: tuple[slice, ...]
    fixed: dict[int, int]
    looped: tuple[int, ...]
    factor: int

    def output_shape(self, region_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the restored region, given the shape of the region's input data."""
        out = list(region_shape)
        for a in self.axes.plane:
            out[a] *= self.factor
        return tuple(out)


def plan_run(axes: ImageAxes, shape: tuple[int, ...], position: tuple[int, ...], *,
             stack_axes: tuple[int, ...] | None, factor: int | None = None) -> RunPlan:
    """Plan a run over the current slice (``stack_axes=None``) or a whole stack.

    ``position`` is the viewer's current index along each spatial axis of the data (the layer's
    dimensions, without an RGB axis); ``stack_axes`` are the leading axes to loop over, every
    other leading axis stays at its current index, which must lie in the layer (a
    ``ValueError`` otherwise: the view shows none of its slices).
    """
    if len(shape) != axes.ndim:
        raise ValueError(f"data of shape {shape} does not have {axes.ndim} dimensions")
    stack_axes = tuple(stack_axes or ())
    stray = set(stack_axes) - set(axes.leading)
    if stray:
        raise ValueError(f"axes {sorted(stray)} are not stack axes of this layer; "
                         f"choose among {list(axes.leading)}")
    fixed = {}
    region = [slice(None)] * axes.ndim
    for a in axes.leading:
        if a not in stack_axes:
            index = int(position[a])
            if not 0 <= index < shape[a]:  # the viewer shows none of this layer's slices
                raise ValueError(f"the viewer's position along axis {a} (index {index}) lies "
                                 f"outside this layer (indices 0 to {shape[a] - 1}), so none "
                                 f"of its slices is on screen; move the slider onto the layer "
                                 f"or run on the whole stack")
            fixed[a] = index
            region[a] = slice(index, index + 1)
    return RunPlan(axes, tuple(region), fixed, stack_axes, int(factor or 1))


def mask_for_plan(labels: np.ndarray, image_shape: tuple[int, ...], plan: RunPlan) -> np.ndarray:
    """The boolean "missing" mask (label > 0) for the planned region, shaped like the region's
    spatial axes.

    A Labels layer whose shape matches the image's last spatial axes applies along the axes it
    lacks: a 2D one to every slice, a (Z, Y, X) one to every time point of a (T, Z, Y, X)
    stack; one that matches all spatial axes is used slice by slice. One shaped like the image's
    last axes with its channel axis among them (what napari's New Labels makes for an image
    with channels) marks a pixel missing where any channel's label does. Any other shape is
    refused with a ``ValueError`` saying what would fit.
    """
    spatial_shape = tuple(image_shape[a] for a in plan.axes.spatial)
    region_shape = tuple(len(range(*plan.region[a].indices(image_shape[a])))
                         for a in plan.axes.spatial)
    labels_shape = tuple(np.shape(labels))
    k = len(labels_shape)
    channel = plan.axes.channel
    if 2 <= k <= len(spatial_shape) and labels_shape == spatial_shape[-k:]:
        own_axes = plan.axes.spatial[-k:]
        region = np.asarray(labels[tuple(plan.region[a] for a in own_axes)]) > 0
    elif channel is not None and not plan.axes.rgb and \
            k >= plan.axes.ndim - min(channel, plan.axes.plane[0]) and \
            labels_shape == tuple(image_shape[-k:]):  # the channel and the plane among its axes
        # the layer's own shape, channel axis included (napari's New Labels for the image):
        # a pixel is missing where any channel's label says so
        own = range(plan.axes.ndim - k, plan.axes.ndim)
        region = (np.asarray(labels[tuple(plan.region[a] for a in own)]) > 0).any(
            axis=channel - own.start)
    else:
        fits = " or ".join(str(spatial_shape[-n:]) for n in range(2, len(spatial_shape) + 1))
        raise ValueError(f"the Labels layer has shape {labels_shape}, which does not fit the "
                         f"image (pixels {spatial_shape}); paint the mask on a Labels layer of "
                         f"shape {fits} (label > 0 = missing), e.g. one created from the image "
                         f"with New Labels")
    return np.broadcast_to(region, region_shape)


@dataclass(frozen=True)
class Geometry:
    """Where a layer's data sits in the world: per layer dimension (no RGB axis)."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]


def output_geometry(geometry: Geometry, plan: RunPlan, linear=None) -> Geometry:
    """Scale and translate that overlay the restored region on the input.

    The region's first pixel sits at data offset ``d`` of the input: the fixed axes' slice index,
    and on super-resolved plane axes ``(1 / factor - 1) / 2`` (so that the first output pixel
    starts where the first input pixel starts). The translate moves by ``linear(d)``, the
    layer's linear map of a data shift (its scale, shear and rotation; default: the scale
    alone); super-resolved plane axes get ``scale / factor``. Rotation, shear and an extra
    affine are the input's, unchanged.
    """
    scale = list(geometry.scale)
    offset = np.zeros(len(scale))
    for position, a in enumerate(plan.axes.layer_dims):
        if a in plan.fixed:
            offset[position] = plan.fixed[a]
        elif a in plan.axes.plane and plan.factor > 1:
            offset[position] = (1.0 / plan.factor - 1.0) / 2.0
            scale[position] /= plan.factor
    shift = np.asarray(geometry.scale) * offset if linear is None else linear(offset)
    translate = tuple(float(t + d) for t, d in zip(geometry.translate, shift))
    return Geometry(tuple(scale), translate)
