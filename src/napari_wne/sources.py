"""Open an image lazily, whatever it is stored in, with its axes and physical scale.

Every input becomes a `Source`: an array that reads any box into numpy on request (zarr
arrays, TIFF pages through tifffile's zarr view, dask and numpy arrays), plus the axes,
pixel sizes and units the file states. Nothing is read whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

__all__ = ["Source", "open_source"]

SPACE_UNITS = {"µm": "micrometer", "um": "micrometer", "\\u00B5m": "micrometer", "nm": "nanometer"}


@dataclass
class Source:
    """A lazily readable image: ``source.read(index)`` returns numpy for one box."""

    array: Any
    axes: str | None
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    name: str = "image"
    path: Path | None = None
    handle: Any = None
    """Keeps a file handle (e.g. an open TIFF) alive as long as the source."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(self, index: tuple) -> np.ndarray:
        block = self.array[index]
        if isinstance(block, da.Array):
            block = block.compute(scheduler="synchronous")
        return np.asarray(block)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def open_source(image: Any, axes: str | None = None) -> Source:
    """Wrap an array, or open a path (zarr, OME-Zarr, TIFF/OME-TIFF/ImageJ) lazily.

    An explicit `axes` wins over what the file says.
    """
    if isinstance(image, (str, os.PathLike)):
        source = _open_path(Path(image).absolute())  # the same file from any working dir
    elif isinstance(image, (np.ndarray, da.Array)) or _is_zarr_array(image):
        source = Source(image, None)
    elif hasattr(image, "__array__") or isinstance(image, (list, tuple)):
        source = Source(np.asarray(image), None)
    else:
        raise TypeError(
            f"image must be a numpy, dask or zarr array, or a path to a zarr store or TIFF "
            f"file, got {type(image).__name__}"
        )
    if axes is not None:
        source.axes = str(axes).upper()
    return source


def _is_zarr_array(obj: Any) -> bool:
    return type(obj).__module__.startswith("zarr") and hasattr(obj, "chunks")


def _open_path(path: Path) -> Source:
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_dir():
        return _open_zarr(path)
    if path.suffix.lower() in {".tif", ".tiff", ".btf", ".tf8"}:
        return _open_tiff(path)
    raise ValueError(
        f"cannot read {path}: give a zarr store (a folder) or a TIFF file (.tif, .tiff)"
    )


def _open_zarr(path: Path) -> Source:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a folder that is not a store
        raise ValueError(
            f"{path} is not a readable zarr store ({type(err).__name__}: {err}); check the "
            "path, or that the store is complete"
        ) from err
    if isinstance(node, zarr.Array):
        axes = _axes_from_dimension_names(node)
        return Source(node, axes, name=path.stem, path=path)
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome"; 0.4 puts it at the top
    multiscales = ome.get("multiscales")
    if multiscales:
        image = multiscales[0]
        level0 = image["datasets"][0]
        array = node[level0["path"]]
        names = [axis["name"] if isinstance(axis, dict) else axis for axis in image["axes"]]
        axes = "".join(n.upper() for n in names)
        scale, units = _ome_scale(image, level0, names)
        return Source(array, axes, scale, units, name=path.stem, path=path)
    arrays = [a for _, a in node.arrays()]
    if len(arrays) != 1:
        raise ValueError(
            f"{path} is a zarr group with {len(arrays)} arrays and no OME multiscales "
            "metadata; point at one array inside it instead"
        )
    return Source(arrays[0], _axes_from_dimension_names(arrays[0]), name=path.stem, path=path)


def _axes_from_dimension_names(array: Any) -> str | None:
    names = getattr(array.metadata, "dimension_names", None)
    if names and all(isinstance(n, str) and len(n) == 1 for n in names):
        return "".join(names).upper()
    return None


def _ome_scale(image: dict, level0: dict, names: list[str]) -> tuple[dict, dict]:
    scale: dict[str, float] = {}
    for transform in level0.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = {n.upper(): float(s) for n, s in zip(names, transform["scale"], strict=True)}
    units = {
        axis["name"].upper(): axis["unit"]
        for axis in image["axes"]
        if isinstance(axis, dict) and axis.get("unit")
    }
    return scale, units


def _open_tiff(path: Path) -> Source:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
    except (tifffile.TiffFileError, ValueError, IndexError) as err:
        raise ValueError(f"{path} is not a readable TIFF file ({err or 'no image'})") from err
    store = series.aszarr()
    array = zarr.open(store, mode="r")
    if isinstance(array, zarr.Group):  # pyramidal TIFF: level 0
        array = array[next(iter(sorted(k for k, _ in array.arrays())))]
    axes = series.axes.upper()
    if "S" in axes:
        tif.close()
        raise ValueError(
            f"{path} is an RGB(A) image (axes {series.axes}); convert it to grey levels or "
            "split the colour samples into channels first"
        )
    if not set(axes) <= set("TCZYX"):
        axes = None  # e.g. tifffile's "Q" for an unnamed axis: the caller must say
    scale, units = _tiff_scale(tif, series)
    return Source(array, axes, scale, units, name=path.stem, path=path, handle=tif)


def _tiff_scale(tif: Any, series: Any) -> tuple[dict, dict]:
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
