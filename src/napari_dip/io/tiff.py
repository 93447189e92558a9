"""TIFF in and out: the first image series with its axes and metadata, read whole, as a
header, or slice by slice; a restored image written back in the file's own flavour."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.layout import CHANNEL_AXES, ImageAxes
from .metadata import (_IMAGEJ_DISPLAY, _IMAGEJ_PIXEL_SHAPES, Photometric, _imagej_settings,
                       _ome_settings, _photometric_options, _resolution, _resolution_unit,
                       _shaped_settings, _write_options)
from .records import atomic_write


@dataclass
class TiffImage:
    """Pixels of a TIFF file with their axes and the metadata written back with a result.

    Attributes
    ----------
    data : ndarray
        The first image series, with length-1 axes removed (as tifffile's ``series.axes``).
    axes : str
        One letter per axis of ``data``: T (time), Z, C (channel), S (sample/RGB), Y, X, ...
    flavour : {"imagej", "ome", "tiff"}
        The metadata convention of the file, used again on writing.
    resolution : (float, float) or None
        Pixels per unit along X and Y (TIFF XResolution, YResolution).
    resolution_unit : int or None
        TIFF ResolutionUnit (1: none, 2: inch, 3: centimetre); ImageJ's unit is in ``imagej``.
    imagej : dict
        ImageJ settings to keep (unit, spacing, display mode, ranges, LUTs, labels, ...).
    ome : dict
        OME Pixels attributes to keep (physical sizes and units, time increment),
        ``"channels"`` (one dict of Channel attributes per channel: name, colour, fluorophore,
        wavelengths, ...) and ``"image_name"``.
    shaped : dict
        The other keys of a plain TIFF's JSON description (tifffile's ``metadata=``, e.g.
        ``spacing`` and ``unit``), written back unchanged.
    compressed : bool
        Whether the file's pixels were compressed; the result is then written compressed too
        (zlib, lossless).
    alpha : bool
        The last sample (axis S) is alpha (RGBA, or greyscale with alpha), which is kept as it
        is rather than restored (see :meth:`colours` and :meth:`with_alpha`).
    photometric : Photometric or None
        The file's photometric interpretation and sample layout (e.g. MinIsWhite, a palette's
        colour map, CMYK, interleaved samples), written back while the pixels keep that
        layout; None: chosen from the pixels on writing.
    """

    data: np.ndarray
    axes: str
    flavour: str = "tiff"
    resolution: tuple[float, float] | None = None
    resolution_unit: int | None = None
    imagej: dict[str, Any] = field(default_factory=dict)
    ome: dict[str, Any] = field(default_factory=dict)
    shaped: dict[str, Any] = field(default_factory=dict)
    compressed: bool = False
    alpha: bool = False
    photometric: Photometric | None = None

    def restored(self, data: np.ndarray, factor: int | None = None) -> TiffImage:
        """The same metadata around new pixels; for super-resolution, pixels ``factor`` times
        smaller."""
        factor = factor or 1
        resolution = None
        if self.resolution is not None:
            resolution = (self.resolution[0] * factor, self.resolution[1] * factor)
        ome = dict(self.ome)
        for key in ("PhysicalSizeX", "PhysicalSizeY"):
            if key in ome:
                ome[key] = ome[key] / factor
        imagej = dict(self.imagej)
        # the origin is in pixels, on ImageJ's grid where whole numbers fall on pixel corners
        # (the image spans 0 to its width): the same point on the finer grid is factor x it
        for key in ("xorigin", "yorigin"):
            if isinstance(imagej.get(key), (int, float)):
                imagej[key] = imagej[key] * factor
        if factor > 1:  # ImageJ selections drawn in input pixels would mark the wrong places
            for key in _IMAGEJ_PIXEL_SHAPES:
                imagej.pop(key, None)
        return dataclasses.replace(self, data=data, resolution=resolution, ome=ome,
                                   imagej=imagej)

    def colours(self) -> np.ndarray:
        """The pixels to restore: :attr:`data`, without its alpha sample (see :attr:`alpha`)."""
        return split_alpha(self.data, self.axes.index("S"))[0] if self.alpha else self.data

    def with_alpha(self, colours: np.ndarray, factor: int | None = None) -> np.ndarray:
        """Restored :meth:`colours` with this image's alpha put back (enlarged by pixel
        repetition for super-resolution)."""
        if not self.alpha:
            return colours
        channel = self.axes.index("S")
        return with_alpha(colours, split_alpha(self.data, channel)[1], channel,
                          (self.axes.index("Y"), self.axes.index("X")), factor)

    def restored_map(self, data: np.ndarray, factor: int | None = None) -> TiffImage:
        """A float32 map computed with a restoration (e.g. its uncertainty), ``data`` shaped
        like the restored image: its axes and pixel size without its display settings
        (ImageJ ranges, LUTs, colour map, photometric interpretation: a map is plain
        MinIsBlack); an RGB image's samples (axis S) averaged into one map."""
        image = self.restored(np.asarray(data, dtype=np.float32), factor)
        data, axes = image.data, image.axes
        if "S" in axes:
            data, axes = data.mean(axis=axes.index("S"), dtype=np.float32), axes.replace("S", "")
        imagej = {k: v for k, v in image.imagej.items() if k not in _IMAGEJ_DISPLAY}
        return dataclasses.replace(image, data=data, axes=axes, imagej=imagej, alpha=False,
                                   photometric=None)

    def describe(self) -> dict[str, Any]:
        """Shape, dtype, axes, pixel size and photometric interpretation, for run records."""
        return {"shape": list(self.data.shape), "dtype": str(self.data.dtype), "axes": self.axes,
                "flavour": self.flavour,
                "resolution": list(self.resolution) if self.resolution else None,
                "resolution_unit": self.resolution_unit,
                "unit": self.imagej.get("unit") or self.ome.get("PhysicalSizeXUnit")
                or self.shaped.get("unit"),
                "photometric": _photometric_options(self).get("photometric")}


def check_axes(axes: str, ndim: int) -> str:
    """Validate an axes string such as ``"TZCYX"`` for an array with ``ndim`` dimensions."""
    axes = axes.upper()
    if len(axes) != ndim:
        raise ValueError(f"axes {axes!r} name {len(axes)} dimension(s) but the image has {ndim}")
    if len(set(axes)) != len(axes) or not axes.isalpha():
        raise ValueError(f"axes {axes!r} must be distinct letters, e.g. 'ZYX' or 'TZCYX'")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} must include Y and X (the image plane)")
    if sum(letter in axes for letter in CHANNEL_AXES) > 1:
        raise ValueError(f"axes {axes!r} have both C and S; only one channel axis is supported")
    return axes


IMAGEJ_AXES = "TZCYXS"


def check_writable_axes(image: TiffImage) -> None:
    """Refuse, before any work, axes that the image's own flavour cannot write back: an ImageJ
    hyperstack keeps its axes in the order TZCYXS."""
    if image.flavour != "imagej":
        return
    positions = [IMAGEJ_AXES.find(a) for a in image.axes]
    if -1 in positions or positions != sorted(positions):
        usable = "".join(a for a in IMAGEJ_AXES if a in image.axes)
        hint = f" (here {usable})" if len(usable) == len(image.axes) else ""
        raise ValueError(f"axes {image.axes} cannot be written back as an ImageJ hyperstack, "
                         f"whose axes come in the order {IMAGEJ_AXES}; name the axes in that "
                         f"order{hint}, or save the file as plain or OME-TIFF first")


def read_tiff(path: str | os.PathLike, axes: str | None = None, *,
              pixels: bool = True) -> TiffImage:
    """Read the first image series of a TIFF file with its axes and metadata.

    ``axes`` overrides the axes the file declares (same number of letters as dimensions).
    ``pixels=False`` reads the header alone (see :func:`read_tiff_header`).
    Raises ``ValueError`` with a one-line reason when the file is not a usable image.
    """
    image = _read_series(path, pixels)
    try:
        image.axes = check_axes(axes or image.axes, image.data.ndim)
        image.alpha = image.alpha and image.photometric.fits(image.data, image.axes)
    except ValueError as error:
        if axes:
            raise
        examples = {3: "YXS", 4: "ZYXS", 5: "TZYXS"} if image.axes.endswith("S") else \
            {4: "TZYX", 5: "TZCYX"}  # keep a file's colour samples where it says it has them
        example = examples.get(image.data.ndim, "ZYX")
        why = "the file does not name its axes" if "Q" in image.axes else \
            f"the file names them {image.axes}"
        raise ValueError(f"{error}; {why}: give them with --axes (axes= in Python), e.g. "
                         f"--axes {example}") from error
    return image


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """The pixels of a mask TIFF (non-zero = missing). Only its shape matters, so a mask saved
    without axes metadata is as good as one with them."""
    return _read_series(path).data


def _read_series(path: str | os.PathLike, pixels: bool = True) -> TiffImage:
    """The file's only image series with its metadata; its axes as the file declares them.
    Without ``pixels``, ``data`` is a placeholder of the series' shape and dtype (one zero
    broadcast, no memory)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise _Unusable("not a readable TIFF image (it holds no image series)")
            if len(tif.series) > 1:
                shapes = ", ".join(f"{tuple(x.shape)} {x.axes}" for x in tif.series[:4])
                raise _Unusable(f"the file holds {len(tif.series)} image series ({shapes}"
                                 f"{', ...' if len(tif.series) > 4 else ''}); napari-dip "
                                 f"restores one image per file: save each series (e.g. each "
                                 f"position) as its own TIFF and restore those")
            series = tif.series[0]
            data = series.asarray() if pixels else \
                np.broadcast_to(np.zeros((), series.dtype), series.shape)
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            photometric = Photometric.of_page(page)
            image = TiffImage(data=data, axes=series.axes,
                              flavour="imagej" if tif.is_imagej else "ome" if tif.is_ome
                              else "tiff",
                              resolution=_resolution(page), resolution_unit=_resolution_unit(page),
                              imagej=_imagej_settings(tif.imagej_metadata) if tif.is_imagej else {},
                              ome=_ome_settings(tif.ome_metadata) if tif.is_ome else {},
                              shaped=_shaped_settings(tif) if not (tif.is_imagej or tif.is_ome)
                              else {},
                              compressed=int(page.compression) != 1,
                              alpha=photometric.alpha, photometric=photometric)
    except _Unusable:
        raise
    except (tifffile.TiffFileError, OSError, KeyError, IndexError, TypeError, ValueError,
            EOFError, struct.error, zlib.error) as error:
        raise ValueError(f"not a readable TIFF image ({_why_unreadable(error)})") from error
    if image.data.dtype.kind not in "biuf":
        raise ValueError(f"pixel type {image.data.dtype} is not supported")
    return image


class _Unusable(ValueError):
    """A readable TIFF that napari-dip cannot restore (its message says why)."""


def _why_unreadable(error: BaseException) -> str:
    """What a reading error says about the file, in words that suggest the fix."""
    text = _first_line(error)
    if "imagecodecs" in text:
        named = re.search(r"COMPRESSION\.(\w+)", text)
        return (f"its compression{f' ({named[1]})' if named else ''} needs the imagecodecs "
                f"package: pip install imagecodecs, or save the file uncompressed or with "
                f"zlib/deflate")
    if isinstance(error, (EOFError, struct.error, zlib.error)) or \
            (isinstance(error, ValueError) and "failed to read" in text):
        return f"the file is truncated or damaged: {text}"
    return f"{type(error).__name__}: {text}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def split_alpha(data: np.ndarray, channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """An array's colours and its alpha, the last sample along ``channel_axis`` (views; alpha
    keeps a channel axis of length 1): RGBA gives RGB and A, greyscale and alpha two planes."""
    index = [slice(None)] * data.ndim
    index[channel_axis] = slice(0, -1)
    colours = data[tuple(index)]
    index[channel_axis] = slice(-1, None)
    return colours, data[tuple(index)]


def with_alpha(colours: np.ndarray, alpha: np.ndarray, channel_axis: int,
               plane_axes: tuple[int, ...], factor: int | None = None) -> np.ndarray:
    """Restored colours with the input's alpha (from :func:`split_alpha`) appended along
    ``channel_axis``, enlarged like the colours along ``plane_axes`` for super-resolution."""
    for axis in plane_axes:
        alpha = alpha.repeat(factor or 1, axis=axis)
    return np.concatenate([colours, alpha.astype(colours.dtype)], axis=channel_axis)


def write_tiff(path: str | os.PathLike, image: TiffImage) -> Path:
    """Write ``image`` atomically, in its flavour (ImageJ hyperstack, OME-TIFF or plain TIFF)."""
    import tifffile

    options = _write_options(image)
    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, image.data, **options))


def check_writable(image: TiffImage, factor: int | None = None) -> None:
    """Refuse, before any work, an image whose result could not be written back with its
    metadata: its axes (:func:`check_writable_axes`), then a trial write to memory of one
    pixel per plane with the result's metadata (for super-resolution, ``factor``)."""
    import tifffile

    check_writable_axes(image)
    one_pixel = tuple(slice(0, 1) if a in "YX" else slice(None) for a in image.axes)
    trial = image.restored(np.ascontiguousarray(image.data[one_pixel]), factor)
    try:
        tifffile.imwrite(io.BytesIO(), trial.data, **_write_options(trial))
    except Exception as error:  # noqa: BLE001 - whatever tifffile refuses, refuse it now
        raise ValueError(f"its result could not be written back with the file's metadata "
                         f"({type(error).__name__}: {_first_line(error)}); save the file as a "
                         f"plain TIFF (e.g. tifffile.imwrite(path, data)) and restore that, "
                         f"and please report the file") from error

def read_tiff_header(path: str | os.PathLike, axes: str | None = None) -> TiffImage:
    """:func:`read_tiff` without reading the pixels: the image's axes, shape, dtype and metadata.

    Its ``data`` is a read-only placeholder of the image's shape and dtype that holds no pixels
    (every element is the same zero): enough for :meth:`TiffImage.restored` and
    :meth:`TiffImage.describe`, not for :meth:`TiffImage.with_alpha` (read an RGBA image's
    pixels with :func:`read_tiff`).
    """
    return read_tiff(path, axes, pixels=False)


def read_tiff_slices(path: str | os.PathLike, axes: str, start: int, stop: int) -> np.ndarray:
    """Slices ``start:stop`` of a TIFF stack, reading only the pages that hold them.

    Slices are numbered as the stack runner visits them (see :class:`ImageAxes`); ``axes``
    name the axes of the file's image (as :func:`read_tiff` returns them). Returns
    ``(stop - start, M, N, C)``, channels last (``C = 1`` without a channel axis): the same as
    those slices of ``read_tiff(path, axes).data`` put in engine layout, alpha included.
    Each page is read once, whatever the axes' order: a slice may gather several pages (e.g.
    channels stored as pages between Z) or a part of each page (a stack axis within the page).
    """
    import itertools

    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape = tuple(series.shape)
        axes = check_axes(axes, len(shape))
        layout = ImageAxes.from_letters(axes)
        stack = [i for i in layout.order if axes[i] not in CHANNEL_AXES][:-2]
        paged, read_page = _series_pages(tif, series)
        # each slice in the file's axes, its stack axes of length 1
        part = np.empty((stop - start, *(1 if a in stack else n for a, n in enumerate(shape))),
                        series.dtype)
        at = dict(zip(stack, np.unravel_index(np.arange(start, stop),
                                              tuple(shape[a] for a in stack)))) if stack else {}
        copies: dict[int, list[tuple[tuple, tuple]]] = {}  # page -> (into part, from page)
        for k in range(stop - start):
            into_page = tuple(int(at[a][k]) if a in at else slice(None)
                              for a in range(paged, len(shape)))
            for pages_at in itertools.product(*([int(at[a][k])] if a in at else range(shape[a])
                                                for a in range(paged))):
                into_part = (k, *(0 if a in at else i for a, i in enumerate(pages_at)),
                             *(0 if a in at else slice(None) for a in range(paged, len(shape))))
                page = int(np.ravel_multi_index(pages_at, shape[:paged])) if paged else 0
                copies.setdefault(page, []).append((into_part, into_page))
        for page in sorted(copies):
            pixels = read_page(page).reshape(shape[paged:])
            for into_part, into_page in copies[page]:
                part[into_part] = pixels[into_page]
            del pixels
    engine = np.transpose(part, (0, *(1 + i for i in layout.order)))
    hwc = engine[..., None] if layout.channel_axis is None else \
        np.moveaxis(engine, 1 + layout.channel_axis, -1)
    return np.ascontiguousarray(hwc.reshape((stop - start, *hwc.shape[-3:])))


def _series_pages(tif, series) -> tuple[int, Callable[[int], np.ndarray]]:
    """How many leading axes of ``series`` number its pages, and a function that reads page i.

    Where pages cannot be read one by one, one "page" is the whole image: pages that do not
    hold whole steps of the leading axes, pixels that tifffile transforms after reading them
    all, pages spread over several files, or a truncated series (one header, e.g. an ImageJ
    hyperstack over 4 GB) whose pixels are not stored in one contiguous block.
    """
    import math

    shape = tuple(series.shape)
    page_size = math.prod(series.keyframe.shape)
    truncated = getattr(series, "is_truncated", False)
    n_pages = math.prod(shape) // max(page_size, 1) if truncated else len(series)
    paged = next((m for m in range(len(shape) + 1) if math.prod(shape[:m]) == n_pages), None)
    if paged is None or math.prod(shape) != n_pages * page_size or \
            getattr(series, "transform", None) is not None or \
            getattr(series, "is_multifile", False) or \
            (truncated and series.dataoffset is None):
        return 0, lambda _: series.asarray()
    if truncated:  # the pages follow one another in the file, as tifffile reads them
        typecode = tif.byteorder + series.dtype.char
        page_bytes = page_size * series.dtype.itemsize
        return paged, lambda i: tif.filehandle.read_array(
            typecode, page_size, series.dataoffset + i * page_bytes)

    def read_page(i: int) -> np.ndarray:
        page = series[i]
        if page is None:  # a page missing from the file reads as zeros, as in tifffile
            return np.zeros(series.keyframe.shape, series.dtype)
        return page.asarray()

    return paged, read_page


# nanometres per length unit, as OME, ImageJ and TIFF name them
_NANOMETRES = {"nm": 1.0, "nanometer": 1.0, "nanometre": 1.0, "µm": 1e3, "\u03bcm": 1e3,
               "\\u00b5m": 1e3, "um": 1e3, "micron": 1e3, "micrometer": 1e3,
               "micrometre": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9}
_TIFF_UNIT_NANOMETRES = {2: 2.54e7, 3: 1e7}  # ResolutionUnit inch, centimetre


def pixel_size_nm(image: TiffImage) -> float | None:
    """The pixel size in nanometres that the file's metadata states (OME physical size, or the
    TIFF resolution in an ImageJ, plain-TIFF or inch/centimetre unit), when X and Y agree
    (within 1 %); None where it states none, in no length unit, or differently along X and Y."""
    def nanometres(unit) -> float | None:
        return _NANOMETRES.get(str(unit).strip().lower()) if unit is not None else None

    sides = None
    if image.ome.get("PhysicalSizeX") and image.ome.get("PhysicalSizeY"):
        scales = [nanometres(image.ome.get(f"PhysicalSize{axis}Unit", "µm")) for axis in "XY"]
        if None not in scales:
            sides = [float(image.ome[f"PhysicalSize{axis}"]) * scale
                     for axis, scale in zip("XY", scales)]
    elif image.resolution and min(image.resolution) > 0:
        unit = image.imagej.get("unit") or image.shaped.get("unit")
        scale = nanometres(unit) if unit else _TIFF_UNIT_NANOMETRES.get(image.resolution_unit)
        if scale is not None:
            sides = [scale / value for value in image.resolution]
    if sides is None or not all(side > 0 for side in sides) or \
            abs(sides[0] - sides[1]) > 0.01 * max(sides):
        return None
    return sides[0]
