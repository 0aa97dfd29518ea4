"""`DenoisedImage`: where a run wrote its result, in which format, and how to read it back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..modes import OutputFormat

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["DenoisedImage"]


@dataclass(frozen=True)
class DenoisedImage:
    """A result on disk. ``str()`` and ``os.fspath()`` give its path, as for a `Path`, so
    ``zarr.open(str(result))`` or ``tifffile.imread(result)`` open it directly."""

    path: Path
    axes: str
    """The axes of `to_dask()` (and of the file): OME order TCZYX, ImageJ order TZCYX."""
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    format: OutputFormat = "ome-zarr"

    def to_dask(self) -> da.Array:
        """The result as a lazy dask array (axes in `axes` order), read chunk by chunk."""
        import dask.array as da

        if self.format == "ome-zarr":
            return da.from_zarr(str(self.path / "0"))
        import tifffile
        import zarr

        store = tifffile.imread(self.path, aszarr=True)  # pages read on demand, never whole
        return da.from_zarr(zarr.open_array(store, mode="r"))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return os.fspath(self.path)
