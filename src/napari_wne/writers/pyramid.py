"""Multiscale pyramids for OME-Zarr outputs: which levels, their metadata, and building them.

A 20000 x 20000 result is 400 Mpx: a viewer showing all of it at once must otherwise read
every chunk of it. Levels ``1``, ``2``, ... each halve the spatial axes of the level above,
so napari reads the level that matches the zoom and pans smoothly at any scale.

- `plan_levels`: the per-axis factor of each level, from the output's shape, pixel sizes
  and the ``pyramid`` mode (`napari_wne.modes.PYRAMID`). Y and X halve down to about
  `SMALLEST` px; Z halves only where its pixel size is comparable to Y/X and it has at
  least `MIN_Z` planes left, so an anisotropic stack keeps its few planes until the
  halved Y/X pixels catch up with Z's size.
- `build_pyramid`: the final pass before the metadata is written. Level k is computed from
  level k-1 block by block (one stored shard of level k at a time, read one chunk's worth at
  a time), so memory stays flat whatever the image's size. Each finished block gets a
  marker in the store's bookkeeping, next to the level-0 blocks' markers, so a killed run
  resumes where it stopped and an unfinished pyramid is never listed in the metadata.
- `ome_datasets`: the ``datasets`` of the OME ``multiscales`` metadata, largest first.
  A level-k pixel is the mean of ``F = 2**k`` level-0 pixels along a halved axis, so its
  centre lies ``(F - 1) / 2`` level-0 pixels past the first one's: each level carries that
  translation, and overlays of different levels line up.

Downsampling is the local mean (integers rounded back to their type): it keeps the
intensities a user measures, unlike striding, and does not alias noise into patterns.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..modes import PYRAMID
from ._hooks import hook

__all__ = [
    "AUTO_ABOVE",
    "MIN_Z",
    "SMALLEST",
    "Z_COMPARABLE",
    "build_pyramid",
    "downsample_mean",
    "level_shapes",
    "ome_datasets",
    "plan_levels",
]

SMALLEST = 1024
"""Levels are added until the largest of Y/X is at most this many pixels."""
AUTO_ABOVE = 4096
"""``pyramid="auto"`` builds levels only when Y or X exceeds this many pixels."""
Z_COMPARABLE = 1.5
"""Z is halved only while its pixel size is at most this factor times Y/X's."""
MIN_Z = 32
"""... and while the level above still has at least this many planes."""

Levels = tuple[tuple[int, ...], ...]
"""Each level's factor per axis (in the output's axis order), relative to the level above."""


def plan_levels(
    shape: Sequence[int],
    axes: str,
    scale: dict[str, float] | None = None,
    mode: str = PYRAMID.default,
    *,
    smallest: int = SMALLEST,
    auto_above: int = AUTO_ABOVE,
    min_z: int = MIN_Z,
) -> Levels:
    """The factors of levels 1, 2, ... for an output of `shape` (axes `axes`, OME order).

    `mode` is "off" (none), "on", or "auto" (as "on" when Y or X exceeds `auto_above`).
    `scale` gives pixel sizes per axis letter (1 where absent), which decide about Z.
    """
    PYRAMID.check(mode)
    sizes = {a: int(n) for a, n in zip(axes, shape, strict=True)}
    plane = [a for a in "YX" if a in sizes]
    if mode == "off" or not plane:
        return ()
    if mode == "auto" and max(sizes[a] for a in plane) <= auto_above:
        return ()
    pixel = {a: float((scale or {}).get(a, 1.0)) for a in "ZYX"}
    levels = []
    while max(sizes[a] for a in plane) > smallest:
        halve = {a for a in plane if sizes[a] > 1}
        finest = min(pixel[a] for a in plane)
        if "Z" in sizes and sizes["Z"] >= min_z and pixel["Z"] <= Z_COMPARABLE * finest:
            halve.add("Z")
        levels.append(tuple(2 if a in halve else 1 for a in axes))
        for a in halve:
            sizes[a] = -(-sizes[a] // 2)
            pixel[a] *= 2
    return tuple(levels)


def level_shapes(shape: Sequence[int], levels: Levels) -> list[tuple[int, ...]]:
    """The shape of level 0 (`shape`) and of every level below it."""
    shapes = [tuple(int(n) for n in shape)]
    for factors in levels:
        shapes.append(tuple(-(-n // f) for n, f in zip(shapes[-1], factors, strict=True)))
    return shapes


def ome_datasets(axes: str, scale: dict[str, float], levels: Levels) -> list[dict[str, Any]]:
    """The OME ``datasets`` entries, level 0 first: path, scale and (below 0) translation."""
    base = [float(scale.get(a, 1.0)) for a in axes]
    total = [1] * len(axes)
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": base}]}]
    for k, factors in enumerate(levels, start=1):
        total = [t * f for t, f in zip(total, factors, strict=True)]
        transforms: list[dict[str, Any]] = [
            {"type": "scale", "scale": [s * t for s, t in zip(base, total, strict=True)]},
            {
                "type": "translation",
                "translation": [s * (t - 1) / 2 for s, t in zip(base, total, strict=True)],
            },
        ]
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    return datasets


def downsample_mean(block: np.ndarray, factors: Sequence[int], dtype: Any = None) -> np.ndarray:
    """The mean of each ``factors``-sized box of `block` (a partial box at an edge: the mean
    of the pixels it has), as `dtype` (default: `block`'s; integers rounded, then clipped)."""
    dtype = np.dtype(dtype or block.dtype)
    sums = np.asarray(block, dtype=np.float64)
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        n = sums.shape[axis]
        starts = np.arange(0, n, f)
        sums = np.add.reduceat(sums, starts, axis=axis)
        counts = np.minimum(starts + f, n) - starts
        sums /= counts.reshape([-1 if i == axis else 1 for i in range(sums.ndim)])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        sums = np.clip(np.rint(sums), info.min, info.max)
    elif dtype.kind == "b":
        sums = sums >= 0.5
    return sums.astype(dtype)


def build_pyramid(store: Any, levels: Levels) -> None:
    """Compute every level of `levels` into `store` (an `OmeZarrOutput` whose level 0 is
    complete), skipping blocks marked done by an earlier, interrupted run."""
    if not levels:
        return
    import zarr

    group = zarr.open_group(str(store.path), mode="r+")
    done = store.done_blocks()
    above = store.array()
    for k, factors in enumerate(levels, start=1):
        target = _level_array(store, group, k, above, factors, done)
        chunks = tuple(int(c) for c in target.chunks)
        for key, box in _shard_boxes(k, target):
            if key in done:
                continue
            target[box] = _reduce_box(above, box, factors, chunks, target.dtype)
            hook("pyramid.written")
            store.mark_done(key)
        above = target


def _level_array(store: Any, group: Any, k: int, above: Any, factors, done: set[str]) -> Any:
    """Level k's array: reopened when an earlier run created it, else (re)created."""
    created = f"level{k}.created"
    if created in done:
        return group[str(k)].with_config({"write_empty_chunks": True})
    shape = tuple(-(-n // f) for n, f in zip(above.shape, factors, strict=True))
    level0 = store.array(mode="r")
    chunks = tuple(min(c, n) for c, n in zip(level0.chunks, shape, strict=True))
    shards = _shards(level0, chunks, shape)
    array = group.create_array(
        str(k),
        shape=shape,
        dtype=level0.dtype,
        chunks=chunks,
        shards=None if shards == chunks else shards,
        dimension_names=level0.metadata.dimension_names,
        compressors=level0.compressors,
        fill_value=0,
        config={"write_empty_chunks": True},
        overwrite=True,  # a level an interrupted run began creating: not yet marked created
    )
    store.mark_done(created)
    return array.with_config({"write_empty_chunks": True})


def _shards(level0: Any, chunks: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Level 0's shard shape, cut to a whole number of chunks covering `shape`: few files, as
    on level 0, and never a shard far larger than the level itself."""
    grid = getattr(level0.metadata, "chunk_grid", None)
    outer = getattr(level0, "shards", None) or getattr(grid, "chunk_shape", None) or chunks
    return tuple(
        min(int(s), -(-n // c) * c) if int(s) % c == 0 else c
        for s, c, n in zip(outer, chunks, shape, strict=True)
    )


def _shard_boxes(k: int, target: Any):
    """Each stored shard (or chunk, unsharded) of level k: its marker key and its box."""
    step = tuple(int(s) for s in (getattr(target, "shards", None) or target.chunks))
    starts = [range(0, n, s) for n, s in zip(target.shape, step, strict=True)]
    for corner in itertools.product(*starts):
        key = f"level{k}." + "_".join(str(c) for c in corner)
        yield (
            key,
            tuple(
                slice(c, min(c + s, n)) for c, s, n in zip(corner, step, target.shape, strict=True)
            ),
        )


def _reduce_box(above: Any, box: tuple[slice, ...], factors, chunks, dtype) -> np.ndarray:
    """Level k's pixels in `box`, read from level k-1 one chunk's worth at a time."""
    out = np.empty(tuple(b.stop - b.start for b in box), dtype=dtype)
    starts = [range(b.start, b.stop, c) for b, c in zip(box, chunks, strict=True)]
    for corner in itertools.product(*starts):
        inner = [
            slice(c, min(c + step, b.stop)) for c, step, b in zip(corner, chunks, box, strict=True)
        ]
        source = tuple(
            slice(s.start * f, min(s.stop * f, n))
            for s, f, n in zip(inner, factors, above.shape, strict=True)
        )
        local = tuple(
            slice(s.start - b.start, s.stop - b.start) for s, b in zip(inner, box, strict=True)
        )
        out[local] = downsample_mean(above[source], factors, dtype)
    return out
