"""TIFF metadata read from a file and written back with its result: pixel size, ImageJ
hyperstack settings, OME physical sizes, channels and planes, a plain TIFF's JSON description,
and the photometric interpretation of the samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .tiff import TiffImage

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
