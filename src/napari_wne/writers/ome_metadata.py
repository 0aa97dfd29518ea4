"""The OME-Zarr 0.5 ``ome`` attributes of our images, built through yaozarrs' models.

Why a library: the NGFF spec has rules a hand-built dict breaks without a word (exactly one
scale per dataset, one length for axes and scales, axes ordered time, channel, space, units
from the UDUNITS lists, channel colours as hex, display windows with all four bounds).
yaozarrs' pydantic models follow the spec's schemas, so a mistake fails here, while
writing, instead of in a reader later.

The ``omero`` block is written only when the input named its channels (`channel_names`):
it is what carries those names to napari-ome-zarr, QuPath and OMERO. Its display windows
come from a small sample of the result (`channel_windows`), since a viewer takes them as
its contrast limits and the result's range is not known before it is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["AXIS_TYPES", "SAMPLED_CHUNKS", "channel_windows", "ome_attributes"]

AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
SAMPLED_CHUNKS = 16
"""Chunks read per channel to choose its display window: bounded reading, whatever the
image's size, spread from one corner of the image to the other."""

COLOURS = ("FFFFFF",)
MULTI_COLOURS = ("FF00FF", "00FF00", "00FFFF", "FFFF00", "FF0000", "0000FF")
"""Channel colours: grey for one channel, the usual fluorescence set for several."""


def ome_attributes(
    *,
    axes: str,
    units: dict[str, str],
    name: str,
    datasets: Sequence[dict[str, Any]],
    channels: Sequence[str] | None = None,
    windows: Sequence[tuple[float, float, float, float]] | None = None,
) -> dict[str, Any]:
    """The group's ``ome`` attribute, validated by yaozarrs.

    `axes` are letters in OME order; `units` per letter. `datasets` lists each resolution
    level, level 0 first (path and coordinate transformations: `writers.pyramid.ome_datasets`
    is their one home). `channels` and `windows` (start, end, min, max per channel) add the
    ``omero`` block.
    """
    from yaozarrs import v05

    ome_axes = []
    for letter in axes:
        axis: dict[str, Any] = {"name": letter.lower(), "type": AXIS_TYPES[letter]}
        if letter in units:
            axis["unit"] = units[letter]
        ome_axes.append(axis)
    checked = [v05.Dataset.model_validate(level) for level in datasets]
    omero = None
    if channels is not None:
        if windows is None or len(windows) != len(channels):
            raise ValueError("ome_attributes: give one display window per channel name")
        omero = _omero(v05, list(channels), windows)
    image = v05.Image(
        multiscales=[v05.Multiscale(name=name, axes=ome_axes, datasets=checked)], omero=omero
    )
    return image.model_dump(mode="json", exclude_none=True)


def _omero(v05: Any, channels: list[str], windows: Sequence) -> Any:
    palette = COLOURS if len(channels) == 1 else MULTI_COLOURS
    entries = []
    for index, label in enumerate(channels):
        start, end, low, high = windows[index]
        entries.append(
            v05.OmeroChannel(
                label=label,
                color=palette[index % len(palette)],
                active=True,
                window=v05.OmeroWindow(start=start, end=end, min=low, max=high),
            )
        )
    return v05.Omero(channels=entries)


def channel_windows(array: Any, axes: str) -> list[tuple[float, float, float, float]]:
    """A display window per channel (start, end, min, max) from a bounded sample of `array`.

    Start and end are the lowest and highest values found in `SAMPLED_CHUNKS` chunks along
    the image's diagonal; min and max the range the type allows (for floats, the sample's
    range too, since a float's full range is useless as a slider's bounds).
    """
    channels = array.shape[axes.index("C")] if "C" in axes else 1
    dtype = np.dtype(array.dtype)
    windows = []
    for channel in range(channels):
        low, high = math.inf, -math.inf
        for box in _diagonal_chunks(array.shape, array.chunks, axes, channel):
            values = np.asarray(array[box])
            finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        if low > high:  # nothing finite was found
            low, high = 0.0, 1.0
        if high == low:
            high = low + 1.0
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            windows.append((low, high, float(info.min), float(info.max)))
        else:
            windows.append((low, high, low, high))
    return windows


def _diagonal_chunks(
    shape: Sequence[int], chunks: Sequence[int], axes: str, channel: int
) -> list[tuple]:
    """Boxes of up to `SAMPLED_CHUNKS` chunks of one channel, spread along the diagonal."""
    counts = [math.ceil(s / c) for s, c in zip(shape, chunks, strict=True)]
    steps = SAMPLED_CHUNKS - 1
    boxes: dict[tuple, tuple] = {}
    for step in range(SAMPLED_CHUNKS):
        index = tuple(
            channel if a == "C" else round(step * (n - 1) / steps)
            for a, n in zip(axes, counts, strict=True)
        )
        boxes[index] = tuple(
            slice(channel, channel + 1) if a == "C" else slice(i * c, min((i + 1) * c, s))
            for a, i, c, s in zip(axes, index, chunks, shape, strict=True)
        )
    return list(boxes.values())
