"""Out-of-memory back-off: on a full GPU, compute the same result in smaller pieces.

When a forward pass runs out of device memory, the cache is freed and the pass is retried
with half the tiles per batch; at one tile per pass, each tile is computed in pieces of
half its side (then a quarter, ...), each piece with the engine's halo of context and
normalized by the statistics of its whole tile, so every voxel sees what it saw before:
the result equals that of an unconstrained run, as tiling itself does. Only when asked
does the run move to the CPU. Every step is announced as a `MemoryBackoffWarning` (a line
on stderr, a notification in napari). Reductions stick for as long as the engine lives:
later runs with the same settings in the same process start from them.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .wne import instance_stats

__all__ = ["Backoff", "MemoryBackoffWarning", "is_out_of_memory", "split_tile", "tile_stats"]

ALIGN = 16
"""Piece borders and context fall on multiples of this: the UNet's coarsest grid, so a
piece meets the network's downsampling where the whole tile did."""

Forward = Callable[[np.ndarray, tuple | None], np.ndarray]


class MemoryBackoffWarning(UserWarning):
    """The device ran out of memory and the run went on with smaller pieces (or the CPU)."""


def is_out_of_memory(err: BaseException) -> bool:
    """A device allocation failure: CUDA's `torch.OutOfMemoryError`, or MPS's RuntimeError."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "MPS backend out of memory" in str(err)


def free_cache(device: torch.device) -> None:
    """Hand the allocator's cached blocks back, so the retry finds them free."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def tile_stats(tile: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A tile's own WNE statistics: what it is normalized by when computed whole."""
    mean, std = instance_stats(torch.from_numpy(tile).reshape(1, -1))
    return mean.reshape(()), std.reshape(())


def split_tile(
    shape: Sequence[int], level: int, halo: int | Sequence[int]
) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """Cut a tile of `shape` into pieces of side ceil(side / 2**level) (aligned to `ALIGN`).

    Returns (output box, input box) pairs in tile coordinates: the output boxes cover the
    tile once; each input box adds the axis' `halo` (one for all axes, or one per axis,
    rounded up to `ALIGN`) of context on either side, cut at the tile's own edges, where
    the network pads as it did for the whole tile.
    """
    halos = (halo,) * len(shape) if isinstance(halo, int) else tuple(halo)
    axes = []
    for side, axis_halo in zip(shape, halos, strict=True):
        context = math.ceil(axis_halo / ALIGN) * ALIGN
        cell = max(ALIGN, math.ceil(math.ceil(side / 2**level) / ALIGN) * ALIGN)
        axes.append(
            [
                (
                    slice(s, min(s + cell, side)),
                    slice(max(0, s - context), min(side, s + cell + context)),
                )
                for s in range(0, side, cell)
            ]
        )
    return [
        (tuple(o for o, _ in cells), tuple(i for _, i in cells))
        for cells in itertools.product(*axes)
    ]


class Backoff:
    """The batch size and tile split an engine runs at, reduced on each out-of-memory error.

    `halo` is the engine's context, one for all axes or one per axis (`split_tile`).
    `to_cpu`, when given, moves the engine to the CPU (the user asked for that fallback);
    `stats_of` gives a tile's own normalization statistics, for models that normalize.
    """

    def __init__(
        self,
        device: torch.device,
        batch_size: int,
        halo: int | Sequence[int],
        to_cpu: Callable[[], str] | None = None,
        stats_of: Callable[[np.ndarray], tuple] | None = None,
    ) -> None:
        self.device = device
        self.batch_size = batch_size
        self.level = 0
        self.halo = halo
        self.to_cpu = to_cpu
        self.stats_of = stats_of

    def predict(self, stack: np.ndarray, stats: tuple | None, forward: Forward) -> np.ndarray:
        """`forward(stack, stats)`, in as many passes as the device's memory needs."""
        parts, start = [], 0
        while start < len(stack):
            piece = stack[start : start + self.batch_size]
            try:
                if self.level == 0:
                    parts.append(forward(piece, stats))
                else:
                    parts.append(np.stack([self._in_pieces(t, stats, forward) for t in piece]))
                start += len(piece)
                continue
            except Exception as err:  # anything but running out of memory is raised again
                if not is_out_of_memory(err):
                    raise
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            # Outside the handler: the error's traceback no longer holds the failed tensors.
            tiles = len(piece)
            del piece
            free_cache(self.device)
            self._reduce(reason, stack.shape[1:], tiles)
        return np.concatenate(parts)

    def _in_pieces(self, tile: np.ndarray, stats: tuple | None, forward: Forward) -> np.ndarray:
        """One tile, computed piece by piece with the whole tile's normalization."""
        if stats is None and self.stats_of is not None:
            stats = self.stats_of(tile)
        out = np.empty(tile.shape, dtype=np.result_type(tile.dtype, np.float32))
        for out_box, in_box in split_tile(tile.shape, self.level, self.halo):
            prediction = forward(tile[in_box][None], stats)[0]
            inner = tuple(
                slice(o.start - i.start, o.stop - i.start)
                for o, i in zip(out_box, in_box, strict=True)
            )
            out[out_box] = prediction[inner]
        return out

    def _reduce(self, reason: str, tile_shape: Sequence[int], tiles: int) -> None:
        """Take the next step down from the `tiles` that failed together, and say what it
        was; a MemoryError when there is none left."""
        where = f"out of memory on {self.device} ({reason})"
        if tiles > 1:
            self.batch_size = tiles // 2
            _say(f"{where}: freed the cache; now {self.batch_size} tile(s) per pass")
            return
        pieces = split_tile(tile_shape, self.level + 1, self.halo)
        if len(pieces) > len(split_tile(tile_shape, self.level, self.halo)):
            self.level += 1
            side = "x".join(str(o.stop - o.start) for o in pieces[0][0])
            _say(
                f"{where}: freed the cache; now each tile in {len(pieces)} pieces of up to "
                f"{side} voxels, each with the tile's halo and normalization (same result)"
            )
            return
        if self.to_cpu is not None and self.device.type != "cpu":
            what = self.to_cpu()
            _say(f"{where} even with the smallest pieces: continuing on the CPU ({what}), as asked")
            self.device, self.level = torch.device("cpu"), 0
            return
        raise MemoryError(
            f"{where}, even one tile per pass in pieces of {ALIGN} voxels per side does not "
            "fit. Choose a smaller tile (and halo), another device (e.g. device='cpu'), or "
            "let the run fall back to the CPU (cpu_fallback=True, --cpu-fallback)"
        )


def _say(message: str) -> None:
    warnings.warn(f"napari-wne: {message}", MemoryBackoffWarning, stacklevel=4)
