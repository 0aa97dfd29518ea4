"""Run the blocks of one output as tasks on a dask.distributed cluster.

A task carries only names and numbers (`BlockJob` and a `Block`): each worker process
opens the input, builds the model and opens the output once, caches them, and reuses them
for every block it is given. The model is never pickled into the task graph, and every
task writes whole shards of the output, so no two tasks write to the same shard.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .axes import InstanceLayout
from .engine import Block, TileSettings, cached_engine
from .modes import MISSING_CHUNKS, MissingChunks, OutputFormat
from .pipeline import (
    CancelCheck,
    Cancelled,
    Progress,
    _is_cancelled,
    limit_malloc_arenas,
    read_block,
    write_block,
)
from .sources import Source, open_source
from .writers import OmeZarrOutput, block_store

__all__ = ["BlockJob", "compute_block", "connect", "run_on_cluster"]


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to compute and write any block of one run."""

    input_path: str
    input_axes: str
    model: str
    layout: InstanceLayout
    instance_shape: tuple[int, ...]
    device: str
    """As the user gave it ("auto", "cuda", ...): each worker resolves it for its own host."""
    settings: TileSettings
    """With the halo fixed by the client, so every worker tiles identically."""
    store: str
    """The block store the run's writer opened (for a TIFF, its staging OME-Zarr)."""
    output_format: OutputFormat
    """The writer's choice (`napari_wne.writers.writer_for`): what the blocks become."""
    out_axes: str
    out_dtype: str
    stats: tuple[tuple[tuple[int, ...], tuple[float, float]], ...] | None
    missing_chunks: MissingChunks = MISSING_CHUNKS.default  # type: ignore[assignment]


@contextmanager
def connect(scheduler: Any) -> Iterator[Any]:
    """A `distributed.Client` for an address (closed after use), a client as given, or None."""
    if scheduler is None:
        yield None
        return
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if not isinstance(scheduler, str) or not scheduler:
        raise TypeError(f"scheduler must be an address or a distributed.Client, got {scheduler!r}")
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as err:
        raise ConnectionError(
            f"cannot reach the dask scheduler at {scheduler}: {err}; start one with "
            "`dask scheduler` (or a dask-jobqueue cluster) and pass its address"
        ) from err
    with client:
        yield client


@functools.lru_cache(maxsize=4)
def _worker_source(path: str, axes: str, missing_chunks: MissingChunks) -> Source:
    return open_source(path, axes, missing_chunks)


@functools.lru_cache(maxsize=4)
def _worker_output(path: str) -> tuple[OmeZarrOutput, Any]:
    store = block_store(path)
    return store, store.array()


_torch_lock = threading.Lock()


def compute_block(job: BlockJob, block: Block) -> str:
    """One task: read the block's box, denoise it, write its shard, mark it done."""
    limit_malloc_arenas()
    source = _worker_source(job.input_path, job.input_axes, job.missing_chunks)
    engine = cached_engine(job.model, job.layout, job.instance_shape, job.device, job.settings)
    store, target = _worker_output(job.store)
    box, tiles, data = read_block(engine, source, job.input_axes, block)
    stat = None if job.stats is None else dict(job.stats)[block.batch_index]
    with _torch_lock, torch.inference_mode():  # one forward at a time per worker process
        values = engine.compute(data, box, tiles, block.region, stat)
    write_block(target, job.layout, job.out_axes, block, values, job.out_dtype)
    store.mark_done(block.key)
    return block.key


def run_on_cluster(
    client: Any,
    job: BlockJob,
    blocks: Sequence[Block],
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelCheck = None,
    done_before: int = 0,
    total: int | None = None,
    resources: dict[str, float] | None = None,
) -> None:
    """Submit every block as a task and wait, reporting progress as each one lands.

    Cancelling drops the blocks not yet started; the output stays resumable.
    """
    from distributed import as_completed

    total = len(blocks) + done_before if total is None else total
    if not blocks:
        return
    futures = client.map(
        compute_block, [job] * len(blocks), blocks, pure=False, resources=resources
    )
    start, voxels, done = time.perf_counter(), 0, done_before
    by_key = {f.key: b for f, b in zip(futures, blocks, strict=True)}
    try:
        for future in as_completed(futures):
            future.result()  # a failed block raises its worker's error here
            done += 1
            voxels += by_key[future.key].voxels
            if progress is not None:
                elapsed = max(time.perf_counter() - start, 1e-9)
                progress(Progress(done, total, voxels / elapsed))
            if _is_cancelled(cancel) and done < total:
                raise Cancelled(f"cancelled after {done} of {total} blocks")
    finally:
        client.cancel([f for f in futures if not f.done()])
