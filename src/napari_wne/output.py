"""The output: an OME-Zarr 0.5 image written block by block, marked complete only at the end.

Layout: ``<output>/zarr.json`` (the group), ``<output>/0`` (the array, axes in OME order
T, C, Z, Y, X), and ``<output>/.napari-wne/`` (the run's settings and one marker file per
finished block). The group carries its OME ``multiscales`` metadata only once every block
is written, so a crashed or cancelled run never looks like a finished image; `resume`
finishes it from the markers. Markers, not chunk existence, say what is done, because
zarr 3 does not store a chunk equal to the fill value.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OmeZarrOutput"]

OME_ORDER = "TCZYX"
AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


class OmeZarrOutput:
    """Create, fill, mark and finalize one OME-Zarr output image."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.state = self.path / ".napari-wne"

    @staticmethod
    def order(axes: str) -> str:
        """The OME order of `axes`: time, channel, then space."""
        return "".join(a for a in OME_ORDER if a in axes)

    def create(
        self,
        *,
        shape: Sequence[int],
        dtype: np.dtype,
        axes: str,
        chunks: Sequence[int],
        shards: Sequence[int],
        run: dict[str, Any],
        overwrite: bool,
        resume: bool,
        source_path: Path | None,
    ) -> bool:
        """Create the store (or reopen it for `resume`); True when resuming a started run."""
        import zarr

        if source_path is not None and _same_place(source_path, self.path):
            raise ValueError(f"output {self.path} is the input; choose another path")
        if self.path.exists():
            started = self.state.joinpath("run.json")
            if resume and started.is_file():
                previous = json.loads(started.read_text())
                if previous != run:
                    changed = sorted(k for k in run if previous.get(k) != run.get(k))
                    raise ValueError(
                        f"cannot resume {self.path}: it was started with other settings "
                        f"({', '.join(changed)}); rerun with those or with overwrite=True"
                    )
                return True
            if resume and self.is_complete():
                return True
            if not overwrite:
                raise FileExistsError(
                    f"output {self.path} exists; pass overwrite=True (CLI: --overwrite) to "
                    "replace it, or resume=True (--resume) to finish an interrupted run"
                )
            _remove(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        except OSError as err:
            raise PermissionError(f"cannot write the output {self.path}: {err}") from err
        group.attrs["napari_wne"] = {"complete": False}
        group.create_array(
            "0",
            shape=tuple(shape),
            dtype=dtype,
            chunks=tuple(chunks),
            shards=tuple(shards) if tuple(shards) != tuple(chunks) else None,
            dimension_names=[a.lower() for a in axes],
            fill_value=0,
        )
        self.state.mkdir()
        _write_atomic(self.state / "run.json", json.dumps(run, indent=1, sort_keys=True))
        return False

    def array(self, mode: str = "r+") -> Any:
        import zarr

        return zarr.open_array(str(self.path / "0"), mode=mode)

    def done_blocks(self) -> set[str]:
        blocks = self.state / "blocks"
        return {p.stem for p in blocks.glob("*.done")} if blocks.is_dir() else set()

    def mark_done(self, key: str) -> None:
        blocks = self.state / "blocks"
        blocks.mkdir(exist_ok=True)
        _write_atomic(blocks / f"{key}.done", "")

    def is_complete(self) -> bool:
        import zarr

        try:
            group = zarr.open_group(str(self.path), mode="r")
        except Exception:  # not a zarr group at all
            return False
        return bool(dict(group.attrs).get("napari_wne", {}).get("complete"))

    def finalize(
        self, *, axes: str, scale: dict[str, float], units: dict[str, str], name: str, info: dict
    ) -> None:
        """Write the OME metadata that makes the image visible as finished."""
        import zarr

        group = zarr.open_group(str(self.path), mode="r+")
        ome_axes = []
        for a in axes:
            entry = {"name": a.lower(), "type": AXIS_TYPES[a]}
            if a in units:
                entry["unit"] = units[a]
            ome_axes.append(entry)
        group.attrs.update(
            {
                "ome": {
                    "version": "0.5",
                    "multiscales": [
                        {
                            "name": name,
                            "axes": ome_axes,
                            "datasets": [
                                {
                                    "path": "0",
                                    "coordinateTransformations": [
                                        {
                                            "type": "scale",
                                            "scale": [float(scale.get(a, 1.0)) for a in axes],
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                },
                "napari_wne": {"complete": True, **info},
            }
        )
        shutil.rmtree(self.state / "blocks", ignore_errors=True)


def _same_place(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
