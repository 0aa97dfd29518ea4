"""Run an `Engine` over every block: in memory, lazily with dask, or into an OME-Zarr.

On a GPU, reading the next block and writing the last one run in background threads while
the device computes (`napari_wne.overlap`), with at most one block in flight each way, so
memory stays bounded by the block size whatever the size of the image.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np

from .axes import InstanceLayout, select
from .engine import Block, Engine
from .normalization import global_stats
from .overlap import run_in_order
from .sources import Source

__all__ = [
    "Cancelled",
    "Progress",
    "cast",
    "instance_stats",
    "read_block",
    "run_blocks",
    "write_block",
]


@dataclass(frozen=True)
class Progress:
    """Blocks done out of the total, and the throughput so far."""

    done: int
    total: int
    voxels_per_second: float
    tiles_done: int = 0
    """Within the block being computed (per-tile reports only): tiles done of `tiles_total`."""
    tiles_total: int = 0


class Cancelled(RuntimeError):
    """The run stopped at a block boundary on request; the output can be resumed."""


CancelCheck = Callable[[], bool] | threading.Event | None


def _is_cancelled(cancel: CancelCheck) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def read_block(engine: Engine, source: Source, axes: str, block: Block):
    """The input box a block needs, as float32 in Z, Y, X order, with its tiles."""
    box, tiles = engine.plan(block)
    index, order = select(engine.layout, axes, block.batch_index, box)
    data = source.read(index)
    return box, tiles, np.ascontiguousarray(np.transpose(data, order))


def cast(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float results in the output dtype: integers are rounded and saturate at their range.

    Integers are rounded and clipped in float64, against bounds that float64 holds exactly:
    float(2**63 - 1) is 2**63, and casting that to int64 would wrap to -2**63. A float
    result that the output's float type cannot hold is an error, never inf or a silent 0.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        values = np.rint(result.astype(np.float64, copy=False))
        if np.isnan(values).any():
            raise ValueError("the result has NaN values; they have no integer value to write")
        info = np.iinfo(dtype)
        ceiling = float(info.max)  # rounds up to 2**bits for the 64-bit types
        top = ceiling if int(ceiling) == info.max else float(np.nextafter(ceiling, 0.0))
        out = np.clip(values, float(info.min), top).astype(dtype)
        if top != ceiling:
            out[values >= ceiling] = info.max
        return out
    with np.errstate(over="ignore"):  # an overflow is reported below, with its cause
        out = result.astype(dtype, copy=False)
    if out.dtype.itemsize < result.dtype.itemsize:
        _check_narrowed(result, out)
    return out


def _check_narrowed(result: np.ndarray, out: np.ndarray) -> None:
    """Refuse a float result that overflows or vanishes in a narrower float type."""
    info = np.finfo(out.dtype)
    magnitude = np.abs(result)
    lost = (magnitude > info.max) | ((magnitude < info.smallest_normal) & (result != 0))
    if not lost.any():
        return
    largest, smallest = float(magnitude.max()), float(magnitude[result != 0].min())
    raise ValueError(
        f"the result spans magnitudes {smallest:.4g} to {largest:.4g}, which {out.dtype} "
        f"(normal range {info.smallest_normal:.3g} to {info.max:.3g}) cannot hold "
        f"({int(lost.sum())} values would become inf or lose their precision); rescale the "
        "image, or ask for an output dtype that holds it (dtype='input' keeps float64 input "
        "as float64)"
    )


def write_block(
    target, layout: InstanceLayout, axes: str, block: Block, values: np.ndarray, dtype
) -> None:
    """Put a block's result (Z, Y, X order) into `target`, an array laid out as `axes`."""
    index, order = select(layout, axes, block.batch_index, block.region)
    target[index] = np.transpose(cast(values, np.dtype(dtype)), np.argsort(order))


def instance_stats(
    source: Source, layout: InstanceLayout, axes: str, batch_index: tuple[int, ...]
) -> tuple[float, float]:
    """Global normalization statistics of one instance, from a strided subsample."""
    shape = layout.spatial_shape(source.shape)

    def read_strided(step: int) -> np.ndarray:
        region = tuple(slice(0, n, step) for n in shape)
        index, _ = select(layout, axes, batch_index, region)
        return source.read(index)

    return global_stats(read_strided, shape)


def run_blocks(
    engine: Engine,
    source: Source,
    axes: str,
    blocks: Sequence[Block],
    write: Callable[[Block, np.ndarray], None],
    *,
    stats: dict[tuple[int, ...], tuple[float, float]] | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelCheck = None,
    done_before: int = 0,
    total: int | None = None,
    tile_progress: Callable[[Progress], None] | None = None,
) -> None:
    """Read, compute and write `blocks` in order, overlapping I/O with compute.

    `progress` hears after every block; `tile_progress`, when given, also after every
    forward pass inside a block (for a live bar when one block is a whole large plane).
    With `engine.settings.overlap` (by default on a GPU, not on the CPU) the next block is
    read and the previous one written in background threads (`napari_wne.overlap`); the
    pixels are the same.
    """
    total = len(blocks) + done_before if total is None else total
    if not blocks:
        return
    limit_malloc_arenas()
    start = time.perf_counter()
    voxels = [0]  # output voxels of the blocks written so far

    def check(i: int) -> None:
        if _is_cancelled(cancel):
            raise Cancelled(f"cancelled after {done_before + i} of {total} blocks")

    def compute(i: int, read: tuple) -> np.ndarray:
        box, tiles, data = read
        block = blocks[i]
        stat = None if stats is None else stats[block.batch_index]
        on_tiles = None
        if tile_progress is not None:
            on_tiles = functools.partial(
                _report_tiles, tile_progress, done_before + i, total, voxels[0], block, start
            )
        return engine.compute(data, box, tiles, block.region, stat, on_tiles)

    def written(i: int) -> None:
        voxels[0] += blocks[i].voxels
        _report(progress, done_before + i + 1, total, voxels[0], start)

    run_in_order(
        len(blocks),
        lambda i: read_block(engine, source, axes, blocks[i]),
        compute,
        lambda i, values: write(blocks[i], values),
        before=check,
        written=written,
        overlap=overlaps(engine),
    )


def overlaps(engine: Engine) -> bool:
    """Whether this run overlaps I/O with compute: as asked, else only off the CPU."""
    asked = engine.settings.overlap
    return engine.device.type != "cpu" if asked is None else asked


@functools.cache
def limit_malloc_arenas() -> None:
    """Keep glibc from giving every I/O thread its own memory arena.

    Block buffers are allocated in one thread and freed in another (reader, device, writer,
    zarr's codec threads); with an arena per thread the freed space fragments and peak
    memory creeps up with the number of blocks. Two arenas keep it flat in the stack size
    (docs/performance.md). A no-op without glibc, or where MALLOC_ARENA_MAX is set.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _report(progress, done: int, total: int, voxels: int, start: float) -> None:
    if progress is not None:
        elapsed = max(time.perf_counter() - start, 1e-9)
        progress(Progress(done, total, voxels / elapsed))


def _report_tiles(
    report, done: int, total: int, voxels: int, block: Block, start: float, tiles: int, of: int
) -> None:
    elapsed = max(time.perf_counter() - start, 1e-9)
    speed = (voxels + block.voxels * tiles / of) / elapsed
    report(Progress(done, total, speed, tiles_done=tiles, tiles_total=of))


def lazy_result(
    make_engine: Callable[[], Engine],
    source: Source,
    axes: str,
    layout: InstanceLayout,
    block_shape: Sequence[int],
    out_dtype: np.dtype,
    stats: dict | None,
) -> da.Array:
    """A dask array whose chunks are blocks, computed by the engine when asked for."""
    batch_shape = layout.batch_shape(source.shape)
    spatial_shape = layout.spatial_shape(source.shape)
    chunks = tuple((1,) * n for n in batch_shape) + tuple(
        _split(n, b) for n, b in zip(spatial_shape, block_shape, strict=True)
    )
    nb = len(batch_shape)

    def compute(template: np.ndarray, block_info=None) -> np.ndarray:
        location = block_info[0]["array-location"]
        block = Block(
            tuple(start for start, _ in location[:nb]),
            tuple(slice(start, stop) for start, stop in location[nb:]),
        )
        engine = make_engine()
        box, tiles, data = read_block(engine, source, axes, block)
        stat = None if stats is None else stats[block.batch_index]
        result = cast(engine.compute(data, box, tiles, block.region, stat), out_dtype)
        return result.reshape((1,) * nb + result.shape)

    meta = np.empty((0,) * (nb + len(spatial_shape)), dtype=out_dtype)
    template = da.empty(batch_shape + spatial_shape, chunks=chunks, dtype=np.uint8)
    return da.map_blocks(compute, template, dtype=out_dtype, meta=meta)


def _split(size: int, block: int) -> tuple[int, ...]:
    return tuple(min(block, size - s) for s in range(0, size, block))
