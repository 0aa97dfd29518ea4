"""Axis letters: which are instances, which are space, and how a box is selected."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wne.axes import letter_for_axis_name, parse_axes, select


def test_time_and_channel_are_instances_and_space_is_zyx_in_order():
    layout = parse_axes("xyczt".upper()[::-1], (4, 3, 5, 6, 7))  # "TZCYX"
    assert layout.batch_axes == "TC" and layout.spatial_axes == "ZYX"
    assert layout.batch_shape((4, 3, 5, 6, 7)) == (4, 5)
    assert layout.spatial_shape((4, 3, 5, 6, 7)) == (3, 6, 7)


def test_planes_make_z_an_instance_axis():
    layout = parse_axes("ZYX", (3, 8, 9), planes=True)
    assert layout.batch_axes == "Z" and layout.spatial_dims == 2


@pytest.mark.parametrize(
    ("axes", "shape", "problem"),
    [("QYX", (2, 4, 4), "unknown letter"), ("YY", (4, 4), "repeats"),
     ("ZYX", (4, 4), "names 3 axes"), ("TX", (4, 4), "both Y and X"),
     ("ZYX", (1, 4, 4), "at least 2 pixels"), (None, (2, 4, 4), "needs axes")],
)  # fmt: skip
def test_bad_axes_say_what_is_wrong(axes, shape, problem):
    with pytest.raises(ValueError, match=problem):
        parse_axes(axes, shape)


def test_select_reads_one_instance_box_in_zyx_order():
    array = np.arange(2 * 3 * 4 * 5).reshape(5, 4, 3, 2).transpose(3, 2, 1, 0)  # axes XYZT
    layout = parse_axes("XYZT", array.shape)
    index, order = select(layout, "XYZT", (1,), (slice(0, 2), slice(1, 3), slice(0, 1)))
    box = np.transpose(array[index], order)
    expected = array.transpose(3, 2, 1, 0)[1, 0:2, 1:3, 0:1]  # T=1, then Z, Y, X
    np.testing.assert_array_equal(box, expected)


def test_file_axis_names_map_to_letters():
    assert letter_for_axis_name("time") == "T" and letter_for_axis_name("z") == "Z"
    assert letter_for_axis_name("c", "channel") == "C"
    assert letter_for_axis_name("wavelength-ish", "unknown") is None
