"""What napari-wne may write, replace and resume: never what it did not write.

Real folders, real stores, the real CLI; the kills and two-writer cases that need other
processes are in test_kill_resume.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from cli_forkserver import ForkServer
from napari_wne import denoise
from napari_wne.cli import main
from napari_wne.pipeline import Cancelled
from napari_wne.writers import OmeZarrOutput, StaleLockWarning, default_output_name
from napari_wne.writers.lock import lock_path
from napari_wne.writers.paths import state_dir

SMALL = {"model": "unet-wne", "device": "cpu", "tile": 64, "halo": 8, "verbose": False}
CLI = ["--model", "unet-wne", "--device", "cpu", "--tile", "64", "--overlap", "8"]


def _tiff(path: Path, seed: int = 0, shape=(3, 32, 32)) -> Path:
    data = np.random.default_rng(seed).normal(100, 10, size=shape).astype(np.float32)
    axes = "TYX"[-len(shape) :]
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": axes})
    return path


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` with its bytes (None for folders)."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def _users_folder(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("my thesis data")
    (path / "sub" / "cells.npy").write_bytes(b"\x93NUMPY precious")
    return path


def _unfinished(source, out: Path, **kwargs) -> None:
    """An interrupted run into `out` (3 blocks or more): stopped after its first block."""
    stop = threading.Event()
    with pytest.raises(Cancelled):
        denoise(source, output=out, block=32, cancel=stop, progress=lambda p: stop.set(),
                **SMALL, **kwargs)  # fmt: skip
    assert not OmeZarrOutput(out).is_complete()


@pytest.mark.parametrize("name", ["mine.zarr", "mine.ome.zarr"])
def test_overwrite_refuses_a_users_folder_and_leaves_every_file(tmp_path, name, capsys):
    folder = _users_folder(tmp_path / name)
    before = _snapshot(folder)
    image = np.ones((16, 16), np.float32)
    for flag in ("overwrite", "resume"):
        with pytest.raises(FileExistsError, match="a folder napari-wne did not write"):
            denoise(image, output=folder, **{flag: True}, **SMALL)
    source = _tiff(tmp_path / "in.tif")
    for flags in ([], ["--overwrite"], ["--resume"]):
        assert main(["denoise", str(source), str(folder), *CLI, *flags]) == 2
        assert "leaves this untouched" in capsys.readouterr().err
    assert _snapshot(folder) == before
    assert not lock_path(folder).exists()


def test_a_store_of_ours_holding_a_users_file_is_not_deleted(tmp_path):
    out = tmp_path / "out.ome.zarr"
    image = np.random.default_rng(1).normal(100, 10, (32, 32)).astype(np.float32)
    denoise(image, output=out, **SMALL)
    (out / "my_notes.txt").write_text("written by hand into the result folder")
    before = _snapshot(out)
    with pytest.raises(FileExistsError, match=r"did not write \(my_notes.txt\)"):
        denoise(image, output=out, overwrite=True, **SMALL)
    assert _snapshot(out) == before


def test_a_link_is_never_followed_into_what_it_points_at(tmp_path):
    target = tmp_path / "elsewhere.ome.zarr"
    image = np.ones((16, 16), np.float32)
    denoise(image, output=target, **SMALL)  # even one of ours, reached through a link
    before = _snapshot(target)
    link = tmp_path / "link.ome.zarr"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(FileExistsError, match="is a link"):
        denoise(image, output=link, overwrite=True, **SMALL)
    assert _snapshot(target) == before and link.is_symlink()


def test_an_output_without_a_known_suffix_is_refused(tmp_path, capsys):
    folder = _users_folder(tmp_path / "results")
    before = _snapshot(folder)
    image = np.ones((16, 16), np.float32)
    with pytest.raises(ValueError, match=r"must end in \.zarr or \.ome\.zarr"):
        denoise(image, output=folder, overwrite=True, **SMALL)
    source = _tiff(tmp_path / "in.tif")
    for target in (folder, tmp_path / "out.png", tmp_path / "out"):
        assert main(["denoise", str(source), str(target), *CLI, "--overwrite"]) == 2
        assert "must end in .zarr or .ome.zarr" in capsys.readouterr().err
    assert _snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "results"]


def test_overwrite_replaces_our_own_store(tmp_path):
    out = tmp_path / "out.ome.zarr"
    image = np.random.default_rng(2).normal(100, 10, (32, 40)).astype(np.float32)
    denoise(image, output=out, norm="global", **SMALL)
    _unfinished(np.stack([image] * 3), out.with_name("b.ome.zarr"), axes="TYX")
    for store in (out, out.with_name("b.ome.zarr")):  # a finished and an unfinished one
        with pytest.raises(FileExistsError, match="overwrite"):
            denoise(image, output=store, **SMALL)
        result = denoise(image, output=store, overwrite=True, **SMALL)
        np.testing.assert_array_equal(result.to_dask().compute(), denoise(image, **SMALL))
        assert zarr.open_group(str(store), mode="r").attrs["napari_wne"]["norm"] == "tile"
        assert sorted(p.name for p in store.iterdir()) == ["0", "zarr.json"]
        assert not state_dir(store).exists()  # a finished run keeps no bookkeeping


def test_a_tiff_output_never_replaces_a_folder(tmp_path, capsys):
    folder = _users_folder(tmp_path / "out.tif")
    before = _snapshot(folder)
    source = _tiff(tmp_path / "in.tif")
    assert main(["denoise", str(source), str(folder), *CLI, "--overwrite"]) == 2
    assert "a TIFF output must be a file" in capsys.readouterr().err
    assert _snapshot(folder) == before


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="either resume or overwrite"):
        denoise(np.ones((8, 8), np.float32), output=tmp_path / "o.ome.zarr", resume=True,
                overwrite=True, **SMALL)  # fmt: skip


def test_an_unfinished_output_as_input_is_refused_unless_allowed(tmp_path, capsys):
    source = _tiff(tmp_path / "in.tif")
    store = tmp_path / "in_denoised.ome.zarr"
    _unfinished(source, store)
    for given in (store, store / "0"):
        with pytest.raises(ValueError, match="unfinished napari-wne output") as caught:
            denoise(given, output=tmp_path / "again.ome.zarr", **SMALL)
        assert f"napari-wne denoise {source} {store} --resume" in str(caught.value)
    assert main(["denoise", str(store), str(tmp_path / "again.ome.zarr"), *CLI]) == 2
    assert "--allow-unfinished" in capsys.readouterr().err
    assert not (tmp_path / "again.ome.zarr").exists()
    # as asked, with its never-written plane read as the fill value
    forced = denoise(store, allow_unfinished=True, missing_chunks="fill", **SMALL)
    assert forced.to_dask().shape == (3, 32, 32)
    denoise(source, output=store, resume=True, block=32, **SMALL)  # finished: accepted
    assert denoise(store, overwrite=True, **SMALL).to_dask().shape == (3, 32, 32)


def test_an_input_changed_between_a_kill_and_resume_is_refused(tmp_path):
    source = _tiff(tmp_path / "in.tif", shape=(4, 32, 32))
    out = tmp_path / "out.ome.zarr"
    argv = ["denoise", str(source), str(out), *CLI, "--block", "32"]
    server = ForkServer(threads=torch.get_num_threads())
    try:
        child = server.start(argv, tmp_path / "child.log", hook="kill:block.written:2")
        assert child.wait() == -signal.SIGKILL, child.stderr()
    finally:
        server.close()
    stat = source.stat()
    _tiff(source, seed=99, shape=(4, 32, 32))  # same size; mtime restored: a sneaky change
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.stat().st_size == stat.st_size
    with (
        pytest.warns(StaleLockWarning, match=f"pid {child.pid} on host"),
        pytest.raises(ValueError, match=r"input changed since the run started \(sampled"),
    ):
        denoise(source, output=out, resume=True, block=32, **SMALL)
    _tiff(source, seed=99, shape=(4, 32, 40))
    with pytest.raises(ValueError, match="other settings"):  # another shape: settings differ
        denoise(source, output=out, resume=True, block=32, **SMALL)
    assert not OmeZarrOutput(out).is_complete()


def test_a_changed_zarr_folder_or_array_is_refused_on_resume(tmp_path):
    stack = np.random.default_rng(3).normal(100, 10, (3, 32, 32)).astype(np.float32)
    source = tmp_path / "in.zarr"
    zarr.create_array(str(source), data=stack, chunks=(1, 32, 32), dimension_names="tyx")
    _unfinished(source, tmp_path / "a.ome.zarr")
    zarr.open_array(str(source), mode="r+")[1, 0, 0] = 5.0  # one chunk rewritten
    with pytest.raises(ValueError, match="input changed"):
        denoise(source, output=tmp_path / "a.ome.zarr", resume=True, block=32, **SMALL)
    _unfinished(stack, tmp_path / "b.ome.zarr", axes="TYX")
    changed = stack.copy()
    changed[1, 3, 3] += 1
    with pytest.raises(ValueError, match=r"input changed since the run started \(content"):
        denoise(changed, output=tmp_path / "b.ome.zarr", axes="TYX", resume=True, block=32,
                **SMALL)  # fmt: skip
    result = denoise(stack, output=tmp_path / "b.ome.zarr", axes="TYX", resume=True,
                     block=32, **SMALL)  # fmt: skip
    np.testing.assert_array_equal(
        result.to_dask().compute(), denoise(stack, axes="TYX", block=32, **SMALL)
    )


def test_batch_names_stay_unique_and_a_rerun_skips_finished_outputs(tmp_path, capsys):
    folder = tmp_path / "lab"
    folder.mkdir()
    for seed, name in enumerate(["pos.1.tif", "pos.2.tif", "cells.ome.tif"]):
        _tiff(folder / name, seed=seed, shape=(32, 32))
    out = tmp_path / "out"
    assert main(["batch", str(folder), str(out), *CLI]) == 0
    names = ["cells_denoised.ome.zarr", "pos.1_denoised.ome.zarr", "pos.2_denoised.ome.zarr"]
    assert sorted(p.name for p in out.iterdir()) == names
    for name in ("pos.1", "pos.2"):
        written = zarr.open_array(str(out / f"{name}_denoised.ome.zarr" / "0"), mode="r")[:]
        own = denoise(tifffile.imread(folder / f"{name}.tif"), **SMALL)
        np.testing.assert_array_equal(written, own)  # each from its own input
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["batch", str(folder), str(out), *CLI]) == 0  # a rerun: nothing to redo
    captured = capsys.readouterr()
    assert captured.err.count("finished earlier: checked and kept") == 3
    assert "denoised 3 of 3 files" in captured.out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    tif_out = tmp_path / "tif"
    for _ in range(2):  # TIFFs: finished ones are kept on a rerun too
        assert main(["batch", str(folder), str(tif_out), "--format", "tif", *CLI]) == 0
    assert sorted(p.name for p in tif_out.iterdir()) == [n.replace(".ome.zarr", ".tif")
                                                         for n in names]  # fmt: skip


def test_batch_refuses_colliding_output_names_before_writing_anything(tmp_path, capsys):
    folder = tmp_path / "lab"
    folder.mkdir()
    for name in ("a.tif", "a.tiff", "b.ome.tif", "b.tif"):
        _tiff(folder / name, shape=(16, 16))
    assert main(["batch", str(folder), str(tmp_path / "out"), *CLI]) == 2
    err = capsys.readouterr().err
    assert "a.tif and a.tiff" in err and "b.ome.tif and b.tif" in err
    assert not (tmp_path / "out").exists()


def test_default_output_names_drop_only_the_format_suffix():
    assert default_output_name(Path("pos.1.tif")) == "pos.1_denoised.ome.zarr"
    assert default_output_name(Path("x.ome.tiff"), ".tif") == "x_denoised.tif"
    assert default_output_name(Path("/d/embryo.ome.zarr")) == "embryo_denoised.ome.zarr"
    assert default_output_name(Path("noext")) == "noext_denoised.ome.zarr"


def test_a_stale_lock_is_taken_over_and_said_so(tmp_path):
    out = tmp_path / "out.ome.zarr"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock_path(out).write_text(
        f'{{"host": "{os.uname().nodename}", "pid": {int(gone.stdout)}, "started": "then"}}'
    )
    with pytest.warns(StaleLockWarning, match=f"pid {int(gone.stdout)} on host"):
        denoise(np.ones((16, 16), np.float32), output=out, **SMALL)
    assert OmeZarrOutput(out).is_complete() and not lock_path(out).exists()


def test_a_lock_whose_holder_lives_is_respected_without_flock(tmp_path):
    """The lock file alone, as where flock is unavailable: a live holder on this host wins."""
    out = tmp_path / "out.ome.zarr"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock_path(out).write_text(
            f'{{"host": "{os.uname().nodename}", "pid": {holder.pid}, "started": "now"}}'
        )
        with pytest.raises(FileExistsError, match=f"another run \\(pid {holder.pid}"):
            denoise(np.ones((16, 16), np.float32), output=out, **SMALL)
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists() and lock_path(out).exists()  # not ours to remove


def test_a_full_disk_names_the_output_and_how_to_resume(tmp_path):
    """A real full disk: a 48 KiB tmpfs mounted in a private mount namespace (root only)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to mount a small tmpfs")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a mount namespace here")
    source = _tiff(tmp_path / "in.tif", shape=(4, 64, 64))
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        'mount -t tmpfs -o size=48k tmpfs "$1" && exec "$2" -m napari_wne.cli denoise "$3" '
        '"$1/out.ome.zarr" --block 64 ' + " ".join(CLI)
    )
    argv = ["unshare", "-m", "sh", "-c", script, "sh", str(disk), sys.executable, str(source)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if "mount:" in run.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    assert run.returncode == 2, run.stderr
    assert f"the disk is full writing {disk}/out.ome.zarr" in run.stderr
    assert "then rerun the same command with --resume" in run.stderr
    assert "Traceback" not in run.stderr


def test_our_output_reads_back_as_input_even_where_a_block_is_all_zero(tmp_path):
    image = np.zeros((3, 32, 32), np.float32)
    image[1] = np.random.default_rng(0).normal(size=(32, 32))
    first = denoise(image, axes="TYX", output=tmp_path / "a.ome.zarr", **SMALL)
    # zarr 3 skips chunks equal to the fill value unless told not to; ours are all stored,
    # so reading the result back needs no missing_chunks="fill"
    again = denoise(first, output=tmp_path / "b.ome.zarr", **SMALL)
    assert again.to_dask().shape == (3, 32, 32)


def test_a_resumed_store_keeps_none_of_the_temporary_files_a_killed_zarr_write_leaves(tmp_path):
    source = _tiff(tmp_path / "in.tif")
    out = tmp_path / "out.ome.zarr"
    _unfinished(source, out)
    # what zarr's atomic write leaves when the process dies in it: `<name>.<uuid hex>.partial`
    chunk = next(p for p in (out / "0").rglob("*") if p.is_file() and p.name != "zarr.json")
    leftovers = [
        out / "zarr.0123456789abcdef0123456789abcdef.partial",
        chunk.with_name(f"{chunk.name}.fedcba9876543210fedcba9876543210.partial"),
    ]
    for path in leftovers:
        path.write_bytes(b"half a write")
    denoise(source, output=out, resume=True, block=32, **SMALL)
    assert OmeZarrOutput(out).is_complete()
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    assert sorted(p.name for p in out.iterdir()) == ["0", "zarr.json"]
    np.testing.assert_array_equal(
        zarr.open_array(str(out / "0"), mode="r")[:],
        denoise(tifffile.imread(source), axes="TYX", block=32, **SMALL),
    )
