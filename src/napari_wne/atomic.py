"""Files that appear whole or not at all: weights, cards, checkpoints and TIFF outputs.

A run killed mid-write must never leave a file under the final name that looks complete,
so every such file is written beside its target and renamed into place (a rename within
one folder is atomic). Imports nothing heavy: the TIFF writer and the reader use it too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(partial)`` on a temporary file beside `path`, then rename it into place;
    on any failure (or interruption) remove the partial file and re-raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)  # as a plain open() would: readable by the lab, not 0600
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
