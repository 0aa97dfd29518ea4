"""`save_image`: write an image that is already computed (an array, in memory or lazy).

For faces that hand over pixels rather than a run, such as napari's File > Save Selected
Layers: the image goes through the same writer a run's output does (`writer_for`), so it
gets the same OME-Zarr or TIFF layout, metadata and all-or-nothing finish. It is copied
block by block, so a lazy (dask, zarr) image never has to fit in memory.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .ome_zarr import OmeZarrWriter
from .paths import output_format
from .plan import OutputPlan, ome_order
from .pyramid import plan_levels
from .result import DenoisedImage
from .tiff import TiffWriter

__all__ = ["save_image"]

BLOCK_2D = {"Y": 4096, "X": 4096}
BLOCK_3D = {"Z": 128, "Y": 512, "X": 512}
"""The largest block copied at once (and one shard of the store), as a run's defaults."""


def save_image(
    path: str | os.PathLike,
    image: Any,
    axes: str,
    *,
    scale: dict[str, float] | None = None,
    units: dict[str, str] | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> DenoisedImage:
    """Write `image` (axes `axes`, e.g. "ZYX") to the format `path`'s suffix names.

    `scale` and `units` are per axis letter; `overwrite` replaces an existing output only
    where the writer allows it (an OME-Zarr only when napari-wne wrote it).
    """
    path = Path(path)
    kind = output_format(path)
    axes = str(axes).upper()
    if len(axes) != image.ndim or len(set(axes)) != len(axes) or not set(axes) <= set("TCZYX"):
        raise ValueError(
            f"cannot save {path}: axes {axes!r} do not describe a {image.ndim}-D image with "
            "one distinct letter from T, C, Z, Y, X per dimension"
        )
    out_axes = ome_order(axes)
    order = [axes.index(a) for a in out_axes]
    shape = tuple(int(image.shape[i]) for i in order)
    sides = BLOCK_3D if "Z" in out_axes else BLOCK_2D
    block = {a: min(shape[out_axes.index(a)], sides[a]) for a in out_axes if a in sides}
    regions = _regions(out_axes, shape, block)
    plan = OutputPlan(
        shape=shape, axes=out_axes, dtype=np.dtype(image.dtype), block=block,
        blocks=tuple(regions), record={"saved": name or path.name}, fingerprint=None,
        name=name or path.name.split(".")[0], scale=dict(scale or {}), units=dict(units or {}),
        provenance={"software": "napari-wne", "version": __version__, "saved_from": "array"},
        levels=plan_levels(shape, out_axes, scale),  # a huge layer: "auto" adds levels
    )  # fmt: skip
    writer = OmeZarrWriter(path) if kind == "ome-zarr" else TiffWriter(path, kind)
    writer.check(plan)

    def fill(store: Any) -> None:
        target = store.array()
        for key in sorted(set(regions) - store.done_blocks()):
            box = regions[key]
            source_box = tuple(box[out_axes.index(a)] for a in axes)
            pixels = np.transpose(np.asarray(image[source_box]), order)
            store.save_block(key, lambda: target.__setitem__(box, pixels))  # noqa: B023

    return writer.write(plan, fill, resume=False, overwrite=overwrite)


def _regions(axes: str, shape: tuple[int, ...], block: dict[str, int]) -> dict[str, tuple]:
    """Every block's key and its box: one index of each T and C, tiles of the spatial axes."""
    steps = [block.get(a, 1) for a in axes]
    starts = [range(0, size, step) for size, step in zip(shape, steps, strict=True)]
    regions = {}
    for corner in itertools.product(*starts):
        key = "_".join(f"{a.lower()}{c}" for a, c in zip(axes, corner, strict=True))
        regions[key] = tuple(
            slice(c, min(c + step, size))
            for c, step, size in zip(corner, steps, shape, strict=True)
        )
    return regions
