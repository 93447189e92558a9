"""How a file's axes map onto the engine's: channels anywhere, image plane last."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNEL_AXES = "CS"
"""Axis letters that hold channels: tifffile's C (channel) and S (sample, e.g. RGB)."""


@dataclass(frozen=True)
class EngineLayout:
    """How a file's axes map onto the stack runner's: channels anywhere, image plane last.

    ``order`` permutes the file's axes so that Y and X are the last two non-channel axes (the
    identity for usual files); ``channel_axis`` is the channel axis after that permutation.
    """

    axes: str
    order: tuple[int, ...]
    channel_axis: int | None

    @classmethod
    def for_axes(cls, axes: str) -> EngineLayout:
        channel = [i for i, letter in enumerate(axes) if letter in CHANNEL_AXES]
        others = [i for i, letter in enumerate(axes) if letter not in CHANNEL_AXES]
        plane = [axes.index("Y"), axes.index("X")]
        if sorted(others[-2:]) == sorted(plane):
            order = tuple(range(len(axes)))
        else:
            order = tuple([i for i in others if i not in plane] + channel + plane)
        channel_axis = order.index(channel[0]) if channel else None
        return cls(axes, order, channel_axis)

    @property
    def stack_axes(self) -> str:
        """The looped-over axes (everything but channels and the image plane), e.g. ``"TZ"``."""
        permuted = "".join(self.axes[i] for i in self.order)
        return "".join(a for a in permuted if a not in CHANNEL_AXES)[:-2]

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
        plane = tuple(image_shape[self.axes.index(a)] for a in "YX")
        non_channel = [i for i, letter in enumerate(self.axes) if letter not in CHANNEL_AXES]
        if np.squeeze(mask).shape == plane:
            missing = np.squeeze(mask) != 0
            engine_plane = [self.axes[i] for i in self.order if i in non_channel][-2:]
            return missing.T if engine_plane == ["X", "Y"] else missing
        if mask.shape == tuple(image_shape):
            missing = self.to_engine(mask != 0)
            return missing if self.channel_axis is None else missing.any(axis=self.channel_axis)
        if mask.shape == tuple(image_shape[i] for i in non_channel):
            engine_order = [non_channel.index(i) for i in self.order if i in non_channel]
            return np.transpose(mask != 0, engine_order)
        raise ValueError(f"mask has shape {mask.shape}; for an image of shape {tuple(image_shape)} "
                         f"(axes {self.axes}) it must be the image plane {plane}, the image's "
                         f"shape, or the image's shape without channels")
