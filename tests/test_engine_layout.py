"""The one axis model: axes roles of arrays, napari layers and TIFF files, regions, Labels masks
and output geometry."""

import numpy as np
import pytest

from napari_dip.engine.layout import (Geometry, ImageAxes, mask_for_plan, output_geometry,
                                     plan_run, stack_scopes)


@pytest.mark.parametrize("ndim, rgb, channel, plane, leading", [
    (2, False, None, (0, 1), ()),
    (3, False, None, (1, 2), (0,)),            # Z, Y, X
    (4, True, None, (1, 2), (0,)),             # Z, Y, X, RGB
    (4, False, 1, (2, 3), (0,)),               # Z, C, Y, X
    (4, False, None, (2, 3), (0, 1)),          # T, Z, Y, X
])
def test_axes_roles(ndim, rgb, channel, plane, leading):
    axes = ImageAxes.of(ndim, rgb=rgb, channel=channel)
    assert (axes.plane, axes.leading) == (plane, leading)


def test_rgb_axis_is_no_layer_dimension_and_a_lone_plane_is_refused():
    assert ImageAxes.of(3, rgb=True).layer_dims == (0, 1)
    with pytest.raises(ValueError, match="two image-plane axes"):
        ImageAxes.of(2, channel=0)


def test_stack_scopes_offer_each_leading_axis_and_all_of_them():
    assert stack_scopes(ImageAxes.of(2)) == []
    assert stack_scopes(ImageAxes.of(4)) == [(0,), (1,), (0, 1)]


def test_current_slice_keeps_every_axis_and_whole_stack_loops():
    axes = ImageAxes.of(4)  # T, Z, Y, X
    shape = (2, 5, 16, 16)
    current = plan_run(axes, shape, (1, 3, 0, 0), stack_axes=None)
    assert current.fixed == {0: 1, 1: 3}
    assert np.zeros(shape)[current.region].shape == (1, 1, 16, 16)
    along_z = plan_run(axes, shape, (1, 3, 0, 0), stack_axes=(1,), factor=2)
    assert along_z.fixed == {0: 1}
    assert along_z.output_shape(np.zeros(shape)[along_z.region].shape) == (1, 5, 32, 32)
    with pytest.raises(ValueError, match="not stack axes"):
        plan_run(axes, shape, (0, 0, 0, 0), stack_axes=(2,))


def test_a_current_slice_outside_the_layer_is_refused_not_clipped():
    axes = ImageAxes.of(4)  # T, Z, Y, X
    for position in [(0, 5, 0, 0), (-1, 0, 0, 0)]:
        with pytest.raises(ValueError, match="outside this layer .* move the slider"):
            plan_run(axes, (2, 5, 16, 16), position, stack_axes=None)
    # a whole-stack run along that axis does not depend on the slider there
    assert plan_run(axes, (2, 5, 16, 16), (1, 7, 0, 0), stack_axes=(1,)).fixed == {0: 1}


def test_a_labels_layer_shaped_like_the_image_with_channels_masks_any_channel():
    axes = ImageAxes.of(4, channel=1)  # Z, C, Y, X
    shape = (3, 2, 8, 8)
    labels = np.zeros(shape, dtype=np.uint8)  # what New Labels makes for this image
    labels[1, 0, 2, 2] = labels[1, 1, 5, 5] = labels[2, 1, 0, 0] = 1
    current = plan_run(axes, shape, (1, 0, 0, 0), stack_axes=None)
    mask = mask_for_plan(labels, shape, current)
    assert mask.shape == (1, 8, 8) and set(zip(*np.nonzero(mask[0]))) == {(2, 2), (5, 5)}
    whole = mask_for_plan(labels, shape, plan_run(axes, shape, (0,) * 4, stack_axes=(0,)))
    assert whole.shape == (3, 8, 8) and whole.sum() == 3
    every_slice = mask_for_plan(labels[1], shape, current)  # (C, Y, X): for every Z
    np.testing.assert_array_equal(every_slice, mask)
    with pytest.raises(ValueError, match=r"shape \(2, 8\), which does not fit"):
        mask_for_plan(labels[1, :, 0], shape, current)


def test_a_2d_labels_layer_masks_every_slice_and_an_nd_one_slice_by_slice():
    axes = ImageAxes.of(3)
    shape = (3, 8, 8)
    labels2d = np.zeros((8, 8), dtype=np.uint8)
    labels2d[2:4, 2:4] = 5
    plan = plan_run(axes, shape, (0, 0, 0), stack_axes=(0,))
    mask = mask_for_plan(labels2d, shape, plan)
    assert mask.shape == shape and mask.dtype == bool
    assert mask.sum() == 3 * 4

    labels3d = np.zeros(shape, dtype=np.uint8)
    labels3d[1, 0, 0] = 1
    current = plan_run(axes, shape, (1, 0, 0), stack_axes=None)
    assert mask_for_plan(labels3d, shape, current).sum() == 1
    other = plan_run(axes, shape, (2, 0, 0), stack_axes=None)
    assert mask_for_plan(labels3d, shape, other).sum() == 0


def test_a_channel_axis_is_left_out_of_the_mask():
    axes = ImageAxes.of(3, rgb=True)
    plan = plan_run(axes, (8, 8, 3), (0, 0), stack_axes=None)
    assert mask_for_plan(np.ones((8, 8)), (8, 8, 3), plan).shape == (8, 8)


def test_a_labels_layer_that_fits_nothing_is_refused_with_the_shapes_that_would_fit():
    axes = ImageAxes.of(3)
    plan = plan_run(axes, (3, 8, 8), (0, 0, 0), stack_axes=None)
    with pytest.raises(ValueError, match=r"shape \(5, 5\).*\(8, 8\) or \(3, 8, 8\)"):
        mask_for_plan(np.zeros((5, 5)), (3, 8, 8), plan)


def test_super_resolved_pixels_start_where_the_input_pixels_start():
    axes = ImageAxes.of(3)
    plan = plan_run(axes, (4, 8, 8), (2, 0, 0), stack_axes=None, factor=4)
    geometry = output_geometry(Geometry((3.0, 2.0, 1.0), (100.0, 10.0, 20.0)), plan)
    assert geometry.scale == (3.0, 0.5, 0.25)
    assert geometry.translate[0] == 100.0 + 2 * 3.0  # the slice it came from
    for k in (1, 2):
        old_edge = (10.0, 20.0)[k - 1] - (2.0, 1.0)[k - 1] / 2
        assert geometry.translate[k] - geometry.scale[k] / 2 == pytest.approx(old_edge)


def test_a_labels_layer_must_span_the_image_plane():
    axes = ImageAxes.of(3, channel=2)  # Y, X, C (not RGB)
    plan = plan_run(axes, (16, 24, 2), (0, 0, 0), stack_axes=None)
    with pytest.raises(ValueError, match=r"shape \(24, 2\), which does not fit"):
        mask_for_plan(np.zeros((24, 2), np.uint8), (16, 24, 2), plan)  # X and C, no Y
    assert mask_for_plan(np.ones((16, 24, 2), np.uint8), (16, 24, 2), plan).shape == (16, 24)


@pytest.mark.parametrize("letters, channel, plane, leading, order, channel_axis, stack_axes", [
    ("YX", None, (0, 1), (), (0, 1), None, ""),
    ("TZCYX", 2, (3, 4), (0, 1), (0, 1, 2, 3, 4), 2, "TZ"),
    ("YXS", 2, (0, 1), (), (0, 1, 2), 2, ""),
    ("YXZ", None, (0, 1), (2,), (2, 0, 1), None, "Z"),          # the plane moved last
    ("ZYXC", 3, (1, 2), (0,), (0, 1, 2, 3), 3, "Z"),
])
def test_a_files_axis_letters_give_the_same_model_as_an_array(letters, channel, plane, leading,
                                                              order, channel_axis, stack_axes):
    axes = ImageAxes.from_letters(letters)
    assert (axes.channel, axes.plane, axes.leading) == (channel, plane, leading)
    assert (axes.order, axes.channel_axis, axes.stack_axes) == (order, channel_axis, stack_axes)
    if order == tuple(range(len(letters))):  # an array with that channel axis: the same roles
        array = ImageAxes.of(len(letters), channel=channel)
        assert (array.plane, array.leading, array.channel_axis) == (plane, leading, channel_axis)


@pytest.mark.parametrize("ndim, channel, slice_channel", [
    (3, None, None), (4, 1, 0), (4, -1, 2), (3, 0, 0), (5, 2, 0)])
def test_a_slice_keeps_its_channel_axis_where_the_stack_has_it(ndim, channel, slice_channel):
    assert ImageAxes.of(ndim, channel=channel).slice_channel == slice_channel


def test_data_goes_to_the_engine_layout_and_back():
    axes = ImageAxes.from_letters("YXZ")
    data = np.arange(4 * 5 * 3).reshape(4, 5, 3)
    engine = axes.to_engine(data)
    assert engine.shape == (3, 4, 5)
    np.testing.assert_array_equal(axes.from_engine(engine), data)
    mask = np.zeros((4, 5))
    mask[1, 2] = 1
    assert axes.mask_to_engine(mask, data.shape)[1, 2]


def test_engine_layout_moves_the_image_plane_last_and_back():
    layout = ImageAxes.from_letters("YXZ")
    data = np.arange(4 * 5 * 3).reshape(4, 5, 3)
    engine = layout.to_engine(data)
    assert engine.shape == (3, 4, 5) and layout.stack_axes == "Z"
    np.testing.assert_array_equal(layout.from_engine(engine), data)

    hyperstack = ImageAxes.from_letters("TZCYX")
    assert hyperstack.order == (0, 1, 2, 3, 4) and hyperstack.channel_axis == 2
    assert hyperstack.stack_axes == "TZ"


def test_masks_of_every_accepted_shape_become_plane_or_per_slice_masks():
    layout = ImageAxes.from_letters("ZCYX")
    shape = (3, 2, 8, 8)
    plane = np.zeros((8, 8), np.uint8)
    plane[2, 3] = 255
    assert layout.mask_to_engine(plane, shape).shape == (8, 8)
    full = np.zeros(shape, bool)
    full[1, 1, 4, 4] = True  # missing in one channel only -> missing for the pixel
    per_slice = layout.mask_to_engine(full, shape)
    assert per_slice.shape == (3, 8, 8) and per_slice[1, 4, 4] and per_slice.sum() == 1
    assert layout.mask_to_engine(np.ones((3, 8, 8)), shape).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="mask has shape"):
        layout.mask_to_engine(np.ones((5, 5)), shape)
