"""TIFF in and out with metadata: whole images, headers and slices read alone."""

import numpy as np
import pytest
import tifffile

from napari_dip.engine.layout import ImageAxes
from napari_dip.io.tiff import (TiffImage, check_axes, read_tiff, read_tiff_header,
                                read_tiff_slices, write_tiff)


def _stack(shape, dtype=np.uint16):
    return (np.arange(np.prod(shape)) % 997).astype(dtype).reshape(shape)


def test_imagej_hyperstack_keeps_axes_settings_and_scales_pixel_size(tmp_path):
    data = _stack((3, 2, 8, 8))
    tifffile.imwrite(tmp_path / "in.tif", data, imagej=True, resolution=(10.0, 10.0),
                     metadata={"axes": "ZCYX", "unit": "micron", "spacing": 0.3,
                               "mode": "composite"})
    image = read_tiff(tmp_path / "in.tif")
    assert (image.flavour, image.axes, image.resolution) == ("imagej", "ZCYX", (10.0, 10.0))
    larger = np.repeat(np.repeat(image.data, 2, axis=-1), 2, axis=-2)
    write_tiff(tmp_path / "out.tif", image.restored(larger, factor=2))

    back = read_tiff(tmp_path / "out.tif")
    assert back.flavour == "imagej" and back.axes == "ZCYX" and back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.data, larger)
    assert back.resolution == pytest.approx((20.0, 20.0))  # pixels per micron doubled
    assert back.imagej == {"unit": "micron", "spacing": 0.3, "mode": "composite"}


OME_CHANNELS = [{"Name": "dapi", "Color": -16776961, "EmissionWavelength": 461.0,
                 "EmissionWavelengthUnit": "nm", "Fluor": "DAPI"},
                {"Name": "gfp", "Color": 16711935, "ExcitationWavelength": 488.0},
                {"Name": "rfp"}]


def test_ome_tiff_keeps_physical_sizes_divided_by_factor_and_channel_settings(tmp_path):
    data = _stack((2, 3, 8, 8))
    tifffile.imwrite(tmp_path / "in.ome.tif", data, ome=True,
                     metadata={"axes": "TCYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.4,
                               "PhysicalSizeXUnit": "µm", "PhysicalSizeZ": 1.5,
                               "Channel": OME_CHANNELS})
    image = read_tiff(tmp_path / "in.ome.tif")
    assert image.flavour == "ome" and image.axes == "TCYX"
    write_tiff(tmp_path / "out.ome.tif", image.restored(np.zeros((2, 3, 32, 32), np.uint16), 4))

    back = read_tiff(tmp_path / "out.ome.tif")
    assert back.axes == "TCYX" and back.data.shape == (2, 3, 32, 32)
    assert back.ome["PhysicalSizeX"] == pytest.approx(0.05)
    assert back.ome["PhysicalSizeY"] == pytest.approx(0.1)
    assert back.ome["PhysicalSizeZ"] == pytest.approx(1.5)  # not an image-plane size
    assert back.ome["channels"] == OME_CHANNELS  # names, colours, wavelengths, fluorophores


def test_ome_channel_settings_are_left_out_when_the_channels_no_longer_match(tmp_path):
    tifffile.imwrite(tmp_path / "in.ome.tif", _stack((3, 8, 8)), ome=True,
                     metadata={"axes": "CYX", "Channel": OME_CHANNELS})
    image = read_tiff(tmp_path / "in.ome.tif")
    write_tiff(tmp_path / "one.ome.tif", image.restored_map(np.zeros((3, 8, 8))))
    assert read_tiff(tmp_path / "one.ome.tif").ome["channels"] == OME_CHANNELS
    image.data, image.axes = image.data[0], "YX"  # three named channels cannot describe one
    write_tiff(tmp_path / "out.ome.tif", image)
    assert "channels" not in read_tiff(tmp_path / "out.ome.tif").ome


def _plane_times(path):
    """Each OME Plane's (TheC, TheZ, TheT) and DeltaT, from the file's own XML."""
    with tifffile.TiffFile(path) as tif:
        planes = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]["Plane"]
    return {(p.get("TheC", 0), p.get("TheZ", 0), p.get("TheT", 0)): p["DeltaT"]
            for p in (planes if isinstance(planes, list) else [planes])}


@pytest.mark.parametrize("axes, shape", [("TZCYX", (2, 3, 2, 8, 8)), ("CZYX", (2, 3, 8, 8)),
                                         ("TYXS", (3, 8, 8, 3)), ("ZTYX", (2, 3, 8, 8))])
def test_ome_planes_keep_their_time_stamps_and_positions(tmp_path, axes, shape):
    leading = axes[:axes.index("Y")]
    sizes = shape[:len(leading)]
    order = []  # the planes as tifffile writes them: the leading axes in stored order
    for flat in range(int(np.prod(sizes))):
        at = dict(zip(leading, np.unravel_index(flat, sizes)))
        c, z, t = (int(at.get(a, 0)) for a in "CZT")
        order.append({"DeltaT": 100.0 * t + 10 * z + c, "DeltaTUnit": "s", "PositionX": 5.0})
    dtype = np.uint8 if "S" in axes else np.uint16
    tifffile.imwrite(tmp_path / "in.ome.tif", _stack(shape, dtype), ome=True,
                     photometric="rgb" if "S" in axes else "minisblack",
                     metadata={"axes": axes, "Plane": order})

    def stamped(path):  # every plane's DeltaT says which plane it is
        times = _plane_times(path)
        assert len(times) == len(order)
        return all(delta == 100.0 * t + 10 * z + c for (c, z, t), delta in times.items())

    assert stamped(tmp_path / "in.ome.tif")  # the file is written as the test means it
    image = read_tiff(tmp_path / "in.ome.tif")
    larger = np.repeat(np.repeat(image.data, 2, axis=axes.index("Y")), 2, axis=axes.index("X"))
    write_tiff(tmp_path / "out.ome.tif", image.restored(larger, 2))
    assert stamped(tmp_path / "out.ome.tif")
    assert read_tiff(tmp_path / "out.ome.tif").ome["planes"] == image.ome["planes"]


def test_plain_tiff_keeps_axes_resolution_and_unit(tmp_path):
    data = _stack((4, 8, 8), np.float32)
    tifffile.imwrite(tmp_path / "in.tif", data, resolution=(5.0, 2.5), resolutionunit="CENTIMETER",
                     photometric="minisblack", metadata={"axes": "TYX"})
    image = read_tiff(tmp_path / "in.tif")
    write_tiff(tmp_path / "out.tif", image.restored(image.data))
    back = read_tiff(tmp_path / "out.tif")
    assert (back.flavour, back.axes, back.data.dtype) == ("tiff", "TYX", np.float32)
    assert back.resolution == pytest.approx((5.0, 2.5)) and back.resolution_unit == 3


def test_plain_tiff_keeps_the_other_keys_of_its_description(tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", _stack((3, 8, 8)), photometric="minisblack",
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um", "sample": "fly 3"})
    image = read_tiff(tmp_path / "in.tif")
    assert image.shaped == {"spacing": 0.5, "unit": "um", "sample": "fly 3"}
    assert image.describe()["unit"] == "um"
    larger = np.repeat(np.repeat(image.data, 2, axis=-1), 2, axis=-2)
    write_tiff(tmp_path / "out.tif", image.restored(larger, factor=2))
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.shaped_metadata[0] == {"shape": [3, 16, 16], "axes": "ZYX", "spacing": 0.5,
                                          "unit": "um", "sample": "fly 3"}
    # --axes replaces the file's own axes in what is written back
    write_tiff(tmp_path / "t.tif", read_tiff(tmp_path / "in.tif", axes="TYX"))
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        assert tif.shaped_metadata[0]["axes"] == "TYX"
        assert tif.shaped_metadata[0]["spacing"] == 0.5


def test_unreadable_file_gives_a_one_line_reason(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 20)
    with pytest.raises(ValueError, match="not a readable TIFF image") as error:
        read_tiff(tmp_path / "bad.tif")
    assert "\n" not in str(error.value)


def test_axes_override_is_checked(tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", _stack((3, 8, 8)), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    assert read_tiff(tmp_path / "in.tif", axes="tyx").axes == "TYX"
    with pytest.raises(ValueError, match="name 4 dimension"):
        read_tiff(tmp_path / "in.tif", axes="TZYX")
    for bad, message in [("ZZX", "distinct"), ("ZYQ", "Y and X"), ("CSYX", "both C and S")]:
        with pytest.raises(ValueError, match=message):
            check_axes(bad, len(bad))


def test_an_imagej_origin_marks_the_same_point_after_super_resolution(tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", _stack((2, 8, 8)), imagej=True,
                     resolution=(10.0, 10.0),
                     metadata={"axes": "ZYX", "unit": "micron", "xorigin": 3.0, "yorigin": 0.0})
    image = read_tiff(tmp_path / "in.tif")
    larger = image.restored(np.repeat(np.repeat(image.data, 4, -1), 4, -2), factor=4)
    # ImageJ's pixel grid puts whole numbers on pixel corners (the image spans 0 to its
    # width), so the point 3 input pixels from the left edge is 12 output pixels from it
    assert larger.imagej["xorigin"] == 12.0 and larger.imagej["yorigin"] == 0.0
    write_tiff(tmp_path / "out.tif", larger)
    assert read_tiff(tmp_path / "out.tif").imagej["xorigin"] == 12.0


def _rect_roi(top, left, bottom, right):
    """A minimal ImageJ rectangle selection (its binary format), in pixel coordinates."""
    import struct

    blob = bytearray(64)
    blob[0:4] = b"Iout"
    struct.pack_into(">h", blob, 4, 228)  # version
    blob[6] = 1  # rectangle
    struct.pack_into(">hhhh", blob, 8, top, left, bottom, right)
    return bytes(blob)


def test_imagej_selections_are_kept_but_not_on_a_finer_grid(tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", _stack((8, 8)), imagej=True, resolution=(5.0, 5.0),
                     metadata={"unit": "um", "ROI": _rect_roi(2, 1, 6, 5),
                               "Overlays": [_rect_roi(0, 0, 2, 2)]})
    image = read_tiff(tmp_path / "in.tif")
    same = image.restored(image.data)
    assert same.imagej["ROI"] == _rect_roi(2, 1, 6, 5) and "Overlays" in same.imagej
    larger = image.restored(np.repeat(np.repeat(image.data, 2, -1), 2, -2), factor=2)
    assert "ROI" not in larger.imagej and "Overlays" not in larger.imagej  # would mark 1/4
    assert larger.imagej["unit"] == "um"


def test_a_file_without_axes_names_the_fix(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((2, 2, 16, 16), np.uint16))
    with pytest.raises(ValueError, match="the file does not name its axes: give them with "
                                         "--axes .*e.g. --axes TZYX"):
        read_tiff(tmp_path / "plain.tif")
    assert read_tiff(tmp_path / "plain.tif", axes="TZYX").axes == "TZYX"


def test_rgba_colours_and_alpha(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 255, (8, 8, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb")
    image = read_tiff(tmp_path / "rgba.tif")
    assert image.alpha and image.colours().shape == (8, 8, 3)
    restored = image.with_alpha(np.repeat(np.repeat(image.colours(), 2, 0), 2, 1), factor=2)
    assert restored.shape == (16, 16, 4)
    np.testing.assert_array_equal(restored[::2, ::2, 3], rgba[..., 3])
    tifffile.imwrite(tmp_path / "cmyk.tif", rgba, photometric="separated")  # 4 colours, no alpha
    assert not read_tiff(tmp_path / "cmyk.tif").alpha


def _engine_slices(image):
    """The whole image's slices as a stack in parts numbers them: ``(n, M, N, C)``."""
    layout = ImageAxes.from_letters(image.axes)
    data = layout.to_engine(image.data)
    hwc = data[..., None] if layout.channel_axis is None else \
        np.moveaxis(data, layout.channel_axis, -1)
    return hwc.reshape((-1,) + hwc.shape[-3:])


STACKS = {  # name: (shape, dtype, tifffile options, axes given by the user)
    "ZYX": ((5, 8, 6), np.uint16, {"imagej": True, "metadata": {"axes": "ZYX"}}, None),
    "TZYX": ((2, 3, 8, 6), np.uint16, {"imagej": True, "metadata": {"axes": "TZYX"}}, None),
    "ZCYX": ((3, 2, 8, 6), np.uint16, {"imagej": True, "metadata": {"axes": "ZCYX"}}, None),
    "TZCYX": ((2, 3, 2, 8, 6), np.float32, {"imagej": True, "metadata": {"axes": "TZCYX"}},
              None),
    "CZYX OME": ((2, 3, 8, 6), np.float32, {"ome": True, "metadata": {"axes": "CZYX"}}, None),
    "ZYXS RGB": ((3, 8, 6, 3), np.uint8, {"photometric": "rgb"}, None),
    "ZYXS RGBA": ((3, 8, 6, 4), np.uint8, {"photometric": "rgb", "extrasamples": ["unassalpha"]},
                  None),
    "ZSYX planar RGB": ((3, 3, 8, 6), np.uint8, {"photometric": "rgb",
                                                 "planarconfig": "separate"}, None),
    "YXS": ((8, 6, 3), np.uint8, {"photometric": "rgb"}, None),
    "--axes ZYX": ((4, 8, 6), np.uint16, {"photometric": "minisblack"}, "ZYX"),
    "--axes TZYX": ((2, 3, 8, 6), np.uint16, {"photometric": "minisblack"}, "TZYX"),
    "--axes YZX (Z within pages)": ((8, 4, 6), np.uint16, {"photometric": "minisblack"}, "YZX"),
    "compressed big-endian": ((5, 8, 6), np.uint16, {"photometric": "minisblack",
                                                     "compression": "zlib", "byteorder": ">"},
                              None),
    "tiled": ((2, 3, 32, 48), np.uint16, {"photometric": "minisblack", "tile": (16, 16),
                                          "metadata": {"axes": "TZYX"}}, None),
    "ImageJ truncated": ((5, 8, 6), np.uint16, {"imagej": True, "truncate": True,
                                                "metadata": {"axes": "ZYX"}}, None),
}


@pytest.mark.parametrize("name", STACKS)
def test_slices_read_alone_are_those_of_the_whole_image(tmp_path, name):
    shape, dtype, options, axes = STACKS[name]
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, _stack(shape, dtype) * 7, **options)
    image = read_tiff(path, axes=axes)
    whole = _engine_slices(image)
    for start in range(len(whole) + 1):
        for stop in range(start, len(whole) + 1):
            part = read_tiff_slices(path, image.axes, start, stop)
            assert part.dtype == whole.dtype
            np.testing.assert_array_equal(part, whole[start:stop])
    header = read_tiff_header(path, axes=axes)
    assert header.describe() == image.describe() and header.alpha == image.alpha
    assert (header.flavour, header.imagej, header.ome, header.shaped, header.compressed) == \
        (image.flavour, image.imagej, image.ome, image.shaped, image.compressed)
    assert header.data.strides == (0,) * header.data.ndim  # it holds no pixels


@pytest.mark.parametrize("axes, shape, part, pages_read", [
    ("ZYX", (4, 8, 6), (1, 3), [1, 2]),
    ("TZCYX", (2, 2, 2, 8, 6), (1, 3), [2, 3, 4, 5]),  # slice (t, z) is pages 4t + 2z + c
])
def test_a_part_reads_only_the_pages_of_its_slices(tmp_path, axes, shape, part, pages_read):
    path = tmp_path / "in.tif"
    data = _stack(shape)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        spoilt = [(series[i].dataoffsets[0], series[i].nbytes) for i in range(len(series))
                  if i not in pages_read]
    with open(path, "r+b") as file:  # every other page's pixels become garbage
        for offset, nbytes in spoilt:
            file.seek(offset)
            file.write(b"\xff" * nbytes)
    whole = read_tiff(path).data
    assert not np.array_equal(whole, data)
    expected = _engine_slices(TiffImage(data=data, axes=axes))
    np.testing.assert_array_equal(read_tiff_slices(path, axes, *part), expected[slice(*part)])


def _how_it_is_seen(path):
    """What a TIFF reader shows of a file besides its pixels: axes, photometric
    interpretation, colour map, sample layout, page count and ImageJ's hyperstack flag."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        colormap = None if page.colormap is None else page.colormap.tolist()
        return (tif.series[0].axes, page.photometric.name, int(page.planarconfig),
                [int(x) for x in page.extrasamples], colormap, len(tif.pages),
                (tif.imagej_metadata or {}).get("hyperstack"))


_LUT = np.stack([np.arange(256) * 257, np.zeros(256), np.arange(256)[::-1] * 257]).astype(
    np.uint16)
_GREY = _stack((8, 6), np.uint8) % 200 + 20

PHOTOMETRIC = {  # name: (pixels, tifffile options)
    "MinIsWhite": (_GREY.astype(np.uint16) * 50, {"photometric": "miniswhite"}),
    "ImageJ MinIsWhite": (_GREY, {"imagej": True, "photometric": "miniswhite"}),
    "palette uint8": (_GREY, {"photometric": "palette", "colormap": _LUT}),
    "palette uint16": (_GREY.astype(np.uint16) * 50,
                       {"photometric": "palette",
                        "colormap": np.tile(np.arange(65536, dtype=np.uint16), (3, 1))}),
    "ImageJ 8-bit with a LUT": (np.stack([_GREY, _GREY[::-1]]),
                                {"imagej": True, "photometric": "palette", "colormap": _LUT,
                                 "metadata": {"axes": "ZYX"}}),
    "three samples MinIsBlack": (np.stack([_GREY] * 3, -1).astype(np.uint16),
                                 {"photometric": "minisblack", "planarconfig": "contig"}),
    "two samples MinIsBlack": (np.stack([_GREY] * 2, -1),
                               {"photometric": "minisblack", "planarconfig": "contig"}),
    "CMYK": (np.stack([_GREY] * 4, -1), {"photometric": "separated"}),
    "grey and alpha": (np.stack([_GREY, _GREY[::-1]], -1),
                       {"photometric": "minisblack", "planarconfig": "contig",
                        "extrasamples": ["unassalpha"]}),
    "RGB and associated alpha": (np.stack([_GREY] * 3 + [_GREY[::-1]], -1),
                                 {"photometric": "rgb", "extrasamples": ["assocalpha"]}),
    "RGB planes": (np.stack([_GREY] * 3), {"photometric": "rgb", "planarconfig": "separate"}),
}


@pytest.mark.parametrize("factor", [None, 2])
@pytest.mark.parametrize("name", PHOTOMETRIC)
def test_a_result_is_seen_as_its_input_was_and_its_map_as_plain_greys(tmp_path, name, factor):
    pixels, options = PHOTOMETRIC[name]
    source, output, map_path = tmp_path / "in.tif", tmp_path / "out.tif", tmp_path / "map.tif"
    tifffile.imwrite(source, pixels, **options)
    before = source.read_bytes()
    image = read_tiff(source)
    plane = (image.axes.index("Y"), image.axes.index("X"))
    colours = image.colours()
    for axis in plane:  # a stand-in for a restoration: the colours changed, enlarged by factor
        colours = colours.repeat(factor or 1, axis=axis)
    restored = image.restored(image.with_alpha(colours // 2 + 1, factor), factor)
    write_tiff(output, restored)
    write_tiff(map_path, image.restored_map(colours, factor))

    assert _how_it_is_seen(output) == _how_it_is_seen(source)
    grown = pixels
    for axis in plane:
        grown = grown.repeat(factor or 1, axis=axis)
    uncertainty = read_tiff(map_path)  # one plain grey map, the samples averaged away
    assert _how_it_is_seen(map_path)[1:4] == ("MINISBLACK", 1, [])
    assert _how_it_is_seen(map_path)[4] is None and uncertainty.data.shape == \
        tuple(n for a, n in zip(image.axes, grown.shape) if a != "S")
    result = tifffile.imread(output)
    assert result.shape == grown.shape and result.dtype == pixels.dtype
    if image.alpha:  # the alpha as it was, enlarged by pixel repetition
        np.testing.assert_array_equal(result[..., -1], grown[..., -1])
        np.testing.assert_array_equal(result[..., :-1], grown[..., :-1] // 2 + 1)
    else:
        np.testing.assert_array_equal(result, grown // 2 + 1)
    assert source.read_bytes() == before
