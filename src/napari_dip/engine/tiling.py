"""Tiled restoration of large images: a plan of overlapping tiles and their smooth blending.

A plane too large to fit in one go is cut into tiles of side ``tile_size`` that overlap their
neighbours by at least ``overlap`` pixels. Each tile is an ordinary 2D problem, so memory
follows the tile, not the image. Along each axis the tiles are spread evenly: the first starts
on the image's first pixel, the last ends on its last one, and none sticks out (no padding); an
image no larger than a tile is one tile. A side no longer than ``whole_up_to`` (the setting
``tile_above``) is not split either: the tiles then span it whole.

The tiles' estimates are blended with separable weights: along each axis, a raised-cosine ramp
runs across the overlap with each neighbour, from almost 0 at the tile's edge to 1 where the
neighbour ends, and the weight is 1 everywhere else, the image's own borders included. Two
neighbours' ramps over the same overlap add up to 1, so in the usual case (each pixel in at most
two tiles per axis) the weights form a partition of unity; :class:`TileBlender` divides by the
sum of weights anyway, which is well defined because every weight is strictly positive.

Everything is in input pixels; for super-resolution the output tile is ``factor`` times larger
(:meth:`Tile.output`), its ramps too. Pure NumPy: the fitting itself is in :mod:`.api`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile of a plan, in input pixels.

    ``rows`` and ``cols`` are the tile's slices of the image plane; ``row_ramps`` and
    ``col_ramps`` are its overlaps ``(before, after)`` with the previous and next tile along
    that axis (0 where the tile touches the image's border).
    """

    rows: slice
    cols: slice
    row_ramps: tuple[int, int] = (0, 0)
    col_ramps: tuple[int, int] = (0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    def output(self, factor: int = 1) -> tuple[slice, slice]:
        """The tile's slices of the output plane (``factor`` times the input's)."""
        return (slice(self.rows.start * factor, self.rows.stop * factor),
                slice(self.cols.start * factor, self.cols.stop * factor))

    def cut(self, array: np.ndarray, factor: int = 1) -> np.ndarray:
        """The tile's part of ``array`` (a view), whose two leading axes are the plane
        (``factor`` times the input's, e.g. a guide image for super-resolution)."""
        rows, cols = self.output(factor)
        return array[rows, cols]

    def weights(self, factor: int = 1) -> np.ndarray:
        """The tile's blending weights, ``(h * factor, w * factor)`` float32 in (0, 1]."""
        h, w = self.shape
        along_rows = _profile(h * factor, *(r * factor for r in self.row_ramps))
        along_cols = _profile(w * factor, *(r * factor for r in self.col_ramps))
        return np.outer(along_rows, along_cols).astype(np.float32)


def _profile(length: int, before: int, after: int) -> np.ndarray:
    """1 with raised-cosine ramps over the first ``before`` and last ``after`` pixels.

    The ramps are sampled at pixel centres, so they never reach 0; a ramp up over ``n`` pixels
    and a ramp down over the same ``n`` pixels add up to exactly 1.
    """
    centre = np.arange(length) + 0.5
    profile = np.ones(length)
    for distance, width in ((centre, before), (length - centre, after)):
        if width:
            ramp = 0.5 - 0.5 * np.cos(np.pi * np.minimum(distance, width) / width)
            profile *= ramp
    return profile


def _spans(length: int, tile_size: int, overlap: int) -> list[tuple[int, int]]:
    """Evenly spread ``(start, stop)`` spans of ``tile_size`` covering ``[0, length)`` with
    neighbours sharing at least ``overlap`` pixels; one span when the length fits in a tile."""
    if length <= tile_size:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile_size - overlap))
    starts = [round(k * (length - tile_size) / (count - 1)) for k in range(count)]
    return [(start, start + tile_size) for start in starts]


def _ramps(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each span's overlap with its previous and next span (0 at the ends)."""
    return [(spans[k - 1][1] - start if k > 0 else 0,
             stop - spans[k + 1][0] if k + 1 < len(spans) else 0)
            for k, (start, stop) in enumerate(spans)]


def plan_tiles(shape: tuple[int, int], tile_size: int, overlap: int,
               whole_up_to: int = 0) -> list[Tile]:
    """Overlapping tiles that cover an ``(M, N)`` plane exactly, in row-major order.

    Parameters
    ----------
    shape : (int, int)
        The plane's sides in (input) pixels.
    tile_size : int
        Tile side; a side of the plane no longer than this is one tile along that axis.
    overlap : int
        The least overlap between neighbouring tiles; less than half of ``tile_size``.
    whole_up_to : int
        A side of the plane no longer than this is not split either (no effect below
        ``tile_size``): the tiles are then as long as that side. Two tiles of ``tile_size``
        along a side only a little longer would share most of their pixels and fit them twice.
    """
    if tile_size < 1 or not 0 <= 2 * overlap < tile_size:
        raise ValueError(f"tiles of {tile_size} pixels overlapping by {overlap}: the overlap "
                         f"must be at least 0 and less than half of the tile")
    rows, cols = ([(0, side)] if side <= whole_up_to else _spans(side, tile_size, overlap)
                  for side in shape)
    return [Tile(slice(*r), slice(*c), rr, cr)
            for r, rr in zip(rows, _ramps(rows)) for c, cr in zip(cols, _ramps(cols))]


class TileBlender:
    """Adds weighted tile estimates up and keeps their normalised mosaic.

    Parameters
    ----------
    shape : (int, int)
        The output plane's sides (``factor`` times the input's).
    channels : int
        Channels of every estimate (``(h, w, channels)`` arrays).
    factor : int
        Output pixels per input pixel along each side (super-resolution).
    background : (M', N', C) ndarray, optional
        What the mosaic shows where no tile has been added yet (default 0).
    convert : callable, optional
        An elementwise map of arrays applied to the blended values (e.g. from the model's units
        to an image's dtype and intensities); default none. The mosaic is kept converted, so
        that :meth:`mosaic` converts only the tile it blends in, not the whole plane.
    """

    def __init__(self, shape: tuple[int, int], channels: int, *, factor: int = 1,
                 background: np.ndarray | None = None, convert=None) -> None:
        self.factor = factor
        self._convert = convert or (lambda values: values)
        self._sum = np.zeros((*shape, channels), dtype=np.float32)
        self._weight = np.zeros(shape, dtype=np.float32)
        self._mosaic = self._convert(
            np.zeros_like(self._sum) if background is None
            else np.array(background, dtype=np.float32).reshape(self._sum.shape))

    def _blend(self, tile: Tile, values: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray,
                                                                np.ndarray]:
        rows, cols = tile.output(self.factor)
        expected = (rows.stop - rows.start, cols.stop - cols.start, self._sum.shape[2])
        if values.shape != expected:
            raise ValueError(f"a tile estimate of shape {values.shape} does not fit its tile, "
                             f"{expected}")
        weights = tile.weights(self.factor)
        total = self._sum[rows, cols] + values * weights[..., None]
        return (rows, cols), total, self._weight[rows, cols] + weights

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """Add a tile's ``(h * factor, w * factor, C)`` estimate with the tile's weights."""
        region, total, weight = self._blend(tile, values)
        self._sum[region], self._weight[region] = total, weight
        self._mosaic[region] = self._convert(total / weight[..., None])

    def mosaic(self, tile: Tile | None = None, values: np.ndarray | None = None) -> np.ndarray:
        """The normalised mosaic of the tiles added so far (a new array, converted); with
        ``values``, those are blended in for ``tile`` as if it had been added (the view of a
        tile being fitted)."""
        mosaic = self._mosaic.copy()
        if values is not None:
            region, total, weight = self._blend(tile, values)
            mosaic[region] = self._convert(total / weight[..., None])
        return mosaic


def seam_band(shape: tuple[int, int], tiles: list[Tile], width: int,
              factor: int = 1) -> np.ndarray:
    """The output pixels within ``width`` of a tile edge that lies inside the image: where an
    unblended mosaic would show its seams. ``(M', N')`` booleans."""
    band = np.zeros(shape, dtype=bool)
    for tile in tiles:
        rows, cols = tile.output(factor)
        for edge in (rows.start, rows.stop):
            if 0 < edge < shape[0]:
                band[max(0, edge - width):edge + width, cols] = True
        for edge in (cols.start, cols.stop):
            if 0 < edge < shape[1]:
                band[rows, max(0, edge - width):edge + width] = True
    return band


def tile_interiors(shape: tuple[int, int], tiles: list[Tile], width: int,
                   factor: int = 1) -> np.ndarray:
    """The output pixels that only one tile covers, outside :func:`seam_band`."""
    count = np.zeros(shape, dtype=np.int32)
    for tile in tiles:
        count[tile.output(factor)] += 1
    return (count == 1) & ~seam_band(shape, tiles, width, factor)
