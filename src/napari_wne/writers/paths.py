"""Which output paths we accept, what we name them, and which folders are ours to delete.

Every face (the API, the CLI, the widget) goes through these rules, so there is one answer
to "may napari-wne write or delete here?": an output names its format by its suffix, never
overlaps its input, and an existing folder is replaced only when it holds nothing but the
files of one of our own stores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Literal

from ..modes import OUTPUT_FORMAT, SUFFIXES, OutputFormat
from ._hooks import hook

__all__ = [
    "LEGACY_STATE_DIR",
    "OutputFormat",
    "check_output_path",
    "default_output_name",
    "foreign_entries",
    "is_our_state",
    "output_format",
    "owner",
    "remove_ours",
    "remove_state",
    "remove_zarr_leftovers",
    "same_place",
    "state_dir",
]

LEGACY_STATE_DIR = ".napari-wne"
"""Where napari-wne 0.1 kept a run's bookkeeping: inside the store. Still read, so those
stores are still recognised, resumed and replaced; never created any more."""

_STORE_ENTRIES = {"zarr.json", "0", LEGACY_STATE_DIR}
_STATE_ENTRIES = {"run.json", "input.json", "created", "blocks"}
_ZARR_LEFTOVER = re.compile(r"zarr\.[0-9a-f]{32}\.partial")  # zarr's own atomic-write temp
_ZARR_TEMP = re.compile(r".+\.[0-9a-f]{32}\.partial")  # the same, for any file zarr writes
_PARTIAL = re.compile(r"\..+\.partial")  # our own atomic-write temp (ome_zarr._write_atomic)
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


def state_dir(path: Path) -> Path:
    """Where the run writing the store `path` keeps its bookkeeping.

    A hidden folder beside the store (``.<name>.napari-wne``, like the lock file), so the
    store itself holds nothing but OME-Zarr and napari's readers see a clean image. A store
    written by napari-wne 0.1 keeps its folder inside (`LEGACY_STATE_DIR`): that one is used
    while it exists, so such a store still resumes where it stopped.
    """
    legacy = path / LEGACY_STATE_DIR
    if not path.is_symlink() and legacy.is_dir():
        return legacy
    parent = path.parent.resolve() if path.parent.exists() else path.parent
    return parent / f".{path.name}.napari-wne"


def owner(path: Path) -> Literal["absent", "empty", "ours", "file", "foreign"]:
    """Who a path belongs to, for deciding whether it may be replaced.

    "ours" is a folder holding nothing but what our stores hold (a user's file put inside
    one makes it "foreign", so it is never deleted with it) and that is recognisably ours:
    by its bookkeeping (beside it, or inside it for a 0.1 store) while a run is unfinished
    or being created or removed, or by its own metadata (``napari_wne.complete``) once
    finished. "empty" is an empty folder; "file" a plain file; "foreign" anything else, a
    link included.
    """
    if path.is_symlink():
        return "foreign"
    if not path.exists():
        return "absent"
    if not path.is_dir():
        return "file"
    entries = [entry.name for entry in os.scandir(path)]
    state = state_dir(path)
    if not entries:
        return "ours" if is_our_state(state) else "empty"  # killed right after creating it
    if not all(_is_store_entry(e) for e in entries):
        return "foreign"
    if is_our_state(state) or _says_finished(path):
        return "ours"
    return "foreign"


def is_our_state(state: Path) -> bool:
    """Whether `state` is a bookkeeping folder holding nothing but what our runs put there."""
    if state.is_symlink() or not state.is_dir():
        return False
    return all(e.name in _STATE_ENTRIES or _PARTIAL.fullmatch(e.name) for e in os.scandir(state))


def foreign_entries(path: Path) -> list[str]:
    """The entries of folder `path` that are not part of one of our stores."""
    return sorted(entry.name for entry in os.scandir(path) if not _is_store_entry(entry.name))


def remove_state(state: Path) -> None:
    """Delete a bookkeeping folder, only when it holds nothing but our own files."""
    if not state.exists() and not state.is_symlink():
        return
    if not is_our_state(state):
        raise FileExistsError(
            f"refusing to delete {state}: it holds files napari-wne did not write; move it "
            "away, then run again"
        )
    shutil.rmtree(state)


def remove_ours(path: Path) -> None:
    """Delete one of our stores in an order that a kill at any step leaves safe.

    The bookkeeping folder is made first (a finished store has none), so the remains are
    recognisably ours from then on; the metadata that says "complete" goes next, so a
    half-removed store never looks finished (`resume` then creates it again); the
    bookkeeping goes last, so the remains may still be replaced or resumed later.
    """
    if owner(path) != "ours":
        raise FileExistsError(f"refusing to delete {path}: napari-wne did not write it")
    state = state_dir(path)
    if state.exists() and not is_our_state(state):
        raise FileExistsError(
            f"refusing to delete {path}: {state}, where napari-wne keeps a run's bookkeeping, "
            "holds files napari-wne did not write; move it away, then run again"
        )
    state.mkdir(exist_ok=True)
    (state / "created").unlink(missing_ok=True)
    first = {"zarr.json": 0, "0": 1, LEGACY_STATE_DIR: 3}
    for entry in sorted(os.scandir(path), key=lambda e: first.get(e.name, 2)):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        hook("overwrite.removing")
    path.rmdir()
    if state.parent != path:
        remove_state(state)


def remove_zarr_leftovers(store: Path) -> None:
    """Delete the temporary files zarr's atomic writes leave in `store` when the process
    writing it is killed mid-write (``<name>.<32 hex digits>.partial`` beside the metadata
    or chunk being written).

    Only for a store of ours, before it is marked finished: the resumed run rewrote what
    those writes were for, and a finished store should hold nothing but OME-Zarr. Links are
    not followed.
    """
    for folder, _dirs, files in os.walk(store):
        for name in files:
            if _ZARR_TEMP.fullmatch(name):
                os.unlink(os.path.join(folder, name))


def _is_store_entry(name: str) -> bool:
    """An entry one of our stores may hold: its group metadata, its array, its pyramid
    levels, a 0.1 store's bookkeeping folder, or zarr's own atomic-write leftover."""
    return (
        name in _STORE_ENTRIES
        or bool(_ZARR_LEFTOVER.fullmatch(name))
        or bool(_LEVEL.fullmatch(name))
    )


def _says_finished(path: Path) -> bool:
    """Whether the store's group metadata says napari-wne finished it."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    ours = meta.get("attributes", {}).get("napari_wne") if isinstance(meta, dict) else None
    return isinstance(ours, dict) and ours.get("complete") is True
