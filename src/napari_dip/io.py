"""Files in and out: TIFF with its metadata, masks, JSON run records, all written atomically.

:func:`read_tiff` returns a :class:`TiffImage`: the pixels, their axes (tifffile's letters,
e.g. ``"ZYX"``, ``"TZCYX"``, ``"YXS"``) and the metadata worth keeping (pixel size, ImageJ
hyperstack settings, OME physical sizes and channel names). :func:`write_tiff` writes a restored
image back in the same flavour (ImageJ, OME-TIFF or plain). :class:`EngineLayout` maps a file's
axes onto the engine's convention (last two non-channel axes are the image plane).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import re
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from .engine.layout import CHANNEL_AXES
from .engine.layout import ImageAxes as EngineLayout  # a file's axes, by their letters

# ImageJ description keys that tifffile recomputes from the data's shape on writing
_IMAGEJ_STRUCTURE = {"ImageJ", "images", "channels", "slices", "frames", "hyperstack"}
# ImageJ selections and overlays, stored in pixel coordinates
_IMAGEJ_PIXEL_SHAPES = ("ROI", "Overlays")
# ImageJ entries that tifffile stores in the IJMetadata tag (any text), not the description
_IMAGEJ_TAGGED = {"Info", "Labels", "Ranges", "LUTs", "Plot", "ROI", "Overlays", "Properties"}
# ImageJ display settings of the image, which do not suit a map computed from it
_IMAGEJ_DISPLAY = {"min", "max", "Ranges", "LUTs", "mode"}
# OME Pixels attributes carried over to the output (physical sizes are scaled for super-resolution)
_OME_KEPT = ("PhysicalSizeX", "PhysicalSizeXUnit", "PhysicalSizeY", "PhysicalSizeYUnit",
             "PhysicalSizeZ", "PhysicalSizeZUnit", "TimeIncrement", "TimeIncrementUnit")
# OME Channel attributes carried over, channel by channel (those tifffile writes back)
_OME_CHANNEL_KEPT = ("Name", "Color", "Fluor", "EmissionWavelength", "EmissionWavelengthUnit",
                     "ExcitationWavelength", "ExcitationWavelengthUnit", "AcquisitionMode",
                     "ContrastMethod", "IlluminationType", "NDFilter", "PinholeSize",
                     "PinholeSizeUnit", "PockelCellSetting")
# OME Plane attributes carried over, plane by plane (those tifffile writes back)
_OME_PLANE_KEPT = ("DeltaT", "DeltaTUnit", "ExposureTime", "ExposureTimeUnit", "PositionX",
                   "PositionXUnit", "PositionY", "PositionYUnit", "PositionZ", "PositionZUnit")
# keys of a plain TIFF's JSON description (tifffile's "shaped" files) that tifffile writes itself
_SHAPED_STRUCTURE = {"shape", "axes"}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash or an exception leaves either the old file or no file, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}",
                                   dir=path.parent)
    os.close(handle)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; use the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def leftover_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files that :func:`atomic_write` left beside ``path`` when a process was killed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.stem}.*.part{path.suffix}"))


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as indented JSON, atomically. Values that JSON has no number for (NaN,
    infinities, e.g. a stopping rule's value before its first reading) are written as null,
    so that every JSON reader accepts the file."""
    text = json.dumps(_json_safe(record), indent=2, default=_json_default,
                      allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, inf) replaced by None, in nested dicts and lists."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def package_versions(*extra: str) -> dict[str, str | None]:
    """Versions of Python and the packages a result depends on (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("napari-dip", "torch", "numpy", "tifffile", *extra):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ----------------------------------------------------------------------------- TIFF

# photometric interpretations whose last extra sample, when it is alpha, is kept as it is
_ALPHA_PHOTOMETRIC = {"minisblack", "miniswhite", "rgb"}


@dataclass(frozen=True, eq=False)
class Photometric:
    """How a TIFF file's samples are to be seen, written back with a result of the same layout.

    Attributes
    ----------
    name : str
        The photometric interpretation, as tifffile names it: ``"minisblack"``,
        ``"miniswhite"`` (0 is white), ``"rgb"``, ``"palette"`` (values shown through
        ``colormap``), ``"separated"`` (e.g. CMYK), ...
    samples : int
        Samples per pixel, extra samples included (the length of axis S; 1 without one).
    planar : bool
        Whether the samples are stored as separate planes (axes ``...SYX``) rather than
        interleaved (``...YXS``).
    extrasamples : tuple of int
        TIFF ExtraSamples: what the samples after the colours are (0: unspecified,
        1: associated alpha, 2: unassociated alpha).
    colormap : ndarray or None
        A palette image's colour map, ``(3, 2**bits)`` uint16.
    """

    name: str
    samples: int = 1
    planar: bool = False
    extrasamples: tuple[int, ...] = ()
    colormap: np.ndarray | None = None

    @classmethod
    def of_page(cls, page) -> Photometric:
        colormap = getattr(page, "colormap", None)
        return cls(name=page.photometric.name.lower() if hasattr(page.photometric, "name")
                   else str(page.photometric).lower(),
                   samples=int(page.samplesperpixel),
                   planar=int(page.samplesperpixel) > 1 and int(page.planarconfig) == 2,
                   extrasamples=tuple(int(x) for x in getattr(page, "extrasamples", ()) or ()),
                   colormap=None if colormap is None else np.asarray(colormap))

    @property
    def alpha(self) -> bool:
        """Whether the last sample is alpha, kept as it is rather than restored (greyscale or
        RGB with an alpha as last extra sample)."""
        return self.name in _ALPHA_PHOTOMETRIC and bool(self.extrasamples) and \
            self.extrasamples[-1] in (1, 2)

    def fits(self, data: np.ndarray, axes: str) -> bool:
        """Whether pixels ``data`` with ``axes`` still have this layout (samples, their place,
        a colour map's dtype), so that this interpretation can be written with them."""
        samples = data.shape[axes.index("S")] if "S" in axes else 1
        if samples != self.samples:
            return False
        if samples > 1 and not axes.endswith("SYX" if self.planar else "YXS"):
            return False
        return self.colormap is None or (data.dtype.kind == "u" and
                                         self.colormap.shape[-1] == 2 ** (8 * data.itemsize))

    def options(self) -> dict[str, Any]:
        """tifffile's ``imwrite`` options that write this interpretation."""
        options: dict[str, Any] = {"photometric": self.name}
        if self.samples > 1:
            options["planarconfig"] = "separate" if self.planar else "contig"
        if self.extrasamples:
            options["extrasamples"] = self.extrasamples
        if self.colormap is not None:
            options["colormap"] = self.colormap
        return options


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


def _resolution(page) -> tuple[float, float] | None:
    if "XResolution" not in page.tags or "YResolution" not in page.tags:
        return None
    x, y = page.get_resolution()
    return float(x), float(y)


def _resolution_unit(page) -> int | None:
    tag = page.tags.get("ResolutionUnit")
    return None if tag is None else int(tag.value)


def _imagej_settings(meta: dict[str, Any] | None) -> dict[str, Any]:
    settings = {k: v for k, v in (meta or {}).items() if k not in _IMAGEJ_STRUCTURE}
    if isinstance(settings.get("Labels"), str):  # tifffile returns a single label as a string
        settings["Labels"] = [settings["Labels"]]
    return settings


def _ome_settings(xml: str | None) -> dict[str, Any]:
    import tifffile

    if not xml:
        return {}
    images = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    image = images[0] if isinstance(images, list) else images
    pixels = image.get("Pixels", {})
    settings = {key: pixels[key] for key in _OME_KEPT if key in pixels}
    channels = pixels.get("Channel", [])
    channels = channels if isinstance(channels, list) else [channels]
    kept = [{key: c[key] for key in _OME_CHANNEL_KEPT if key in c} if isinstance(c, dict) else {}
            for c in channels]
    if any(kept):
        settings["channels"] = kept
    planes = pixels.get("Plane", [])
    planes = {(int(p.get("TheC", 0)), int(p.get("TheZ", 0)), int(p.get("TheT", 0))):
              {key: p[key] for key in _OME_PLANE_KEPT if key in p}
              for p in (planes if isinstance(planes, list) else [planes]) if isinstance(p, dict)}
    if any(planes.values()):
        settings["planes"] = planes
    if isinstance(image.get("Name"), str):
        settings["image_name"] = image["Name"]
    return settings


def _imagej_description_safe(settings: dict[str, Any]) -> dict[str, Any]:
    """ImageJ ``settings`` whose text values can go into the ASCII image description: other
    characters escaped as ImageJ writes them (``µm`` -> ``\\u00B5m``). The entries stored in
    the IJMetadata tag (Info, Labels, Properties, ...) hold any text and are left as they are."""
    def ascii_only(text: str) -> str:
        return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in text)

    return {key: ascii_only(value) if isinstance(value, str) and key not in _IMAGEJ_TAGGED
            else value for key, value in settings.items()}


def _shaped_settings(tif) -> dict[str, Any]:
    """The keys of a plain TIFF's JSON description other than those tifffile writes itself."""
    described = tif.shaped_metadata if tif.is_shaped else None
    if not described or not isinstance(described[0], dict):
        return {}
    return {k: v for k, v in described[0].items() if k not in _SHAPED_STRUCTURE}


def _ome_channel_count(image: TiffImage) -> int:
    """The number of OME Channel elements tifffile writes for ``image`` (samples, e.g. RGB,
    share one)."""
    return image.data.shape[image.axes.index("C")] if "C" in image.axes else 1


def _ome_planes_in_order(axes: str, shape: tuple[int, ...],
                         planes: dict[tuple[int, int, int], dict[str, Any]],
                         ) -> list[dict[str, Any]] | None:
    """The Plane attributes (by TheC, TheZ, TheT) in the order tifffile writes the planes: the
    stored order of the axes before Y, the last fastest. None when those axes are not all T, Z
    or C, or name a plane the file did not describe (the planes no longer match)."""
    leading = axes[:axes.index("Y")].replace("S", "")
    if any(a not in "TZC" for a in leading):
        return None
    sizes = [shape[axes.index(a)] for a in leading]
    ordered = []
    for flat in range(int(np.prod(sizes))):
        at = dict(zip(leading, np.unravel_index(flat, sizes)))
        key = (int(at.get("C", 0)), int(at.get("Z", 0)), int(at.get("T", 0)))
        if key not in planes:
            return None
        ordered.append(planes[key])
    return ordered


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


def _photometric_options(image: TiffImage) -> dict[str, Any]:
    """How ``image``'s samples are written: as the input's (MinIsWhite, palette, CMYK, ...)
    while the pixels keep its layout, else RGB or MinIsBlack as the pixels suggest."""
    if image.photometric is not None and image.photometric.fits(image.data, image.axes):
        return image.photometric.options()
    if image.axes.endswith("S") and image.data.shape[-1] in (3, 4) and \
            image.data.dtype.kind == "u":
        return {"photometric": "rgb"}
    return {"photometric": "minisblack"} if "S" not in image.axes else {}


def _write_options(image: TiffImage) -> dict[str, Any]:
    """tifffile's ``imwrite`` options that write ``image`` in its flavour with its metadata."""
    options: dict[str, Any] = {"compression": "zlib"} if image.compressed else {}
    if image.resolution is not None:
        options["resolution"] = image.resolution
        if image.resolution_unit is not None:
            options["resolutionunit"] = image.resolution_unit
    options.update(_photometric_options(image))
    if image.flavour == "imagej":
        options.update(imagej=True, metadata={"axes": image.axes,
                                              **_imagej_description_safe(image.imagej)})
    elif image.flavour == "ome":
        ome = {k: v for k, v in image.ome.items() if k in _OME_KEPT}
        if len(image.ome.get("channels", ())) == _ome_channel_count(image):
            ome["Channel"] = image.ome["channels"]
        if "planes" in image.ome:
            planes = _ome_planes_in_order(image.axes, image.data.shape, image.ome["planes"])
            if planes is not None:
                ome["Plane"] = planes
        if "image_name" in image.ome:
            ome["Name"] = image.ome["image_name"]
        options.update(ome=True, metadata={"axes": image.axes, **ome})
    else:
        options["metadata"] = {**image.shaped, "axes": image.axes}
    return options


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

    Slices are numbered as the stack runner visits them (see :class:`EngineLayout`); ``axes``
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
        layout = EngineLayout.for_axes(axes)
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
