"""The engine: settings checked by name, blocks keyed stably, one engine per process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wne.axes import parse_axes
from napari_wne.engine import Block, Engine, TileSettings, cached_engine

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


def test_the_engine_is_built_once_per_process_and_configuration():
    layout = parse_axes("YX", (40, 40))
    settings = TileSettings(tile=64, halo=8)
    first = cached_engine("ne-dncnn", layout, (40, 40), "cpu", settings)
    assert cached_engine("ne-dncnn", layout, (40, 40), "cpu", settings) is first
    other = cached_engine("ne-dncnn", layout, (40, 40), "cpu", TileSettings(tile=64, halo=9))
    assert other is not first and other.halo == (9, 9)


def test_an_unknown_norm_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"norm must be one of 'tile', 'global', got 'image'"):
        Engine("ne-dncnn", parse_axes("YX", (8, 8)), (8, 8), torch.device("cpu"),
               TileSettings(norm="image"))  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [("tile", 25.5), ("halo", -1), ("halo", (8, -1)), ("halo", (8, 2.5)), ("halo", ()),
     ("halo", (8, True)), ("batch_size", 0)],
)  # fmt: skip
def test_sizes_must_be_whole_and_in_range(field, value):
    with pytest.raises(ValueError, match=field):
        TileSettings(**{field: value})


def test_blocks_cover_every_instance_and_have_stable_keys():
    engine = Engine("ne-dncnn", parse_axes("TYX", (2, 30, 20)), (30, 20), torch.device("cpu"),
                    TileSettings(tile=64, halo=8))  # fmt: skip
    blocks = engine.blocks((2,), (16, 16))
    assert len(blocks) == 2 * 2 * 2 and blocks[0] == Block((0,), (slice(0, 16), slice(0, 16)))
    assert blocks[-1].key == "1_16-30_16-20" and sum(b.voxels for b in blocks) == 2 * 30 * 20


def test_compute_refuses_nan_with_counts():
    engine = Engine("ne-dncnn", parse_axes("YX", (16, 16)), (16, 16), torch.device("cpu"),
                    TileSettings(tile=64, halo=8))  # fmt: skip
    data = np.ones((16, 16), np.float32)
    data[1, 1], data[2, 2] = np.nan, np.inf
    block = Block((), (slice(0, 16), slice(0, 16)))
    box, tiles = engine.plan(block)
    with pytest.raises(ValueError, match="1 NaN and 1 infinite"):
        engine.compute(data, box, tiles, block.region)


def test_automatic_tiles_grow_to_fit_a_wide_halo_but_a_chosen_tile_is_kept():
    layout = parse_axes("ZYX", (70, 24, 24))
    engine = Engine("ne-dncnn", layout, (70, 24, 24), torch.device("cpu"), TileSettings(halo=32))
    assert engine.grid.tile_shape[0] == 70  # the default 48 planes cannot hold 2 x 32 + 16
    with pytest.raises(ValueError, match="at least 104"):
        Engine("ne-dncnn", layout, (70, 24, 24), torch.device("cpu"),
               TileSettings(tile=(48, 24, 24), halo=32))  # fmt: skip


def test_a_halo_is_one_count_for_every_axis_or_one_per_axis():
    layout, shape = parse_axes("ZYX", (40, 64, 64)), (40, 64, 64)
    settings = TileSettings(tile=(48, 48, 48), halo=[2, 8, 8])  # a list is kept as a tuple
    assert settings.halo == (2, 8, 8)
    hash(settings)  # hashable: engines are cached by their settings
    engine = Engine("ne-dncnn", layout, shape, torch.device("cpu"), settings)
    assert engine.halo == (2, 8, 8) and [a.margin for a in engine.grid.axes] == [2, 8, 8]
    same = Engine("ne-dncnn", layout, shape, torch.device("cpu"), TileSettings(tile=48, halo=8))
    assert same.halo == (8, 8, 8)
    with pytest.raises(ValueError, match=r"halo \(8, 8\) needs 3 sizes"):
        Engine("ne-dncnn", layout, shape, torch.device("cpu"), TileSettings(halo=(8, 8)))


def test_automatic_tiles_grow_per_axis_with_the_halo():
    """A thin Z halo keeps the default 48 planes; wide Y/X halos grow those sides alone."""
    layout, shape = parse_axes("ZYX", (100, 600, 600)), (100, 600, 600)
    engine = Engine("ne-dncnn", layout, shape, torch.device("cpu"), TileSettings(halo=(4, 67, 67)))
    assert engine.grid.axes[0].tile == 48 and engine.grid.axes[1].tile == 456
