"""The engine layout of a file's axes: the image plane last, channels anywhere, masks."""

import numpy as np
import pytest

from napari_dip.io.layout import EngineLayout


def test_engine_layout_moves_the_image_plane_last_and_back():
    layout = EngineLayout.for_axes("YXZ")
    data = np.arange(4 * 5 * 3).reshape(4, 5, 3)
    engine = layout.to_engine(data)
    assert engine.shape == (3, 4, 5) and layout.stack_axes == "Z"
    np.testing.assert_array_equal(layout.from_engine(engine), data)

    hyperstack = EngineLayout.for_axes("TZCYX")
    assert hyperstack.order == (0, 1, 2, 3, 4) and hyperstack.channel_axis == 2
    assert hyperstack.stack_axes == "TZ"


def test_masks_of_every_accepted_shape_become_plane_or_per_slice_masks():
    layout = EngineLayout.for_axes("ZCYX")
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
