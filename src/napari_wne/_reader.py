"""napari reader for our outputs: OME-Zarr images and OME-TIFFs napari-wne wrote, lazily.

So that a result written headless or by the CLI opens in napari by drag and drop, with its
physical scale, units and axis names, without another plugin. Other OME-TIFFs are left to
napari's own reader (and other plugins): only files that carry napari-wne's provenance
are claimed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da

from .ngff import read_ngff_levels
from .sources import open_source
from .writers.tiff import is_our_ome_tiff

__all__ = ["get_reader"]

LayerData = list[tuple[Any, dict[str, Any], str]]


def get_reader(path: str | list[str]) -> Callable[[str], LayerData] | None:
    """napari's reader hook: a reader for an OME-Zarr image folder or one of our OME-TIFFs,
    or None for anything else."""
    if isinstance(path, list):
        return None
    if _is_ome_zarr_image(Path(path)) or is_our_ome_tiff(Path(path)):
        return read_image
    return None


def _is_ome_zarr_image(path: Path) -> bool:
    for name in ("zarr.json", ".zattrs"):  # zarr v3 (NGFF 0.5), zarr v2 (NGFF 0.4)
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs)
        return "multiscales" in attrs.get("ome", attrs)
    return False


def read_image(path: str) -> LayerData:
    """Level 0 as a dask array, with scale, units and axis labels from the metadata; an
    OME-Zarr pyramid as napari's multiscale image (every level lazy, largest first), so a
    huge result pans smoothly at any zoom."""
    source = open_source(path)
    axes = source.axes or ""
    meta: dict[str, Any] = {"name": source.name.removesuffix(".ome")}
    shown = [a for a in axes if a != "C"]  # napari splits channels into layers
    meta["scale"] = tuple(source.scale.get(a, 1.0) for a in shown)
    meta["axis_labels"] = tuple(a.lower() for a in shown)
    meta["units"] = tuple(source.units.get(a, "pixel") for a in shown)
    if "C" in axes:
        meta["channel_axis"] = axes.index("C")
    levels = read_ngff_levels(Path(path)) if source.kind == "zarr" else []
    if len(levels) > 1:
        meta["multiscale"] = True
        return [([da.from_zarr(level) for level in levels], meta, "image")]
    return [(da.from_zarr(source.array), meta, "image")]
