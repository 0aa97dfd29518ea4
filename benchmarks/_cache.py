"""Scores of slow, deterministic baselines, kept between runs so a new model costs minutes.

BM4D takes about 45 minutes of one core for the 3-D table, and BM3D about 27 of the
correlated-noise table's 31, and what they return depends only on the images they are
given and the package's version, not on the model a run is there to score.
`cached_scores` keys the scores by a hash of exactly those (the method's
name, the package version, and the bytes, shapes and dtypes of the noisy and clean
arrays), reads it from `baseline_scores.json` beside this file when the key is there, and
computes and stores it when not. Any change to the data, its noise seed or the package
misses the key, so a stored score is always the score this run would have computed. The
time stored is the one measured when it was computed (with the machine); `--refresh`
in a script recomputes everything and overwrites the entries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

STORE = Path(__file__).with_name("baseline_scores.json")


def _key(method: str, package: str, arrays: tuple[np.ndarray, ...]) -> str:
    try:
        package_version = version(package)
    except PackageNotFoundError:
        package_version = "absent"
    digest = hashlib.sha256(f"{method}|{package}=={package_version}".encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"|{array.shape}|{array.dtype}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cached_scores(
    method: str,
    package: str,
    arrays: tuple[np.ndarray, ...],
    compute: Callable[[], Sequence[float]],
    machine: str,
    refresh: bool = False,
) -> tuple[tuple[float, ...], float]:
    """(scores, seconds) of `compute()`, from the store when `arrays` hash as before.

    `package` names the distribution whose version the result depends on (``"bm4d"``);
    `machine` is recorded beside the time, which is only as good as the run that took it.
    """
    key = _key(method, package, arrays)
    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    if not refresh and key in store:
        entry = store[key]
        found = entry["scores"] if "scores" in entry else [entry["score"]]  # one-score entries
        return tuple(float(v) for v in found), float(entry["seconds"])
    start = time.perf_counter()
    values = tuple(float(v) for v in compute())
    seconds = time.perf_counter() - start
    store = json.loads(STORE.read_text()) if STORE.exists() else {}  # another run may write
    store[key] = {
        "method": method,
        "shape": list(arrays[0].shape),
        "scores": list(values),
        "seconds": seconds,
        "machine": machine,
        "date": date.today().isoformat(),
    }
    STORE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")
    return values, seconds


def cached_score(
    method: str,
    package: str,
    arrays: tuple[np.ndarray, ...],
    compute: Callable[[], float],
    machine: str,
    refresh: bool = False,
) -> tuple[float, float]:
    """`cached_scores` for a method with one score (BM4D's PSNR)."""
    values, seconds = cached_scores(
        method, package, arrays, lambda: (compute(),), machine, refresh=refresh
    )
    return values[0], seconds
