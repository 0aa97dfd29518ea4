"""How a run lands on disk: one writer per output format, chosen by the output's suffix.

- `writer_for`: the writer for a path (``.zarr``/``.ome.zarr``: `OmeZarrWriter`;
  ``.ome.tif``/``.ome.tiff``: OME-TIFF and ``.tif``/``.tiff``: ImageJ TIFF, both
  `TiffWriter`). Every face (`napari_wne.denoise`, the CLI, the widget) and the cluster
  path write through it; a writer owns the lock, creation, resume markers and finalize.
- `plan`: `OutputPlan`, what a writer needs to know before the first block;
- `ome_zarr`: the OME-Zarr store written block by block, complete only at the end;
- `pyramid`: its multiscale levels, built in a resumable final pass before the metadata;
- `tiff`: TIFFs streamed plane by plane from a resumable staging store;
- `image`: `save_image`, an already computed image (a napari layer) through the same writers;
- `paths`: which output paths are accepted and which folders are ours to replace;
- `lock`: one writer per output;
- `fingerprint`: what the input looked like, so `resume` notices it changed;
- `result`: `DenoisedImage`, the written result.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .fingerprint import input_fingerprint
from .image import save_image
from .lock import OutputInUseError, StaleLockWarning, output_lock
from .ome_zarr import (
    DiskFullError,
    IncompleteOutputError,
    OmeZarrOutput,
    OmeZarrWriter,
    check_not_unfinished,
)
from .paths import (
    check_output_path,
    default_output_name,
    output_format,
    owner,
    remove_ours,
)
from .plan import Fill, OutputPlan, file_sha256, ome_order
from .result import DenoisedImage
from .tiff import TiffWriter, write_tiff

__all__ = [
    "DenoisedImage",
    "DiskFullError",
    "Fill",
    "IncompleteOutputError",
    "OmeZarrOutput",
    "OmeZarrWriter",
    "OutputInUseError",
    "OutputPlan",
    "StaleLockWarning",
    "TiffWriter",
    "Writer",
    "block_store",
    "check_not_unfinished",
    "check_output_path",
    "default_output_name",
    "file_sha256",
    "input_fingerprint",
    "ome_order",
    "output_format",
    "output_lock",
    "owner",
    "remove_ours",
    "save_image",
    "save_tiff",
    "writer_for",
]

Writer = OmeZarrWriter | TiffWriter


def writer_for(path: str | os.PathLike) -> Writer:
    """The writer for an output path, by its suffix (`napari_wne.modes.SUFFIXES`)."""
    kind = output_format(path)
    return OmeZarrWriter(path) if kind == "ome-zarr" else TiffWriter(path, kind)


def block_store(path: str | os.PathLike) -> OmeZarrOutput:
    """The store a writer stages its blocks in, as a cluster worker opens it to write them."""
    return OmeZarrOutput(path)


def save_tiff(
    path: str | os.PathLike,
    image: Any,
    axes: str,
    *,
    scale: dict[str, float] | None = None,
    units: dict[str, str] | None = None,
) -> None:
    """Write an in-memory image (e.g. a demo's input, for comparison) as the TIFF its
    suffix names, with the same metadata a run's TIFF carries (minus provenance)."""
    from pathlib import Path

    image = np.asarray(image)
    path = Path(path)
    kind = output_format(path)
    if kind == "ome-zarr":
        raise ValueError(f"save_tiff writes TIFFs; {path} names an OME-Zarr")
    out_axes = ome_order(axes)
    data = np.transpose(image, [axes.index(a) for a in out_axes])
    plan = OutputPlan(
        shape=data.shape, axes=out_axes, dtype=data.dtype, block={}, blocks=(), record={},
        fingerprint=None, name=path.name.split(".")[0], scale=dict(scale or {}),
        units=dict(units or {}),
    )  # fmt: skip
    TiffWriter(path, kind).check(plan)
    write_tiff(path, data, plan, kind)
