"""Overlap a block's I/O with the compute of its neighbours: read k+1, write k-1.

The engine's forward pass is the slow step; reading a block (zarr/TIFF decode, transpose)
and writing one (cast, encode, marker) are short but not free. Running them in two
background threads, each at most one block away from the block being computed, hides
them without letting memory grow: at any moment one block is being read, one computed
and one written, whatever the number of blocks.

The I/O threads mostly wait in code that releases the GIL (file reads, blosc/zstd,
numpy copies), so torch's intra-op threads keep running; whether that holds on a given
machine is measured, not assumed (`benchmarks/bench_overlap.py`, docs/performance.md).

Guarantees, the same as running in order:

- `write(i, ...)` is called in block order, one at a time, and a block's write finishes
  before the next one starts: resume markers (written by `write`, after the data) never
  run ahead of data on disk;
- any exception, from `before`, `read`, `compute` or `write`, reaches the caller as
  itself (same type, same message); before it does, the write already started finishes
  (a block either lands whole with its marker or not at all) and no thread is left
  running, so the caller may release the output at once;
- `before(i)` runs in the caller's thread before block `i` is computed, so a
  cancellation it raises stops at a block boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["run_in_order"]

In = TypeVar("In")
Out = TypeVar("Out")


def run_in_order(
    count: int,
    read: Callable[[int], In],
    compute: Callable[[int, In], Out],
    write: Callable[[int, Out], None],
    *,
    before: Callable[[int], None] | None = None,
    written: Callable[[int], None] | None = None,
    overlap: bool = True,
) -> None:
    """Read, compute and write items 0..count-1; with `overlap`, I/O runs beside compute.

    `written(i)` is called in the caller's thread once item `i`'s write has finished
    (for progress reports). Without `overlap` every step runs in this thread, in order:
    the reference the overlapped path must equal.
    """
    if overlap:
        _overlapped(count, read, compute, write, before, written)
        return
    for i in range(count):
        if before is not None:
            before(i)
        write(i, compute(i, read(i)))
        if written is not None:
            written(i)


def _overlapped(count, read, compute, write, before, written) -> None:
    # One thread each, so reads stay in order among themselves and so do writes.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-wne-read")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-wne-write")
    reading: Future | None = None
    writing: Future | None = None
    writing_index = -1
    try:
        for i in range(count):
            if before is not None:
                before(i)
            data = read(i) if reading is None else reading.result()
            # Read ahead only now: block i's input is in hand, so at most two inputs live.
            reading = reader.submit(read, i + 1) if i + 1 < count else None
            result = compute(i, data)
            del data
            if writing is not None:
                writing.result()
                if written is not None:
                    written(writing_index)
            writing, writing_index = writer.submit(write, i, result), i
            del result
        if writing is not None:
            writing.result()
            writing = None
            if written is not None:
                written(writing_index)
    except BaseException as err:
        _settle(writing, err)
        raise
    finally:
        if reading is not None:
            reading.cancel()  # not started yet: never start it
        # Wait for a running read and the last write: no thread outlives this call.
        reader.shutdown(wait=True)
        writer.shutdown(wait=True)


def _settle(writing: Future | None, err: BaseException) -> None:
    """Let a write already under way finish; if it failed too, say so on `err`."""
    if writing is None:
        return
    try:
        writing.result()
    except BaseException as also:  # reported on the error that propagates
        if also is not err:
            err.add_note(f"the previous block's write also failed: {type(also).__name__}: {also}")
