"""Tiles over one instance and blending weights that sum to one at every voxel.

The grid is global (it depends only on the instance's shape and the tile settings), so a
voxel's result is the same whichever output block asks for it: blocks can run in any
order, on any worker, and a resumed run matches an uninterrupted one.

Per axis, neighbouring tiles overlap by at least ``2*margin + blend``. The middle of each
overlap holds a raised-cosine crossing of ``blend`` voxels where one tile hands over to
the next; on either side of it lies at least ``margin`` voxels of pure context (weight
zero: those voxels see too little of the image). The two ramps are complementary, so the
weights of overlapping tiles add to one; along the volume's own border a tile keeps
weight one. Fixed weights that add to one make the blend of normalization-equivariant
tile outputs normalization-equivariant as a whole.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["AxisTiling", "Tile", "TileGrid", "automatic_tile", "smallest_tile"]


def smallest_tile(margin: int, blend: int, multiple: int = 8) -> int:
    """The smallest tile that still advances past its overlap on an axis that needs
    several tiles: both margins, the blend, and one step of the grid."""
    return 2 * margin + blend + max(multiple, blend) + multiple


def automatic_tile(default: int, margin: int, blend: int, multiple: int = 8) -> int:
    """An automatic tile's side on one axis: `default`, unless the halo does not fit in it;
    then three overlaps (``3 * (2*margin + blend)``, on the grid), so the overlaps cost
    about 1.5x along a long axis, and under 1.75x along any (tests/test_tiling.py).

    Growing only to `smallest_tile` computed 5 tiles of 182 px for a 256-px axis with a
    67-px halo (3.6x); three overlaps take that axis in one tile. An axis whose halo fits
    the default keeps it, so tiles grow only where a wide halo asks for it.
    """
    if default >= smallest_tile(margin, blend, multiple):
        return default
    return -(-3 * (2 * margin + blend) // multiple) * multiple


@dataclass(frozen=True)
class AxisTiling:
    """Tile starts and weight profiles along one axis.

    Tiles start on multiples of `multiple` (the network's downsampling grid), so a tile
    sees the image on the same grid as whole-image inference would. `tile` is the largest
    tile asked for: the axis gets the fewest such tiles that cover it with the required
    overlap, then the tiles shrink as far as they can while still covering it (a
    2048-voxel axis costs 5 x 448 voxels, not 5 x 512). The last tile may reach past the
    end of the axis; the engine cuts it at the end, so the network meets the image's end
    exactly as in whole-image inference.
    """

    size: int
    tile: int
    margin: int
    blend: int
    multiple: int = 8

    def __post_init__(self) -> None:
        if self.tile < 1 or self.margin < 0 or self.blend < 0 or self.multiple < 1:
            raise ValueError(f"bad tiling {self}: tile, multiple >= 1; margin, blend >= 0")
        if self.size > self.tile and self._stride(self.tile) < max(self.multiple, self.blend):
            raise ValueError(
                f"tile {self.tile} is too small for a halo of {self.margin} and a blend of "
                f"{self.blend} (overlap {self.overlap}): use a tile of at least "
                f"{smallest_tile(self.margin, self.blend, self.multiple)} "
                "or a smaller overlap"
            )

    @property
    def overlap(self) -> int:
        return 2 * self.margin + self.blend

    def _stride(self, tile: int) -> int:
        return (tile - self.overlap) // self.multiple * self.multiple

    def _covers(self, tile: int, count: int) -> bool:
        return (count - 1) * self._stride(tile) + tile >= self.size

    @functools.cached_property  # a block plan asks thousands of times
    def count(self) -> int:
        if self.size <= self.tile:
            return 1
        return math.ceil((self.size - self.tile) / self._stride(self.tile)) + 1

    @functools.cached_property
    def tile_size(self) -> int:
        """The tile along this axis: the smallest on-grid size that still covers it."""
        if self.count == 1:
            return self.size
        tile = self.tile
        while tile - self.multiple > self.overlap and self._covers(
            tile - self.multiple, self.count
        ):
            tile -= self.multiple
        return tile

    @functools.cached_property
    def stride(self) -> int:
        return self._stride(self.tile_size) if self.count > 1 else self.size

    @functools.cached_property
    def starts(self) -> tuple[int, ...]:
        return tuple(i * self.stride for i in range(self.count))

    def weights(self, index: int) -> np.ndarray:
        """The 1D weight profile of tile `index` (float64, length tile_size).

        Each overlap with a neighbour holds one raised-cosine crossing, centred in it: this
        tile ramps down exactly where the neighbour ramps up (sin^2 + cos^2 = 1), and what
        is left of the overlap on either side is context with weight zero.
        """
        starts, tile = self.starts, self.tile_size
        ramp = np.sin(0.5 * np.pi * (np.arange(self.blend) + 0.5) / max(self.blend, 1)) ** 2
        up, down = np.ones(tile), np.ones(tile)
        if index > 0:
            crossing = self._crossing(index - 1) - starts[index]
            up[:crossing] = 0.0
            up[crossing : crossing + self.blend] = ramp
        if index < len(starts) - 1:
            crossing = self._crossing(index) - starts[index]
            down[crossing : crossing + self.blend] = ramp[::-1]
            down[crossing + self.blend :] = 0.0
        return up * down

    def _crossing(self, index: int) -> int:
        """Where the ramp between tiles `index` and `index + 1` starts (absolute)."""
        overlap = self.tile_size - self.stride
        return self.starts[index + 1] + (overlap - self.blend) // 2


@dataclass(frozen=True)
class Tile:
    """One tile: where it reads in the instance, and its blending weights per axis.

    The weights are separable; only the part a block needs is ever expanded
    (`weights_in`), so a block of a hundred 3D tiles does not hold a hundred weight cubes.
    """

    index: tuple[int, ...]
    slices: tuple[slice, ...]
    profiles: tuple[np.ndarray, ...]

    @property
    def weights(self) -> np.ndarray:
        """The whole tile's weights (float64)."""
        return self.weights_in(tuple(slice(0, len(p)) for p in self.profiles), np.float64)

    def weights_in(self, box: tuple[slice, ...], dtype=np.float32) -> np.ndarray:
        """The weights of `box` (in tile coordinates), as the outer product of the profiles."""
        weights = np.ones((), dtype=dtype)
        for profile, part in zip(self.profiles, box, strict=True):
            weights = np.multiply.outer(weights, profile[part].astype(dtype))
        return weights


class TileGrid:
    """The tiles covering an instance of `shape` (its spatial axes only)."""

    def __init__(
        self,
        shape: Sequence[int],
        tile: Sequence[int],
        margin: Sequence[int],
        blend: Sequence[int],
        multiple: int = 8,
    ) -> None:
        if not len(shape) == len(tile) == len(margin) == len(blend):
            raise ValueError("shape, tile, margin and blend need one entry per spatial axis")
        self.shape = tuple(int(s) for s in shape)
        self.axes = tuple(
            AxisTiling(s, int(t), int(m), int(b), multiple)
            for s, t, m, b in zip(self.shape, tile, margin, blend, strict=True)
        )

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return tuple(axis.tile_size for axis in self.axes)

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(len(axis.starts) for axis in self.axes)

    def computed_fraction(self) -> float:
        """Voxels the network computes per output voxel (1.0 means no halo cost)."""
        computed = math.prod(n * t for n, t in zip(self.counts, self.tile_shape, strict=True))
        return computed / math.prod(self.shape)

    def tile(self, index: Sequence[int]) -> Tile:
        slices = tuple(
            slice(axis.starts[i], axis.starts[i] + axis.tile_size)
            for axis, i in zip(self.axes, index, strict=True)
        )
        profiles = tuple(axis.weights(i) for axis, i in zip(self.axes, index, strict=True))
        return Tile(tuple(index), slices, profiles)

    def tiles_touching(self, region: Sequence[slice]) -> Iterator[Tile]:
        """Tiles whose non-zero weights reach into `region` (a box of the instance)."""
        ranges = []
        for axis, box in zip(self.axes, region, strict=True):
            hits = []
            for i, start in enumerate(axis.starts):
                nonzero = np.flatnonzero(axis.weights(i))
                first, last = start + nonzero[0], start + nonzero[-1]
                if first < box.stop and last >= box.start:
                    hits.append(i)
            ranges.append(hits)
        for index in itertools.product(*ranges):
            yield self.tile(index)

    def __iter__(self) -> Iterator[Tile]:
        for index in itertools.product(*(range(n) for n in self.counts)):
            yield self.tile(index)
