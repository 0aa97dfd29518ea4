"""Where a run keeps its bookkeeping: beside the store while unfinished, nowhere once done.

The store itself is a plain OME-Zarr; ``.<name>.napari-wne/`` beside it holds the settings,
input fingerprint and block markers until the run finishes. These tests check that a
finished store is still recognised as ours, that bookkeeping left without its store never
leaks into a new run, that a folder of someone else's at that name is never deleted, and
that stores written by napari-wne 0.1 (bookkeeping inside) still resume and are replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_wne import denoise
from napari_wne.pipeline import Cancelled
from napari_wne.writers import OmeZarrOutput
from napari_wne.writers.paths import LEGACY_STATE_DIR, owner, state_dir

SMALL = {"model": "unet-wne", "device": "cpu", "tile": 64, "halo": 8, "verbose": False}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(4).normal(100, 10, size=(3, 40, 40)).astype(np.float32)


@pytest.fixture(scope="module")
def expected(image) -> np.ndarray:
    return denoise(image, axes="TYX", block=32, **SMALL)


def _run(image, out: Path, **extra):
    return denoise(image, output=out, axes="TYX", block=32, **SMALL, **extra)


def _unfinished(image, out: Path) -> None:
    stop = threading.Event()
    with pytest.raises(Cancelled):
        _run(image, out, cancel=stop, progress=lambda p: stop.set())
    assert not OmeZarrOutput(out).is_complete()


def _pixels(out: Path) -> np.ndarray:
    return zarr.open_array(str(out / "0"), mode="r")[:]


def _as_version_0_1(out: Path) -> None:
    """Move the bookkeeping into the store, where napari-wne 0.1 kept it."""
    os.rename(state_dir(out), out / LEGACY_STATE_DIR)
    (out / LEGACY_STATE_DIR / "created").write_text("")  # 0.1's marker was empty


def test_an_unfinished_run_keeps_its_bookkeeping_beside_the_store(image, expected, tmp_path):
    out = tmp_path / "out.ome.zarr"
    _unfinished(image, out)
    state = state_dir(out)
    assert state == tmp_path / ".out.ome.zarr.napari-wne"
    assert sorted(p.name for p in out.iterdir()) == ["0", "zarr.json"]
    assert {p.name for p in state.iterdir()} == {"run.json", "input.json", "created", "blocks"}
    assert json.loads((state / "created").read_text())["started"]
    assert owner(out) == "ours"
    _run(image, out, resume=True)
    np.testing.assert_array_equal(_pixels(out), expected)
    assert not state.exists() and owner(out) == "ours"  # finished: known by its attributes


def test_a_finished_store_resumes_as_is_and_refuses_other_settings(image, tmp_path):
    out = tmp_path / "out.ome.zarr"
    _run(image, out)
    before = (out / "zarr.json").read_bytes()
    _run(image, out, resume=True)  # nothing to do: kept as it is
    assert (out / "zarr.json").read_bytes() == before and not state_dir(out).exists()
    with pytest.raises(ValueError, match="other settings"):
        _run(image, out, resume=True, norm="global")
    with pytest.raises(ValueError, match="input changed"):
        _run(image + 1, out, resume=True)


def test_bookkeeping_left_without_its_store_never_reaches_a_new_run(image, expected, tmp_path):
    out = tmp_path / "out.ome.zarr"
    _unfinished(image, out)
    marked = sorted(p.name for p in (state_dir(out) / "blocks").iterdir())
    assert marked  # a finished block whose marker would skip it in the new run
    shutil.rmtree(out)  # the user deletes the store, not the hidden folder beside it
    _run(image, out)  # a fresh run: every block computed again
    np.testing.assert_array_equal(_pixels(out), expected)
    assert not state_dir(out).exists()


def test_someone_elses_folder_at_the_bookkeeping_name_is_never_deleted(image, tmp_path):
    out = tmp_path / "out.ome.zarr"
    theirs = state_dir(out)
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"):
        _run(image, out)
    assert (theirs / "notes.txt").read_text() == "mine"
    assert not out.exists()


def test_owner_needs_our_files_and_a_sign_that_they_are_ours(image, tmp_path):
    out = tmp_path / "out.ome.zarr"
    _run(image, out)
    assert owner(out) == "ours"
    (out / "labels").mkdir()  # a user's segmentation added to our finished output
    assert owner(out) == "foreign"
    with pytest.raises(FileExistsError, match=r"did not write \(labels\)"):
        _run(image, out, overwrite=True)
    (out / "labels").rmdir()
    info = json.loads((out / "zarr.json").read_text())
    info["attributes"]["napari_wne"]["complete"] = False  # not finished, and no bookkeeping
    (out / "zarr.json").write_text(json.dumps(info))
    assert owner(out) == "foreign"
    empty = tmp_path / "empty.ome.zarr"
    empty.mkdir()
    assert owner(empty) == "empty"
    state_dir(empty).mkdir()  # a run killed right after creating both folders
    assert owner(empty) == "ours"


def test_a_version_0_1_store_resumes_where_it_stopped(image, expected, tmp_path):
    out = tmp_path / "old.ome.zarr"
    _unfinished(image, out)
    _as_version_0_1(out)
    assert state_dir(out) == out / LEGACY_STATE_DIR and owner(out) == "ours"
    with pytest.raises(FileExistsError, match="resume"):
        _run(image, out)
    done = {p.name for p in (out / LEGACY_STATE_DIR / "blocks").iterdir()}
    _run(image, out, resume=True)
    np.testing.assert_array_equal(_pixels(out), expected)
    assert done and sorted(p.name for p in out.iterdir()) == ["0", "zarr.json"]  # now clean
    assert not (tmp_path / ".old.ome.zarr.napari-wne").exists()  # nothing new beside it
    _run(image, out, resume=True)  # finished: recognised and kept


def test_a_finished_version_0_1_store_is_kept_or_replaced_by_a_clean_one(image, expected, tmp_path):
    out = tmp_path / "old.ome.zarr"
    _run(image, out)
    info = json.loads((out / "zarr.json").read_text())  # as 0.1 finished it: the settings
    ours = info["attributes"]["napari_wne"]  # in its folder inside, no fingerprint outside
    fingerprint = ours.pop("input_fingerprint")
    (out / "zarr.json").write_text(json.dumps(info))
    legacy = out / LEGACY_STATE_DIR
    legacy.mkdir()
    settings = {k: v for k, v in ours.items() if k not in ("complete", "provenance")}
    (legacy / "run.json").write_text(json.dumps({**settings, "norm": "global"}))
    (legacy / "input.json").write_text(json.dumps(fingerprint))
    (legacy / "created").write_text("")
    assert owner(out) == "ours"
    with pytest.raises(ValueError, match=r"other settings \(norm\)"):  # its run.json decides
        _run(image, out, resume=True)
    (legacy / "run.json").write_text(json.dumps(settings))
    before = (out / "zarr.json").read_bytes()
    _run(image, out, resume=True)  # the same run, finished: kept as it is
    assert (out / "zarr.json").read_bytes() == before and (legacy / "run.json").is_file()
    with pytest.raises(FileExistsError, match="overwrite"):
        _run(image, out)
    _run(image, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["0", "zarr.json"]
    assert not state_dir(out).exists()
    np.testing.assert_array_equal(_pixels(out), expected)
