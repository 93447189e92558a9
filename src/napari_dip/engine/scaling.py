"""Intensity scaling between a user's image and the model's [0, 1], and blockwise arithmetic.

:class:`IntensityScaling` maps intensities to [0, 1] and back into the input's dtype and
range; :func:`map_blocks` does elementwise float64 work a block of rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    def widened(self, headroom: float) -> IntensityScaling:
        """The same scaling with its top raised to ``headroom`` times its width above its low
        end (1: unchanged): room for an estimate brighter than the image, such as a
        deconvolved one, below the top of the model's [0, 1], which the generator's output
        cannot pass."""
        return IntensityScaling(self.low, self.low + headroom * (self.high - self.low),
                                self.dtype)

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
image (very dim images lose quality unstretched; moderately dim ones gain nothing from
stretching: the benchmarks' "Dim images" section)."""
