"""A cheap fingerprint of the input, kept with an output so `resume` can tell it changed.

A run killed halfway and resumed on an input that was rewritten meanwhile would stitch
blocks of the old image to blocks of the new one. Reading the whole input again to compare
would cost a second pass, so the fingerprint is what can be had cheaply:

- a file: its size, its modification time and a digest of 16 samples of 4 KiB spread over it;
- a folder (a zarr store): the number, total size and latest modification time of its
  files, a digest of that listing (any chunk rewritten changes it) and of a few files'
  bytes (metadata first);
- an in-memory numpy array: a digest of all of it (it is in memory already);
- any other array: none, as reading it whole to hash it would cost a pass.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["describe_change", "input_fingerprint"]

_SAMPLES = 16
_SAMPLE_BYTES = 4096
_WORDS = {
    "size": "size",
    "mtime_ns": "modification time",
    "files": "number of files",
    "sha1": "content",
    "sample_sha1": "sampled content",
    "listing_sha1": "list of files",
}


def input_fingerprint(path: Path | None, array: Any) -> dict | None:
    """The fingerprint of an input given by `path`, or of `array` when it has no path."""
    if path is not None:
        return _folder(path) if path.is_dir() else _file(path)
    if isinstance(array, np.ndarray):
        digest = hashlib.sha1(np.ascontiguousarray(array).view(np.uint8)).hexdigest()
        return {"kind": "array", "shape": list(array.shape), "dtype": str(array.dtype),
                "sha1": digest}  # fmt: skip
    return None


def describe_change(before: dict | None, now: dict | None) -> str | None:
    """What differs between two fingerprints, in words; None when they agree."""
    if before == now or before is None:
        return None  # nothing was recorded (a lazy array): nothing to compare
    if now is None or before.get("kind") != now.get("kind"):
        return "it is now another kind of input"
    changed = [k for k in sorted(before) if before.get(k) != now.get(k)]
    return ", ".join(_WORDS.get(k, k) for k in changed)


def _file(path: Path) -> dict:
    stat = path.stat()
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for offset in _offsets(stat.st_size):
            f.seek(offset)
            digest.update(f.read(_SAMPLE_BYTES))
    return {"kind": "file", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sample_sha1": digest.hexdigest()}  # fmt: skip


def _offsets(size: int) -> list[int]:
    if size <= _SAMPLES * _SAMPLE_BYTES:
        return list(range(0, size, _SAMPLE_BYTES))
    step = (size - _SAMPLE_BYTES) / (_SAMPLES - 1)
    return [round(i * step) for i in range(_SAMPLES)]


def _folder(path: Path) -> dict:
    files: list[tuple[str, int, int]] = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            stat = os.stat(full)
            files.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    listing = hashlib.sha1(repr(files).encode())
    content = hashlib.sha1()
    picks = sorted(f for f in files if f[0].endswith(".json") or f[0].startswith("."))[:4]
    if files:
        picks += [files[round(i * (len(files) - 1) / 3)] for i in range(4)]
    for relative, _, _ in picks:
        content.update(_file(path / relative)["sample_sha1"].encode())
    return {"kind": "folder", "files": len(files), "size": sum(f[1] for f in files),
            "mtime_ns": max((f[2] for f in files), default=0),
            "listing_sha1": listing.hexdigest(), "sample_sha1": content.hexdigest()}  # fmt: skip
