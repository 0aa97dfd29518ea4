"""TIFF outputs: OME-TIFF (``.ome.tif``) and ImageJ hyperstacks (``.tif``), streamed.

A TIFF is written front to back, but a run finishes its blocks in any order and may be
stopped and resumed. So the blocks are staged in a resumable OME-Zarr beside the target
(``.<name>.partial.ome.zarr``, see `napari_wne.writers.ome_zarr`), which is then streamed
into the TIFF one plane at a time: memory holds one plane, whatever the image's size. The
TIFF is written under a temporary name and renamed into place, and the staging is removed
last, so a kill at any moment leaves either a resumable staging or the finished TIFF, never
a half-written TIFF that looks complete.

What the files say, for other tools:

- OME-TIFF: axes (DimensionOrder), physical sizes and their units, a time increment,
  channel names, and the provenance as an OME ``MapAnnotation`` (Bio-Formats, Fiji,
  QuPath, OMERO read it);
- ImageJ: the hyperstack's T, Z, C counts, the pixel size (resolution tags and ``unit``),
  the Z spacing and frame interval, and the provenance in ImageJ's ``Info`` property.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..modes import OUTPUT_FORMAT
from .lock import output_lock
from .ome_zarr import DiskFullError, OmeZarrOutput, OmeZarrWriter
from .paths import owner, remove_ours
from .plan import Fill, OutputPlan
from .result import DenoisedImage

__all__ = ["IMAGEJ_DTYPES", "PROVENANCE_NAMESPACE", "TiffWriter", "is_our_ome_tiff", "write_tiff"]

PROVENANCE_NAMESPACE = "napari-wne/provenance"
"""The namespace of the OME MapAnnotation that holds our provenance."""

IMAGEJ_ORDER = "TZCYX"
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
"""What ImageJ's TIFF reader holds (tifffile refuses the others with imagej=True)."""

OME_UNITS = {
    "micrometer": "µm", "micron": "µm", "um": "µm", "µm": "µm", "nanometer": "nm",
    "nm": "nm", "millimeter": "mm", "mm": "mm", "centimeter": "cm", "meter": "m",
    "angstrom": "Å", "second": "s", "s": "s", "millisecond": "ms", "ms": "ms",
    "microsecond": "µs", "minute": "min", "min": "min", "hour": "h", "h": "h",
}  # fmt: skip
"""Our (OME-Zarr, UDUNITS) unit names to the symbols of OME-XML's UnitsLength/UnitsTime."""

IMAGEJ_UNITS = {"µm": "micron", "nm": "nm", "mm": "mm", "cm": "cm", "m": "m", "Å": "A"}


class TiffWriter:
    """Writes a run into an OME-TIFF or an ImageJ TIFF, through a resumable staging."""

    def __init__(self, path: str | os.PathLike, format: str = "ome-tiff") -> None:
        OUTPUT_FORMAT.check(format)
        self.path = Path(path)
        self.format = format
        self.staging = self.path.with_name(f".{self.path.name}.partial.ome.zarr")

    def check(self, plan: OutputPlan) -> None:
        """Refuse, before any block is computed, what this format cannot hold."""
        if self.format == "imagej-tiff" and np.dtype(plan.dtype) not in IMAGEJ_DTYPES:
            raise ValueError(
                f"output {self.path}: an ImageJ TIFF holds uint8, uint16 or float32 pixels, "
                f"not {np.dtype(plan.dtype)}; name the output .ome.tif (an OME-TIFF holds any "
                "type) or .ome.zarr, or pass dtype='float32' (CLI: --dtype float32)"
            )

    def finished(self) -> bool:
        """A TIFF appears only once complete (it is renamed into place)."""
        return self.path.is_file()

    def write(
        self, plan: OutputPlan, fill: Fill, *, resume: bool, overwrite: bool
    ) -> DenoisedImage:
        """Stage the blocks (resumable), stream them into the TIFF, remove the staging.

        With `resume`, a TIFF that is there already is a finished run: it is kept as it is.
        """
        self.check(plan)
        with output_lock(self.path):  # the TIFF and its staging: one run at a time
            found = owner(self.path)
            if found not in ("absent", "file"):
                raise FileExistsError(
                    f"output {self.path} is a folder or a link; a TIFF output must be a file, "
                    "and napari-wne never deletes what it did not write: choose another path"
                )
            if found == "file" and not overwrite:
                if not resume:
                    raise FileExistsError(
                        f"output {self.path} exists; pass overwrite=True (CLI: --overwrite) "
                        "to replace it"
                    )
                if owner(self.staging) == "ours":  # killed between renaming and cleaning up
                    remove_ours(self.staging)
                return self._result(plan)
            staged = owner(self.staging)
            if staged == "ours" and not (resume or overwrite):
                raise FileExistsError(
                    f"output {self.path} has an unfinished run staged in {self.staging}; pass "
                    "resume=True (CLI: --resume) to finish it, or overwrite=True (--overwrite) "
                    "to start it over"
                )
            fresh = not resume or staged in ("absent", "empty")
            try:
                staged_plan = dataclasses.replace(plan, levels=())  # TIFFs are never pyramids
                OmeZarrWriter(self.staging).write(
                    staged_plan, fill, resume=resume, overwrite=not resume
                )
            except (ValueError, TypeError):  # bad input or settings: nothing worth resuming
                if fresh and owner(self.staging) == "ours":
                    remove_ours(self.staging)
                raise
            staging = OmeZarrOutput(self.staging)
            staged = staging.array(mode="r")
            # the provenance as the staging finished it, with its timing (even if an earlier
            # run finished the staging and was stopped before the TIFF was written)
            finished = staging.attributes().get("napari_wne", {}).get("provenance")
            if plan.provenance and finished:
                plan = dataclasses.replace(plan, provenance=finished)
            try:
                write_tiff(self.path, staged, plan, self.format)
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise DiskFullError(
                    err.errno,
                    f"the disk is full writing {self.path} ({err.strerror}); the denoised "
                    f"result is kept in {self.staging}: free some space, then rerun the same "
                    "command with --resume (resume=True)",
                ) from err
            remove_ours(self.staging)
        return self._result(plan)

    def _result(self, plan: OutputPlan) -> DenoisedImage:
        axes = plan.axes
        if self.format == "imagej-tiff":
            axes = "".join(a for a in IMAGEJ_ORDER if a in plan.axes)
        return DenoisedImage(self.path, axes, plan.scale, plan.units, self.format)


def write_tiff(path: Path, source: Any, plan: OutputPlan, format: str) -> None:
    """Stream `source` (laid out as ``plan.axes``) into a TIFF at `path`, plane by plane,
    under a temporary name renamed into place when whole."""
    import tifffile

    if format == "imagej-tiff":
        axes = "".join(a for a in IMAGEJ_ORDER if a in plan.axes)
        options = _imagej_options(plan)
    else:
        axes = plan.axes
        options = {"ome": True, "metadata": _ome_metadata(plan), "bigtiff": plan.nbytes > 2**31}
    order = [plan.axes.index(a) for a in axes]
    shape = tuple(plan.shape[i] for i in order)
    options["metadata"]["axes"] = axes
    planes = _planes(source, order, shape)

    def write(partial: str) -> None:
        tifffile.imwrite(
            partial, planes, shape=shape, dtype=plan.dtype, photometric="minisblack", **options
        )

    atomic_write(path, write)


def _planes(source: Any, order: list[int], shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The planes of `source` in the file's axis order, one read at a time."""
    for index in np.ndindex(*shape[:-2]):
        at: list[Any] = [slice(None)] * len(order)
        for position, axis in enumerate(order[:-2]):
            at[axis] = index[position]
        yield np.ascontiguousarray(source[tuple(at)])


def _ome_metadata(plan: OutputPlan) -> dict[str, Any]:
    meta: dict[str, Any] = {"Name": plan.name, "Creator": _creator(plan)}
    for letter in "ZYX":
        if letter in plan.scale and letter in plan.axes:
            unit = plan.units.get(letter)
            symbol = OME_UNITS.get(unit) if unit else None
            if unit and symbol is None:
                continue  # a size in a unit OME cannot name would be read as µm: leave it out
            meta[f"PhysicalSize{letter}"] = float(plan.scale[letter])
            if symbol:
                meta[f"PhysicalSize{letter}Unit"] = symbol
    if "T" in plan.scale and "T" in plan.axes:
        symbol = OME_UNITS.get(plan.units.get("T", "second"))
        if symbol:
            meta["TimeIncrement"] = float(plan.scale["T"])
            meta["TimeIncrementUnit"] = symbol
    channels = plan.shape[plan.axes.index("C")] if "C" in plan.axes else 1
    names = plan.channel_names or [_channel_name(plan.name, c, channels) for c in range(channels)]
    meta["Channel"] = {"Name": list(names)}
    if plan.provenance:
        meta["Description"] = "denoised by napari-wne; provenance in the MapAnnotation"
        meta["MapAnnotation"] = {
            "Namespace": PROVENANCE_NAMESPACE,
            "Value": {k: _text(v) for k, v in plan.provenance.items()},
        }
    return meta


def _imagej_options(plan: OutputPlan) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    options: dict[str, Any] = {"imagej": True, "metadata": meta}
    length_units = {OME_UNITS.get(plan.units.get(a, "micrometer")) for a in "YX" if a in plan.scale}
    unit = IMAGEJ_UNITS.get(next(iter(length_units))) if len(length_units) == 1 else None
    if unit and "X" in plan.scale and "Y" in plan.scale:
        options["resolution"] = (1 / plan.scale["X"], 1 / plan.scale["Y"])
        meta["unit"] = unit
        if "Z" in plan.scale and "Z" in plan.axes:
            meta["spacing"] = float(plan.scale["Z"])
    if "T" in plan.scale and "T" in plan.axes:
        meta["finterval"] = float(plan.scale["T"])
    if plan.provenance:
        meta["Info"] = "napari-wne provenance\n" + "\n".join(
            f"{k} = {_text(v)}" for k, v in plan.provenance.items()
        )
    return options


def is_our_ome_tiff(path: Path) -> bool:
    """Whether `path` is an OME-TIFF napari-wne wrote (it carries our provenance)."""
    if not path.name.lower().endswith((".ome.tif", ".ome.tiff")) or not path.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:  # reads the first page's tags only
            xml = tif.ome_metadata if tif.is_ome else None
    except Exception:  # not a readable TIFF: leave it to other readers, which will say so
        return False
    return bool(xml) and PROVENANCE_NAMESPACE in xml


def _channel_name(name: str, index: int, count: int) -> str:
    return f"{name} denoised" if count == 1 else f"{name} C{index} denoised"


def _creator(plan: OutputPlan) -> str:
    version = plan.provenance.get("version")
    return f"napari-wne {version}" if version else "napari-wne"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
