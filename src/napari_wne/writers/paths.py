"""Which output paths we accept, what we name them, and which folders are ours to delete.

Every face (the API, the CLI, the widget) goes through these rules, so there is one answer
to "may napari-wne write or delete here?": an output names its format by its suffix, never
overlaps its input, and an existing folder is replaced only when it holds nothing but the
files of one of our own stores.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Literal

from ..modes import OUTPUT_FORMAT, SUFFIXES, OutputFormat
from ._hooks import hook

__all__ = [
    "STATE_DIR",
    "OutputFormat",
    "check_output_path",
    "default_output_name",
    "foreign_entries",
    "output_format",
    "owner",
    "remove_ours",
    "same_place",
]

STATE_DIR = ".napari-wne"
"""Our bookkeeping folder inside every store we write; it is what marks a store as ours."""

_OUR_ENTRIES = {"zarr.json", "0", STATE_DIR}
_ZARR_LEFTOVER = re.compile(r"zarr\.[0-9a-f]{32}\.partial")  # zarr's own atomic-write temp
_LEVEL = re.compile(r"[1-9][0-9]?")  # a pyramid level's array (`writers.pyramid`)
_COMPOUND = (".ome.zarr", ".ome.tiff", ".ome.tif")


def output_format(path: str | os.PathLike) -> OutputFormat:
    """The format a path's suffix names (`napari_wne.modes.SUFFIXES`); any other suffix is
    refused, never guessed. Compound suffixes (``.ome.tif``) win over their last part."""
    name = Path(path).name.lower()
    for kind in OUTPUT_FORMAT.values:  # OME formats first: ".ome.tif" also ends in ".tif"
        if any(name.endswith(s) and len(name) > len(s) for s in SUFFIXES[kind]):
            return kind  # type: ignore[return-value]
    listed = ", ".join(
        f"{' or '.join(sorted(SUFFIXES[k], key=len))} ({OUTPUT_FORMAT.words[k]})" for k in SUFFIXES
    )
    raise ValueError(
        f"output {path} must end in {listed}: napari-wne writes only to paths that say what "
        "they hold"
    )


def check_output_path(output: str | os.PathLike, *, source: Path | None = None) -> OutputFormat:
    """The output's format, after refusing unknown suffixes and outputs inside the input."""
    kind = output_format(output)
    if source is not None and same_place(source, Path(output)):
        raise ValueError(f"output {output} is the input (or inside it); choose another path")
    return kind


def default_output_name(source: Path, suffix: str = ".ome.zarr") -> str:
    """``<name>_denoised<suffix>``, where name drops only the input's format suffix.

    ``pos.1.tif`` and ``pos.2.tif`` must not both become ``pos_denoised``: only a known
    compound suffix (``.ome.tif``, ``.ome.zarr``) or else the last suffix is removed.
    """
    name = source.name
    lowered = name.lower()
    stem = next(
        (name[: -len(c)] for c in _COMPOUND if lowered.endswith(c) and len(name) > len(c)),
        name[: -len(source.suffix)] if source.suffix else name,
    )
    return f"{stem}_denoised{suffix}"


def same_place(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are the same path, or one lies inside the other."""
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def owner(path: Path) -> Literal["absent", "empty", "ours", "file", "foreign"]:
    """Who a path belongs to, for deciding whether it may be replaced.

    "ours" is a folder holding our bookkeeping folder and nothing but what our stores hold
    (a user's file put inside one makes it "foreign", so it is never deleted with it);
    "empty" is an empty folder; "file" a plain file; "foreign" anything else, a link included.
    """
    if path.is_symlink():
        return "foreign"
    if not path.exists():
        return "absent"
    if not path.is_dir():
        return "file"
    entries = {entry.name for entry in os.scandir(path)}
    if not entries:
        return "empty"
    others = {e for e in entries - _OUR_ENTRIES if not _ours_too(e)}
    if STATE_DIR in entries and not others and path.joinpath(STATE_DIR).is_dir():
        return "ours"
    return "foreign"


def foreign_entries(path: Path) -> list[str]:
    """The entries of folder `path` that are not part of one of our stores."""
    return sorted(
        entry.name
        for entry in os.scandir(path)
        if entry.name not in _OUR_ENTRIES and not _ours_too(entry.name)
    )


def _ours_too(name: str) -> bool:
    """Entries our stores may hold besides the fixed ones: zarr's temporary files, levels."""
    return bool(_ZARR_LEFTOVER.fullmatch(name) or _LEVEL.fullmatch(name))


def remove_ours(path: Path) -> None:
    """Delete one of our stores in an order that a kill at any step leaves safe.

    The metadata that says "complete" goes first, so a half-removed store never looks
    finished (`resume` then creates it again); our bookkeeping folder goes last, so the
    remains are still recognisably ours and may be replaced or resumed later.
    """
    if owner(path) != "ours":
        raise FileExistsError(f"refusing to delete {path}: napari-wne did not write it")
    created = path / STATE_DIR / "created"
    created.unlink(missing_ok=True)
    first = {"zarr.json": 0, "0": 1, STATE_DIR: 3}
    for entry in sorted(os.scandir(path), key=lambda e: first.get(e.name, 2)):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        hook("overwrite.removing")
    path.rmdir()
