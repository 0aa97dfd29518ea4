"""TIFF specifics: is the file whole, its colour samples as planes, its pixel sizes and
channel names.

Is it whole? Refuse a TIFF that was cut short before tifffile pads it or drops planes.

tifffile reads what it can: a file cut mid-write loses the pages after the cut (an ImageJ
stack falls back to its first plane, an OME-TIFF to a plain one, since its XML is written
last), or keeps its shape and reads the lost bytes as zeros. Each check below compares
what the file promises with what it holds, and says which page is lost; the caller (see
`napari_wne.sources`) raises the error that names the file.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

__all__ = ["samples_as_planes", "tiff_channel_names", "tiff_problem", "tiff_scale"]

SPACE_UNITS = {"µm": "micrometer", "um": "micrometer", "\\u00B5m": "micrometer", "nm": "nanometer"}


class _Incomplete(Exception):
    """What is missing from the file (internal: turned into the return value)."""


def tiff_problem(tif: Any, series: Any) -> str | None:
    """What is missing from the file for `series` to be whole, or None if nothing is."""
    try:
        _check(tif, series)
    except _Incomplete as problem:
        return str(problem)
    except MemoryError:
        raise
    except Exception as err:  # tifffile raises many types for a directory cut in two
        return f"its page directories cannot be read ({type(err).__name__}: {err})"
    return None


def _check(tif: Any, series: Any) -> None:
    size = tif.filehandle.size
    count = len(tif.pages)  # reads the whole chain of image file directories (IFDs)
    planes = _planes(series, tif)
    _check_metadata(tif, series, planes, count)
    contiguous = series.dataoffset
    if contiguous is not None and contiguous + series.nbytes > size:
        plane_bytes = max(1, series.nbytes // max(planes, 1))
        whole = max(0, (size - contiguous) // plane_bytes)
        _fail(
            f"its {planes} planes need {contiguous + series.nbytes} bytes but it has {size}: "
            f"page {whole + 1} of {planes} is cut short"
        )
    _check_directories(tif, size)
    if contiguous is not None:
        return
    pages = list(series.pages) if series.pages is not None else []
    if len(pages) < planes or any(page is None for page in pages):
        missing = next((i for i, p in enumerate(pages) if p is None), len(pages))
        _fail(f"page {missing + 1} of the {planes} its metadata promises is not in it")
    for number, page in enumerate(pages, 1):
        for offset, length in zip(page.dataoffsets, page.databytecounts, strict=False):
            if length and offset + length > size:
                _fail(
                    f"page {number} of {len(pages)} ends at byte {offset + length} but the "
                    f"file has {size} bytes"
                )


def _fail(what: str) -> None:
    raise _Incomplete(what)


def _planes(series: Any, tif: Any) -> int:
    """How many pages' worth of pixels the series stands for."""
    page_size = math.prod(tif.pages.first.shape) or 1
    return max(1, math.prod(series.shape) // page_size)


TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
TYPE_SIZES.update({16: 8, 17: 8, 18: 8})
"""Bytes per value of each TIFF field type (BigTIFF adds 16 to 18)."""


def _check_directories(tif: Any, size: int) -> None:
    """Walk the chain of directories in the raw bytes: each must lie in the file with every
    tag's value, and the chain must end with a zero offset.

    tifffile stops quietly (logging only) where a cut leaves a directory or a value past
    the end of the file, and an ImageJ stack does not even need the lost directories.
    """
    tiff, handle = tif.tiff, tif.filehandle
    count_format = tiff.byteorder + ("I" if tiff.offsetsize == 4 else "Q")
    value_format = tiff.byteorder + tiff.offsetformat[-1]
    position = handle.tell()
    try:
        handle.seek(4 if tiff.offsetsize == 4 else 8)
        offset = struct.unpack(tiff.offsetformat, handle.read(tiff.offsetsize))[0]
        seen: set[int] = set()
        number = 0
        while offset:
            number += 1
            if offset >= size:
                _fail(f"page {number} would start at byte {offset}, past the end ({size} bytes)")
            if offset in seen:
                _fail(f"page {number} repeats an earlier page's directory (byte {offset})")
            seen.add(offset)
            handle.seek(offset)
            raw = handle.read(tiff.tagnosize)
            tags = struct.unpack(tiff.tagnoformat, raw)[0] if len(raw) == tiff.tagnosize else 0
            entries = handle.read(tags * tiff.tagsize + tiff.offsetsize)
            if len(raw) < tiff.tagnosize or len(entries) < tags * tiff.tagsize + tiff.offsetsize:
                _fail(f"the file ends inside the directory of page {number}")
            for i in range(tags):
                entry = entries[i * tiff.tagsize : (i + 1) * tiff.tagsize]
                code, kind = struct.unpack(tiff.byteorder + "HH", entry[:4])
                count = struct.unpack(count_format, entry[4 : 4 + tiff.offsetsize])[0]
                nbytes = count * TYPE_SIZES.get(kind, 0)
                if nbytes > tiff.offsetsize:
                    start = struct.unpack(value_format, entry[4 + tiff.offsetsize :])[0]
                    if start + nbytes > size:
                        _fail(f"tag {code} of page {number} lies past the end ({size} bytes)")
            offset = struct.unpack(tiff.offsetformat, entries[-tiff.offsetsize :])[0]
    finally:
        handle.seek(position)


def _check_metadata(tif: Any, series: Any, planes: int, count: int) -> None:
    """The plane count the ImageJ, OME or shaped metadata states must be in the series."""
    if tif.is_imagej and tif.imagej_metadata:
        images = int(tif.imagej_metadata.get("images", 1) or 1)
        if series.kind != "imagej" or planes < images:
            _fail(
                f"its ImageJ metadata says images={images} but only {min(planes, count)} "
                f"page(s) can be read",
            )
    if tif.is_ome and series.kind == "ome":
        stated = _ome_planes(tif.ome_metadata)
        if stated is not None and planes < stated:
            _fail(f"its OME metadata states {stated} planes but it holds {planes}")
    if tif.is_shaped and tif.shaped_metadata and series.kind == "shaped":
        shape = tuple(tif.shaped_metadata[0].get("shape", ()))
        if shape and math.prod(shape) != math.prod(series.shape):
            _fail(f"its metadata states shape {shape} but it holds {series.shape}")


def _ome_planes(xml: str | None) -> int | None:
    """Planes of the first OME image: SizeZ x SizeC x SizeT over samples per pixel."""
    if not xml:
        return None
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    sizes = [int(pixels.get(f"Size{a}", 1)) for a in "ZCT"]
    channel = next((e for e in pixels if e.tag.endswith("Channel")), None)
    samples = int(channel.get("SamplesPerPixel", 1)) if channel is not None else 1
    return max(1, math.prod(sizes) // max(samples, 1))


def samples_as_planes(array: Any, axes: str) -> tuple[Any, str]:
    """Move the sample axis S just before Y and X, so its values read as raw planes."""
    order = [i for i, a in enumerate(axes) if a not in "SYX"]
    order += [axes.index("S"), axes.index("Y"), axes.index("X")]
    if order == list(range(len(axes))):
        return array, axes
    return _Transposed(array, tuple(order)), "".join(axes[i] for i in order)


class _Transposed:
    """A lazy transposed view of an array that only supports basic indexing (a zarr array)."""

    def __init__(self, array: Any, order: tuple[int, ...]) -> None:
        self.array, self.order = array, order
        self.shape = tuple(array.shape[i] for i in order)
        self.dtype = array.dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (len(self.order) - len(index))
        original: list[Any] = [None] * len(self.order)
        for position, axis in enumerate(self.order):
            original[axis] = index[position]
        block = np.asarray(self.array[tuple(original)])
        kept = [a for a in range(len(self.order)) if not isinstance(original[a], (int, np.integer))]
        return block.transpose([kept.index(a) for a in self.order if a in kept])


def tiff_scale(tif: Any, series: Any) -> tuple[dict, dict]:
    """Pixel sizes from OME-XML or ImageJ metadata (µm when the file says nothing)."""
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if tif.is_ome and tif.ome_metadata:
        from xml.etree import ElementTree

        root = ElementTree.fromstring(tif.ome_metadata)
        pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
        if pixels is not None:
            for letter in "ZYX":
                size = pixels.get(f"PhysicalSize{letter}")
                if size:
                    scale[letter] = float(size)
                    unit = pixels.get(f"PhysicalSize{letter}Unit", "µm")
                    units[letter] = SPACE_UNITS.get(unit, unit)
            if pixels.get("TimeIncrement"):
                scale["T"] = float(pixels.get("TimeIncrement"))
                units["T"] = {"s": "second", "ms": "millisecond"}.get(
                    pixels.get("TimeIncrementUnit", "s"), "second"
                )
        return scale, units
    if tif.is_imagej and tif.imagej_metadata is not None:
        meta = tif.imagej_metadata
        page = tif.pages.first
        unit = SPACE_UNITS.get(meta.get("unit", "micron"), "micrometer")
        if meta.get("unit") in (None, "micron", "microns"):
            unit = "micrometer"
        for letter, tag in (("X", "XResolution"), ("Y", "YResolution")):
            resolution = page.tags.get(tag)
            if resolution is not None:
                num, den = resolution.value
                if num:
                    scale[letter] = den / num
                    units[letter] = unit
        if meta.get("spacing"):
            scale["Z"] = float(meta["spacing"])
            units["Z"] = unit
        if meta.get("finterval"):
            scale["T"] = float(meta["finterval"])
            units["T"] = "second"
    return scale, units


def tiff_channel_names(
    tif: Any, axes: str | None, shape: tuple[int, ...]
) -> tuple[str, ...] | None:
    """The OME-XML ``Channel Name`` of each index of C (the first image's), or None unless
    every channel of the series is named."""
    if not axes or "C" not in axes or not (tif.is_ome and tif.ome_metadata):
        return None
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(tif.ome_metadata)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    names = [e.get("Name") for e in pixels if e.tag.endswith("}Channel") or e.tag == "Channel"]
    if len(names) != shape[axes.index("C")] or not all(names):
        return None
    return tuple(str(n) for n in names)
