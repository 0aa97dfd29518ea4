"""The tile grid: full coverage, weights that sum to one, and the halo's cost."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_wne.tiling import AxisTiling, TileGrid, automatic_tile, smallest_tile


def _weight_sum(grid: TileGrid) -> np.ndarray:
    """Summed weights over the image (a last tile may reach past its end: cut that off)."""
    total = np.zeros([t.stop for t in grid.tile(tuple(n - 1 for n in grid.counts)).slices])
    for tile in grid:
        total[tile.slices] += tile.weights
    return total[tuple(slice(0, n) for n in grid.shape)]


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 300),
    tile=st.integers(8, 128),
    margin=st.integers(0, 12),
    blend=st.integers(0, 12),
)
def test_weights_sum_to_one_and_tiles_keep_one_shape(size, tile, margin, blend):
    try:
        axis = AxisTiling(size, tile, margin, blend)
    except ValueError as err:  # refused only when the tile cannot hold its overlaps
        assert "too small" in str(err) and tile < 2 * margin + 2 * blend + 16
        return
    assert axis.tile_size <= max(tile, 1)
    starts = axis.starts
    assert starts[0] == 0 and starts[-1] + axis.tile_size >= size
    assert all(s % 8 == 0 for s in starts)  # on the network's downsampling grid
    total = np.zeros(starts[-1] + axis.tile_size)
    for i, start in enumerate(starts):
        weights = axis.weights(i)
        total[start : start + axis.tile_size] += weights
        if i > 0:  # at least `margin` voxels of context before any weight
            assert (weights[:margin] == 0).all()
    np.testing.assert_allclose(total[:size], 1.0, rtol=0, atol=1e-12)
    strides = np.diff(starts)
    assert (strides <= axis.tile_size - axis.overlap).all()  # every overlap is wide enough


def test_regular_overlaps_sum_to_exactly_one():
    # 4 tiles of 64 with stride 64 - 2*8 - 16 = 32 cover 160 voxels with no irregular end.
    grid = TileGrid((160, 160), tile=(64, 64), margin=(8, 8), blend=(16, 16))
    assert grid.tile_shape == (64, 64)
    assert grid.counts == (4, 4)
    np.testing.assert_allclose(_weight_sum(grid), 1.0, rtol=0, atol=1e-12)


def test_context_margins_get_no_weight_inside_the_volume():
    axis = AxisTiling(200, 64, margin=10, blend=6)
    middle = axis.weights(1)
    assert (middle[:10] == 0).all() and (middle[-10:] == 0).all()
    assert (axis.weights(0)[:10] == 1).all()  # the volume's own border keeps full weight


def test_3d_grid_sums_to_one_over_uneven_overlaps():
    grid = TileGrid((37, 90, 101), tile=(16, 32, 32), margin=(2, 4, 4), blend=(4, 8, 8))
    np.testing.assert_allclose(_weight_sum(grid), 1.0, rtol=0, atol=1e-12)


def test_tiles_touching_a_region_are_exactly_those_with_weight_there():
    grid = TileGrid((120, 130), tile=(48, 48), margin=(6, 6), blend=(8, 8))
    region = (slice(40, 75), slice(0, 64))
    touching = {t.index for t in grid.tiles_touching(region)}
    expected = set()
    for tile in grid:
        mask = np.zeros((200, 200), bool)
        mask[tile.slices] = tile.weights > 0
        if mask[region].any():
            expected.add(tile.index)
    assert touching == expected


@pytest.mark.parametrize("size", [1024, 2048, 2304, 4096, 10000])
def test_halo_cost_of_the_default_2d_tiling_is_below_1_3(size):
    grid = TileGrid((size, size), tile=(512, 512), margin=(16, 16), blend=(16, 16))
    assert grid.computed_fraction() <= 1.3


def test_an_axis_shorter_than_the_tile_is_one_tile():
    axis = AxisTiling(20, 64, 8, 8)
    assert axis.starts == (0,) and axis.tile_size == 20
    assert (axis.weights(0) == 1).all()


def test_grids_take_one_margin_per_axis():
    """A 3-D network that keeps Z gets a thin Z margin and wide Y/X ones: each axis its own
    overlaps and context, and the weights still add to one."""
    grid = TileGrid((40, 200, 200), (24, 96, 96), (3, 20, 20), (4, 8, 8))
    assert [a.margin for a in grid.axes] == [3, 20, 20]
    assert [a.overlap for a in grid.axes] == [10, 48, 48]
    np.testing.assert_allclose(_weight_sum(grid), 1.0, atol=1e-12)


def test_automatic_tiles_grow_only_where_the_halo_needs_and_then_by_three_overlaps():
    assert automatic_tile(48, 3, 16) == 48  # a thin Z halo keeps the default planes
    assert automatic_tile(128, 67, 16) == 456  # the 2-D UNet's reach: 3 x 150, on the grid
    # A 256-px axis with a 67-px halo: one tile, where the smallest that fits took five.
    assert AxisTiling(256, automatic_tile(128, 67, 16), 67, 16).count == 1
    assert AxisTiling(256, smallest_tile(67, 16), 67, 16).count == 5
    for margin in range(12, 130, 3):  # from where 48 no longer fits: grown tiles
        tile = automatic_tile(48, margin, 16)
        assert tile > 48
        for size in range(40, 2000, 37):
            axis = AxisTiling(size, tile, margin, 16)  # never refused as too small
            assert axis.count * axis.tile_size / size < 1.75, (margin, size)
