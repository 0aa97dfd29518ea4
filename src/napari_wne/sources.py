"""Open an image lazily, whatever it is stored in, with its axes and physical scale.

Every input becomes a `Source`: an array that reads any box into numpy on request (zarr
arrays, TIFF pages through tifffile's zarr view, dask and numpy arrays), plus the axes,
pixel sizes and units the file states. Nothing is read whole.

A file that cannot give back every pixel it promises is refused, never padded: a TIFF
cut short (checked against its page chain, its data offsets and its ImageJ, OME or shaped
metadata when it is opened), a zarr chunk that is missing from its store (unless the
caller accepts missing chunks as the fill value) or a chunk that does not decode. Each
error names the file and the page or chunk.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np

from .axes import KNOWN_AXES
from .modes import MISSING_CHUNKS as MISSING_CHUNKS_MODE
from .modes import MissingChunks
from .ngff import axes_from_dimension_names, read_ngff_image
from .tiff_files import samples_as_planes, tiff_channel_names, tiff_problem, tiff_scale

__all__ = [
    "DEFAULT_MISSING_CHUNKS",
    "MISSING_CHUNKS",
    "MISSING_CHUNKS_HELP",
    "CorruptInputError",
    "MissingChunkError",
    "MissingChunks",
    "Source",
    "open_source",
]

MISSING_CHUNKS: tuple[str, ...] = MISSING_CHUNKS_MODE.values
DEFAULT_MISSING_CHUNKS: MissingChunks = MISSING_CHUNKS_MODE.default  # type: ignore[assignment]
MISSING_CHUNKS_HELP = MISSING_CHUNKS_MODE.help


class CorruptInputError(ValueError):
    """The input cannot give back the pixels it promises: truncated, or a chunk is corrupt."""


class MissingChunkError(CorruptInputError):
    """A zarr chunk is absent from its store (and missing chunks were not accepted)."""


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
    kind: Literal["array", "zarr", "tiff"] = "array"
    """Where the pixels come from, which decides how a failed read is explained."""
    missing_chunks: MissingChunks = DEFAULT_MISSING_CHUNKS
    channel_names: tuple[str, ...] | None = None
    """The file's name for each index of C (OME-Zarr omero labels, OME-TIFF Channel Name),
    for the file's own axes: carried to the result (`channel_names_for`)."""
    _present: set = field(default_factory=set, repr=False)
    """Chunks already found in the store (blocks overlap by their halo: check each once)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(self, index: tuple) -> np.ndarray:
        if self.kind == "zarr" and self.missing_chunks == "error":
            self._check_chunks(index)
        try:
            block = self.array[index]
            if isinstance(block, da.Array):
                block = block.compute(scheduler="synchronous")
            return np.asarray(block)
        except MemoryError:
            raise
        except Exception as err:
            if self.kind == "array":
                raise
            raise self._unreadable(index, err) from err

    def channel_names_for(self, axes: str) -> tuple[str, ...] | None:
        """The channel names, if they still fit when the image is read with `axes` (an
        explicit axes argument may have turned the file's C into another axis)."""
        names = self.channel_names
        if names is None or "C" not in axes or len(names) != self.shape[axes.index("C")]:
            return None
        return names

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else str(self.array.store_path)

    def _check_chunks(self, index: tuple) -> None:
        """Refuse to read a box whose chunks are not all in the store (zarr reads them as
        the fill value without a word)."""
        from zarr.core.sync import sync

        todo = [c for c in _chunks_in(index, self.shape, _stored_chunk_shape(self.array))]
        todo = [c for c in todo if c not in self._present]
        if not todo:
            return
        keys = [_chunk_key(self.array, c) for c in todo]
        store = self.array.store_path.store
        found = sync(_gather(store.exists(k) for k in keys))
        for coords, key, exists in zip(todo, keys, found, strict=True):
            if not exists:
                fill = getattr(self.array.fill_value, "item", lambda: self.array.fill_value)()
                raise MissingChunkError(
                    f"{self._where}: chunk {key} is missing from the store, so its pixels are "
                    f"unknown (an interrupted copy or write leaves chunks out); copy or write "
                    f"the store again. If the writer skips empty chunks (zarr 3 does not store "
                    f"chunks equal to the fill value, {fill!r}), pass missing_chunks='fill' "
                    f"(CLI: --missing-chunks fill) to read them as {fill!r}"
                )
            self._present.add(coords)

    def _unreadable(self, index: tuple, err: Exception) -> CorruptInputError:
        """A clear error for a failed read: find the chunk or page that fails, and name it."""
        reason = f"{type(err).__name__}: {err}"
        if self.kind == "zarr":
            grid = _stored_chunk_shape(self.array)
            for coords in _chunks_in(index, self.shape, grid):
                box = tuple(
                    slice(c * g, min((c + 1) * g, n))
                    for c, g, n in zip(coords, grid, self.shape, strict=True)
                )
                try:
                    self.array[box]
                except Exception as chunk_err:
                    key = _chunk_key(self.array, coords)
                    return CorruptInputError(
                        f"{self._where}: chunk {key} cannot be decoded "
                        f"({type(chunk_err).__name__}: {chunk_err}); it is corrupt or cut "
                        "short: copy or write the store again"
                    )
            return CorruptInputError(f"{self._where}: cannot read box {index} ({reason})")
        planes = self.shape[:-2]
        leading = (*index, *(slice(None),) * len(planes))[: len(planes)]
        ranges = (_indices(s, n) for s, n in zip(leading, planes, strict=True))
        for plane in itertools.product(*ranges):
            try:
                self.array[(*plane, slice(None), slice(None))]
            except Exception as page_err:
                number = int(np.ravel_multi_index(plane, planes)) + 1 if planes else 1
                return CorruptInputError(
                    f"{self._where}: page {number} of {math.prod(planes)} cannot be read "
                    f"({type(page_err).__name__}: {page_err}); the file is truncated or "
                    "corrupt: copy it again from its source"
                )
        return CorruptInputError(f"{self._where}: cannot read box {index} ({reason})")


def open_source(
    image: Any, axes: str | None = None, missing_chunks: MissingChunks = DEFAULT_MISSING_CHUNKS
) -> Source:
    """Wrap an array, or open a path (zarr, OME-Zarr, TIFF/OME-TIFF/ImageJ) lazily.

    An explicit `axes` wins over what the file says (also over tifffile's guess that three
    or four planes are the samples of an RGB(A) image: they are read as planes then).
    `missing_chunks` says what a chunk absent from a zarr store means (`MISSING_CHUNKS_HELP`).
    """
    if missing_chunks not in MISSING_CHUNKS:
        raise ValueError(
            f"missing_chunks must be one of {', '.join(map(repr, MISSING_CHUNKS))}, got "
            f"{missing_chunks!r}"
        )
    axes = None if axes is None else str(axes).upper()
    if isinstance(image, (str, os.PathLike)):
        source = _open_path(Path(image).absolute(), axes)  # the same file from any working dir
    elif _is_zarr_array(image):
        source = Source(image, axes_from_dimension_names(image), kind="zarr")
    elif isinstance(image, (np.ndarray, da.Array)):
        source = Source(image, None)
    elif hasattr(image, "__array__") or isinstance(image, (list, tuple)):
        source = Source(np.asarray(image), None)
    else:
        raise TypeError(
            f"image must be a numpy, dask or zarr array, or a path to a zarr store or TIFF "
            f"file, got {type(image).__name__}"
        )
    source.missing_chunks = missing_chunks
    if axes is not None:
        if axes != source.axes:  # the file's C may now be another axis: its names are not
            source.channel_names = None
        source.axes = axes
    return source


def _is_zarr_array(obj: Any) -> bool:
    return type(obj).__module__.startswith("zarr") and hasattr(obj, "chunks")


def _open_path(path: Path, axes: str | None) -> Source:
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_dir():
        return _open_zarr(path, axes)
    if path.suffix.lower() in {".tif", ".tiff", ".btf", ".tf8"}:
        return _open_tiff(path, axes)
    raise ValueError(
        f"cannot read {path}: give a zarr store (a folder) or a TIFF file (.tif, .tiff)"
    )


# --- zarr and OME-Zarr ----------------------------------------------------------------------


def _open_zarr(path: Path, axes: str | None) -> Source:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a folder that is not a store
        raise ValueError(
            f"{path} is not a readable zarr store ({type(err).__name__}: {err}); check the "
            "path, or that the store is complete"
        ) from err
    if isinstance(node, zarr.Array):
        return Source(node, axes_from_dimension_names(node), name=path.stem, path=path, kind="zarr")
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome"; 0.4 puts it at the top
    if ome.get("multiscales"):
        image = read_ngff_image(path, node, ome, axes)
        return Source(
            image.array,
            image.axes,
            image.scale,
            image.units,
            name=path.stem,
            path=path,
            kind="zarr",
            channel_names=image.channel_names,
        )
    arrays = [a for _, a in node.arrays()]
    if len(arrays) != 1:
        raise ValueError(
            f"{path} is a zarr group with {len(arrays)} arrays and no OME multiscales "
            "metadata; point at one array inside it instead"
        )
    array = arrays[0]
    return Source(array, axes_from_dimension_names(array), name=path.stem, path=path, kind="zarr")


def _stored_chunk_shape(array: Any) -> tuple[int, ...]:
    """The grid of stored objects: the shard shape of a sharded array, else the chunks."""
    grid = getattr(array.metadata, "chunk_grid", None)
    shape = getattr(grid, "chunk_shape", None) or array.chunks
    return tuple(int(c) for c in shape)


def _chunk_key(array: Any, coords: tuple[int, ...]) -> str:
    prefix = array.store_path.path
    key = array.metadata.encode_chunk_key(coords)
    return f"{prefix}/{key}" if prefix else key


async def _gather(awaitables) -> list:
    return list(await asyncio.gather(*awaitables))


def _indices(selection: Any, size: int) -> range:
    """The indices along one axis that an int or a slice selects."""
    if isinstance(selection, (int, np.integer)):
        i = int(selection) % size
        return range(i, i + 1)
    if isinstance(selection, slice):
        return range(*selection.indices(size))
    return range(size)  # anything else: assume it may touch the whole axis


def _chunks_in(index: Any, shape: tuple[int, ...], grid: tuple[int, ...]):
    """Coordinates of every stored chunk that the box `index` touches."""
    index = index if isinstance(index, tuple) else (index,)
    if any(s is Ellipsis for s in index):
        index = ()
    ranges = []
    for axis, (size, chunk) in enumerate(zip(shape, grid, strict=True)):
        selected = _indices(index[axis] if axis < len(index) else slice(None), size)
        if len(selected) == 0:
            return
        low, high = min(selected[0], selected[-1]), max(selected[0], selected[-1])
        ranges.append(range(low // chunk, high // chunk + 1))
    yield from itertools.product(*ranges)


# --- TIFF -----------------------------------------------------------------------------------


def _open_tiff(path: Path, axes: str | None) -> Source:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
    except MemoryError:
        raise
    except Exception as err:  # tifffile fails in many ways on a cut or foreign file
        raise CorruptInputError(
            f"{path} is not a readable TIFF file ({type(err).__name__}: {err or 'no image'}); "
            "if it is a TIFF, it is truncated or corrupt: copy it again from its source"
        ) from err
    problem = tiff_problem(tif, series)
    if problem is not None:
        tif.close()
        raise CorruptInputError(
            f"{path}: {problem}; the file is truncated or corrupt (an interrupted copy or "
            "write?): copy it again from its source"
        )
    array = zarr.open(series.aszarr(), mode="r")
    if isinstance(array, zarr.Group):  # pyramidal TIFF: level 0
        array = array[next(iter(sorted(k for k, _ in array.arrays())))]
    file_axes = series.axes.upper()
    if "S" in file_axes:
        if axes is None:
            tif.close()
            raise ValueError(
                f"{path} is an RGB(A) image (axes {series.axes}); convert it to grey levels, or "
                "pass axes= (CLI --axes) to read its samples as planes (e.g. 'CYX' for "
                "channels, 'ZYX' if tifffile took 3 or 4 planes for colour)"
            )
        array, file_axes = samples_as_planes(array, file_axes)
    if not set(file_axes) <= set(KNOWN_AXES):
        file_axes = None  # e.g. tifffile's "Q" for an unnamed axis: the caller must say
    scale, units = tiff_scale(tif, series)
    names = tiff_channel_names(tif, file_axes, tuple(array.shape))
    return Source(
        array, file_axes, scale, units, name=path.stem, path=path, handle=tif, kind="tiff",
        channel_names=names,
    )  # fmt: skip
