"""OME-Zarr output: an OME-Zarr 0.5 image written block by block, complete only at the end.

`OmeZarrWriter` is the writer `napari_wne.writers.writer_for` picks for ``.zarr`` outputs;
`OmeZarrOutput` is the store itself, which the TIFF writers also stage their blocks in and
which cluster workers write into.

Layout: ``<output>/zarr.json`` (the group) and ``<output>/0`` (the array, axes in OME
order T, C, Z, Y, X): a plain OME-Zarr. While a run is unfinished its bookkeeping lives
beside it, in ``.<output name>.napari-wne/`` (`napari_wne.writers.paths.state_dir`: the
settings, the input's fingerprint, a marker that the store was fully created holding the
run's start, one marker per finished block), so napari's readers meet nothing unknown.
The OME metadata (`napari_wne.writers.ome_metadata`) is written only once every block has
its marker on disk, so a crashed or cancelled run never looks like a finished image;
`resume` finishes it from the markers. Markers, not chunk existence, say what is done:
zarr 3 does not store a chunk equal to the fill value.

The bookkeeping is created first and removed last, so a store killed at any moment of its
creation or replacement is still recognised as ours (`resume` recreates it, `overwrite`
may delete it). A finished store's own ``napari_wne`` attributes say it is ours and hold
the settings and input fingerprint a resume compares, so its bookkeeping is removed and
it can be moved alone. Nothing else is ever deleted (see `napari_wne.writers.paths`).
A napari-wne 0.1 store, bookkeeping inside (``<output>/.napari-wne``), still resumes.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._hooks import hook
from .fingerprint import describe_change
from .lock import output_lock
from .ome_metadata import channel_windows, ome_attributes
from .paths import (
    foreign_entries,
    is_our_state,
    owner,
    remove_ours,
    remove_state,
    remove_zarr_leftovers,
    state_dir,
)
from .plan import Fill, OutputPlan, ome_order
from .pyramid import build_pyramid, ome_datasets
from .result import DenoisedImage

__all__ = [
    "DiskFullError",
    "IncompleteOutputError",
    "OmeZarrOutput",
    "OmeZarrWriter",
    "check_not_unfinished",
]

NOT_SETTINGS = ("complete", "input_fingerprint", "provenance")
"""Keys of a finished store's ``napari_wne`` attributes besides the run's settings."""
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _compressors() -> tuple:
    """Blosc LZ4 with byte shuffle, where zarr's default is Zstandard without a shuffle: on
    real denoised W2S and FMD images (float32) it wrote 10 to 20 % faster, read as fast or
    faster, and stored 10 to 12 % less (`benchmarks/bench_codecs.py`, docs/performance.md).
    Blosc is a core zarr v3 codec, read by every zarr v3 reader. Pyramid levels take their
    level 0's compressors."""
    from zarr.codecs import BloscCodec

    return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)


class DiskFullError(OSError):
    """The disk (or quota) filled up while writing the output; the output is resumable."""


class IncompleteOutputError(RuntimeError):
    """Blocks have no marker on disk at the end of a run: the store is not marked complete."""


class OmeZarrOutput:
    """Create, fill, mark and finalize one OME-Zarr output image.

    The caller holds the output's lock (`napari_wne.writers.output_lock`) from `create`
    to `finalize`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def state(self) -> Path:
        """The bookkeeping folder (beside the store; inside a napari-wne 0.1 store)."""
        return state_dir(self.path)

    @staticmethod
    def order(axes: str) -> str:
        """The OME order of `axes`: time, channel, then space."""
        return ome_order(axes)

    def create(
        self,
        *,
        shape: Sequence[int],
        dtype: np.dtype,
        axes: str,
        chunks: Sequence[int],
        shards: Sequence[int],
        run: dict[str, Any],
        fingerprint: dict | None,
        overwrite: bool,
        resume: bool,
    ) -> bool:
        """Create the store (or reopen it for `resume`); True when resuming a started run."""
        if overwrite and resume:
            raise ValueError("pass either resume or overwrite, not both")
        found = owner(self.path)
        if found in ("file", "foreign"):
            raise FileExistsError(self._not_ours(found))
        if found == "ours" and resume and self._created():
            self._check_same_run(run, fingerprint)
            if self.is_complete():
                self._tidy()  # bookkeeping left by a kill inside finalize
            return True
        if found == "ours" and not (resume or overwrite):
            raise FileExistsError(
                f"output {self.path} exists"
                + (
                    " (a finished result); pass overwrite=True (CLI: --overwrite) to replace it"
                    if self.is_complete()
                    else " and holds an unfinished run; pass resume=True (CLI: --resume) to "
                    "finish it, or overwrite=True (--overwrite) to start it over"
                )
            )
        if found == "ours":  # overwrite, or resume of a store whose creation was cut short
            remove_ours(self.path)
        else:  # absent or empty: bookkeeping beside it is stale (its store was deleted)
            self._remove_stale_state()
        self._create(shape, dtype, axes, chunks, shards, run, fingerprint)
        return False

    def _create(self, shape, dtype, axes, chunks, shards, run, fingerprint) -> None:
        import zarr

        state = self.state
        state.mkdir(parents=True)  # first: from here on the folder is recognisably ours
        self.path.mkdir(exist_ok=True)  # absent, or an empty folder
        hook("create.dir")
        _write_atomic(state / "run.json", json.dumps(run, indent=1, sort_keys=True))
        _write_atomic(state / "input.json", json.dumps(fingerprint, indent=1))
        hook("create.state")
        group = zarr.create_group(  # not open_group(mode="w"): that empties the folder
            str(self.path), zarr_format=3, attributes={"napari_wne": {"complete": False}}
        )
        group.create_array(
            "0",
            shape=tuple(shape),
            dtype=dtype,
            chunks=tuple(chunks),
            shards=tuple(shards) if tuple(shards) != tuple(chunks) else None,
            dimension_names=[a.lower() for a in axes],
            compressors=_compressors(),
            fill_value=0,
            # every written chunk is stored, zeros too (see `array`): read back as input, a
            # missing chunk then means "never written", never "all zero"
            config={"write_empty_chunks": True},
        )
        hook("create.array")
        started = json.dumps({"started": _now()})  # the run's first start, for provenance
        _write_atomic(state / "created", started)  # last: no blocks were written before it

    def _created(self) -> bool:
        """Whether the store was fully created (else `resume` creates it again)."""
        if self.is_complete():
            return True
        return (self.state / "created").is_file() and (self.path / "zarr.json").is_file()

    def _remove_stale_state(self) -> None:
        state = self.state
        if state.exists() and not is_our_state(state):
            raise FileExistsError(
                f"cannot write {self.path}: {state} is in the way (napari-wne keeps a run's "
                "bookkeeping there) and holds files napari-wne did not write; move it away "
                "or choose another output path"
            )
        remove_state(state)

    def _tidy(self, *, finalized: bool = False) -> None:
        """Drop the bookkeeping a finished store no longer needs (see the module's doc).

        A 0.1 store finished by 0.1 keeps its folder but the markers: its attributes lack
        the input fingerprint a resume compares. One `finalize` wrote has everything.
        """
        state = self.state
        if state.parent == self.path and not finalized:
            shutil.rmtree(state / "blocks", ignore_errors=True)
        elif is_our_state(state):
            remove_state(state)

    def started(self) -> str | None:
        """When the run writing this store first started (None for a 0.1 store)."""
        try:
            return json.loads((self.state / "created").read_text()).get("started")
        except (OSError, ValueError, AttributeError):
            return None

    def _not_ours(self, found: str) -> str:
        what = "a file" if found == "file" else "a link" if self.path.is_symlink() else None
        if what is None:
            extra = foreign_entries(self.path)
            shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
            what = (
                f"a folder holding files napari-wne did not write ({shown})"
                if self.state.is_dir() or self.is_complete()
                else "a folder napari-wne did not write"
            )
        return (
            f"output {self.path} exists and is {what}; napari-wne only ever replaces or "
            "resumes its own outputs, so it leaves this untouched: choose another output path"
        )

    def _recorded(self) -> tuple[dict[str, Any], dict | None]:
        """The settings and input fingerprint the store was started with: in the bookkeeping
        while unfinished (and in a 0.1 store), in the attributes once finished."""
        recorded = self.state / "run.json"
        if recorded.is_file():
            fingerprint = self.state / "input.json"
            before = json.loads(fingerprint.read_text()) if fingerprint.is_file() else None
            return json.loads(recorded.read_text()), before
        info = self.attributes().get("napari_wne", {})
        settings = {k: v for k, v in info.items() if k not in NOT_SETTINGS}
        return settings, info.get("input_fingerprint")

    def attributes(self) -> dict[str, Any]:
        """The group's attributes ({} when it is not a readable zarr group)."""
        import zarr

        try:
            return dict(zarr.open_group(str(self.path), mode="r").attrs)
        except Exception:  # not a zarr group at all
            return {}

    def _check_same_run(self, run: dict[str, Any], fingerprint: dict | None) -> None:
        previous, before = self._recorded()
        if previous != run:
            changed = sorted(k for k in {**previous, **run} if previous.get(k) != run.get(k))
            raise ValueError(
                f"cannot resume {self.path}: it was started with other settings "
                f"({', '.join(changed)}); rerun with those or with overwrite=True (--overwrite)"
            )
        change = describe_change(before, fingerprint)
        if change:
            raise ValueError(
                f"cannot resume {self.path}: its input changed since the run started "
                f"({change}), so old and new blocks would be mixed; restore the original "
                "input, or start over with overwrite=True (--overwrite)"
            )

    def array(self, mode: str = "r+") -> Any:
        import zarr

        # a runtime setting, not stored: every writer must ask for empty chunks again
        array = zarr.open_array(str(self.path / "0"), mode=mode)
        return array.with_config({"write_empty_chunks": True})

    def done_blocks(self) -> set[str]:
        blocks = self.state / "blocks"
        return {p.stem for p in blocks.glob("*.done")} if blocks.is_dir() else set()

    def mark_done(self, key: str) -> None:
        blocks = self.state / "blocks"
        blocks.mkdir(exist_ok=True)
        _write_atomic(blocks / f"{key}.done", "")

    def save_block(self, key: str, write: Callable[[], None]) -> None:
        """Write one block's pixels with `write`, then its marker."""
        write()
        hook("block.written")
        self.mark_done(key)
        hook("block.marked")

    @contextmanager
    def disk_errors(self) -> Iterator[None]:
        """Turn a full disk or quota into `DiskFullError`, which says how to resume."""
        try:
            yield
        except OSError as err:
            if err.errno not in _FULL or isinstance(err, DiskFullError):
                raise
            done = len(self.done_blocks()) if self.state.is_dir() else 0
            raise DiskFullError(
                err.errno,
                f"the disk is full writing {self.path} ({err.strerror}); {done} finished "
                "block(s) are kept: free some space, then rerun the same command with "
                "--resume (resume=True) to finish it",
            ) from err

    def is_complete(self) -> bool:
        return bool(self.attributes().get("napari_wne", {}).get("complete"))

    def finalize(
        self,
        *,
        blocks: Iterable[str],
        axes: str,
        scale: dict[str, float],
        units: dict[str, str],
        name: str,
        info: dict,
        channel_names: tuple[str, ...] | None = None,
        levels: tuple[tuple[int, ...], ...] = (),
    ) -> None:
        """Write the OME metadata that makes the image visible as finished.

        Only when every block's marker is on disk: what this process believes it wrote
        does not count, in case anything else touched the store. `info` becomes the
        ``napari_wne`` attributes (settings, ``input_fingerprint``, ``provenance``);
        `channel_names` the ``omero`` channel labels.
        """
        import zarr

        missing = sorted(set(blocks) - self.done_blocks())
        if missing:
            raise IncompleteOutputError(
                f"cannot finish {self.path}: {len(missing)} block(s) have no marker on disk "
                f"(e.g. {missing[0]}), so it is not marked complete; rerun with --resume "
                "(resume=True) to compute them"
            )
        hook("finalize.checked")
        remove_zarr_leftovers(self.path)  # a killed run's half-written chunks and metadata
        windows = None
        if channel_names is not None:
            windows = channel_windows(self.array(mode="r"), axes)
        ome = ome_attributes(
            axes=axes, units=units, name=name, channels=channel_names,
            windows=windows, datasets=ome_datasets(axes, scale, levels),
        )  # fmt: skip
        group = zarr.open_group(str(self.path), mode="r+")
        group.attrs.update({"ome": ome, "napari_wne": {"complete": True, **info}})
        hook("finalize.attrs")
        self._tidy(finalized=True)


class OmeZarrWriter:
    """Writes a run into an OME-Zarr image: lock, create or resume, fill, finalize."""

    format = "ome-zarr"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def check(self, plan: OutputPlan) -> None:
        """Nothing to refuse before the run: OME-Zarr holds every dtype and shape we make."""

    def write(
        self, plan: OutputPlan, fill: Fill, *, resume: bool, overwrite: bool
    ) -> DenoisedImage:
        """Hold the lock, create the store (or reopen it for `resume`), let `fill` compute
        the blocks not yet marked done, and finalize it once every block has its marker."""
        store = OmeZarrOutput(self.path)
        record = (
            {**plan.record, "pyramid": [list(f) for f in plan.levels]}
            if plan.levels
            else plan.record
        )
        with store.disk_errors(), output_lock(self.path):
            began, clock = _now(), time.monotonic()
            resumed = store.create(
                shape=plan.shape, dtype=plan.dtype, axes=plan.axes, chunks=plan.chunks,
                shards=plan.shards, run=record, fingerprint=plan.fingerprint,
                overwrite=overwrite, resume=resume,
            )  # fmt: skip
            if not (resumed and store.is_complete()):
                fill(store)
                build_pyramid(store, plan.levels)  # after every level-0 block: resumable
                timing = {
                    "started": store.started() or began,
                    "resumed": began if resumed else None,
                    "finished": _now(),
                    "wall_seconds": round(time.monotonic() - clock, 3),
                }
                provenance = {**plan.provenance, "timing": timing} if plan.provenance else {}
                info = {**record, "input_fingerprint": plan.fingerprint}
                store.finalize(
                    blocks=plan.blocks, axes=plan.axes, scale=plan.scale, units=plan.units,
                    name=plan.name, info={**info, "provenance": provenance},
                    channel_names=plan.channel_names, levels=plan.levels,
                )  # fmt: skip
        return DenoisedImage(self.path, plan.axes, plan.scale, plan.units, "ome-zarr")

    def finished(self) -> bool:
        """Whether a finished result of ours is there already."""
        return OmeZarrOutput(self.path).is_complete()


def check_not_unfinished(path: Path) -> None:
    """Refuse an unfinished output of ours as an input: its missing blocks read as zeros.

    `path` is the store, or its array ``0`` inside it.
    """
    for store in (OmeZarrOutput(path), OmeZarrOutput(path.parent)):
        if owner(store.path) != "ours" or not store.state.is_dir() or store.is_complete():
            continue
        try:
            original = json.loads((store.state / "run.json").read_text()).get("input")
        except (OSError, ValueError):
            original = None
        command = f"napari-wne denoise {original or 'INPUT'} {store.path} --resume"
        raise ValueError(
            f"{path} is an unfinished napari-wne output: the run writing it stopped before "
            "the end, so some of its blocks are still empty. Finish it first "
            f"(`{command}`, or denoise(..., output=..., resume=True) with the same input and "
            "settings), or pass allow_unfinished=True (CLI: --allow-unfinished) to denoise it "
            "as it is"
        )


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
