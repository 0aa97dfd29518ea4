"""napari writer: File > Save Selected Layers writes an image layer as OME-Zarr or TIFF.

So that a layer (a denoised result, or any image) can be kept in the formats napari-wne
writes, with its scale, units and axis names. The format follows the file name's suffix
(``.ome.zarr``, ``.ome.tif``, ``.tif``); the writing itself is `napari_wne.writers`'.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

from .writers import output_format, save_image

__all__ = ["write_image"]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari's single-layer writer hook: write one image layer, return the path written."""
    from ._widget.layers import guess_axes

    name = str(meta.get("name") or "image")
    if meta.get("rgb"):
        raise ValueError(
            f"layer {name!r} is RGB: napari-wne saves intensity images; save it with napari's "
            "own writer (a .tif or .png name without napari-wne chosen), or split its colours"
        )
    if meta.get("multiscale"):
        data = data[0]  # the full resolution; the writer has no pyramid levels yet
    layer = SimpleNamespace(  # what guess_axes reads off a layer
        ndim=data.ndim,
        name=name,
        axis_labels=tuple(meta.get("axis_labels") or ()) or ("",) * data.ndim,
        metadata=dict(meta.get("metadata") or {}),
    )
    axes, _how = guess_axes(layer)
    scale = meta.get("scale")
    units = meta.get("units")
    result = save_image(
        path,
        data,
        axes,
        scale={a: float(s) for a, s in zip(axes, scale, strict=True)} if scale is not None else {},
        units=(  # napari's "pixel" is no physical unit: leave it out
            {a: str(u) for a, u in zip(axes, units, strict=True) if str(u) != "pixel"}
            if units is not None
            else {}
        ),
        name=name,
        # a TIFF is renamed into place, so one this layer still reads from stays intact;
        # an OME-Zarr folder is not replaced (its layer may read lazily from it)
        overwrite=output_format(path) != "ome-zarr",
    )
    return [os.fspath(result)]
