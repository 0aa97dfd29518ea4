"""`OutputPlan`: everything a writer needs to know before the first block is computed.

The engine layer (`napari_wne.disk_run`) fills it in from a run; the writers turn it into
files. The plan speaks of axes by letter, in OME order (T, C, Z, Y, X), so the writers never
need to know how the run tiled or batched its instances.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .ome_zarr import OmeZarrOutput

__all__ = ["OME_ORDER", "Fill", "OutputPlan", "chunk_shape", "file_sha256", "ome_order"]

OME_ORDER = "TCZYX"

Fill = Callable[["OmeZarrOutput"], None]
"""Computes every block that has no marker yet into the store, marking each as it lands."""


def ome_order(axes: str) -> str:
    """The OME order of `axes`: time, channel, then space."""
    return "".join(a for a in OME_ORDER if a in axes)


@dataclass(frozen=True)
class OutputPlan:
    """The shape, type and metadata of one result, and the blocks it is written in."""

    shape: tuple[int, ...]
    """In `axes` order."""
    axes: str
    """The result's axes in OME order (see `ome_order`)."""
    dtype: np.dtype
    block: dict[str, int]
    """Block side per spatial axis letter: one task, one zarr shard."""
    blocks: tuple[str, ...]
    """The key of every block: the store is finished when each has its marker."""
    record: dict[str, Any]
    """The settings that decide the pixels: a resumed run must match them exactly."""
    fingerprint: dict | None
    """The input's fingerprint (`napari_wne.writers.input_fingerprint`)."""
    name: str = "image"
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    """What made the result (package, model, weights' sha256, settings, input fingerprint,
    device and precision; the writer adds its timing): written into the finished file,
    never compared on resume."""
    channel_names: tuple[str, ...] | None = None
    """The input's channel names, one per index of C, carried to the result; None when
    the input names none (then OME-Zarr has no ``omero`` block, OME-TIFF default names)."""
    levels: tuple[tuple[int, ...], ...] = ()
    """Multiscale levels below level 0: each one's factor per axis (`writers.pyramid`).
    Only OME-Zarr outputs build them; TIFF writers ignore them."""

    @property
    def shards(self) -> tuple[int, ...]:
        return tuple(self.block.get(a, 1) for a in self.axes)

    @property
    def chunks(self) -> tuple[int, ...]:
        spatial = [a for a in self.axes if a in self.block]
        sizes = chunk_shape(tuple(self.block[a] for a in spatial))
        inside = dict(zip(spatial, sizes, strict=True))
        return tuple(inside.get(a, 1) for a in self.axes)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def chunk_shape(block_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks inside each block-sized shard: small enough for napari to browse quickly.

    A chunk must divide its shard: take the largest divisor of the block up to the wanted
    size, or the whole block along an axis where that divisor would be tiny (a prime).
    """
    wanted = (1024, 1024) if len(block_shape) == 2 else (32, 256, 256)
    chunks = []
    for block, want in zip(block_shape, wanted, strict=True):
        divisor = max(d for d in range(1, min(block, want) + 1) if block % d == 0)
        chunks.append(divisor if divisor * 4 >= min(block, want) else block)
    return tuple(chunks)


_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (a model's weights), cached while its size and mtime hold."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for piece in iter(lambda: f.read(1 << 20), b""):
                digest.update(piece)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]
