"""Real processes killed anywhere, and two real processes on one output.

Each child is a CLI run, ``main(["denoise", ...])`` in a process of its own (forked from
`cli_forkserver`, which has imported torch once for all of them). The named points of
`napari_wne.writers._hooks` let a child SIGKILL itself inside output creation, between a
block's pixels and its marker, or inside finalize, windows too short to hit from outside;
two more children are killed from outside at random times. After each kill, ``--resume``
must give exactly the bytes of an uninterrupted run. Every pixel compared is computed in
a child of the same server, so all of them share one thread setup (float sums depend on
it); this process only starts, kills, inspects, and plays the refused second writer.
"""

from __future__ import annotations

import itertools
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from cli_forkserver import CliRun, ForkServer
from napari_wne.cli import main
from napari_wne.writers import OmeZarrOutput
from napari_wne.writers.lock import lock_path
from napari_wne.writers.paths import state_dir

OPTIONS = ["--model", "unet-wne", "--device", "cpu", "--tile", "64", "--overlap", "8"]
OPTIONS += ["--block", "64"]  # 4 blocks, one per plane: small and quick


@pytest.fixture(scope="module")
def server():
    forks = ForkServer(threads=torch.get_num_threads())
    yield forks
    forks.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kill")
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:64, 0:64]
    clean = 100 + 40 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    data = np.stack([clean * (1 + t / 4) + rng.normal(0, 8, clean.shape) for t in range(4)])
    path = folder / "stack.tif"
    tifffile.imwrite(
        path, data.astype(np.float32), photometric="minisblack", metadata={"axes": "TYX"}
    )
    return path


@pytest.fixture(scope="module")
def reference(server, stack) -> np.ndarray:
    """An uninterrupted run."""
    out = stack.with_name("reference.ome.zarr")
    run = _child(server, stack, out)
    assert run.wait() == 0, run.stderr()
    return zarr.open_array(str(out / "0"), mode="r")[:]


_logs = itertools.count()


def _child(server, stack: Path, out: Path, *flags: str, hook: str | None = None) -> CliRun:
    argv = ["denoise", str(stack), str(out), *OPTIONS, *flags]
    return server.start(argv, out.with_name(f"{out.name}.{next(_logs)}.log"), hook=hook)


def _resume_and_compare(server, stack: Path, out: Path, reference: np.ndarray) -> None:
    stale = lock_path(out).exists()  # left by the killed child: taken over, and said so
    resumed = _child(server, stack, out, "--resume")
    assert resumed.wait() == 0, resumed.stderr()
    assert ("warning: taking over the lock" in resumed.stderr()) == stale
    assert OmeZarrOutput(out).is_complete()
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[:], reference)
    assert not lock_path(out).exists()
    assert sorted(p.name for p in out.iterdir()) == ["0", "zarr.json"]  # a clean OME-Zarr
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")) == []


@pytest.mark.parametrize(
    "hook",
    [
        "kill:create.dir",  # the folder and our bookkeeping folder, nothing else
        "kill:create.array",  # the store exists, not yet marked as fully created
        "kill:block.written:3",  # a block's pixels on disk, its marker not
        "kill:finalize.checked",  # every block done, the metadata not yet written
        "kill:finalize.attrs",  # marked complete, the block markers not yet removed
    ],
)
def test_a_kill_at_a_named_point_resumes_bit_identical(
    server, stack, reference, tmp_path, hook, capsys
):
    out = tmp_path / "out.ome.zarr"
    child = _child(server, stack, out, hook=hook)
    assert child.wait() == -signal.SIGKILL, child.stderr()
    assert lock_path(out).exists()  # the dead child's lock
    if not hook.startswith("kill:finalize"):
        assert not OmeZarrOutput(out).is_complete()  # nothing half-done looks finished
        capsys.readouterr()
        assert main(["denoise", str(stack), str(out), *OPTIONS]) == 2  # the hint given ...
        err = capsys.readouterr().err
        assert f"taking over the lock on {out} left by a run that is gone (pid {child.pid}" in err
        assert "pass resume=True (CLI: --resume)" in err
    _resume_and_compare(server, stack, out, reference)  # ... is the one that works


def test_a_kill_while_overwrite_removes_our_store_resumes(server, stack, reference, tmp_path):
    out = tmp_path / "out.ome.zarr"
    shutil.copytree(stack.with_name("reference.ome.zarr"), out)
    child = _child(server, stack, out, "--overwrite", hook="kill:overwrite.removing:2")
    assert child.wait() == -signal.SIGKILL, child.stderr()
    assert state_dir(out).is_dir()  # half removed, and still recognisably ours
    _resume_and_compare(server, stack, out, reference)


def _start_holding_the_lock(server, stack: Path, out: Path) -> tuple[CliRun, float]:
    """A plain run, and when it took the output's lock (its output work begins there)."""
    child = _child(server, stack, out)
    deadline = time.monotonic() + 60
    while not lock_path(out).exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the run never took its lock"
        time.sleep(0.002)
    return child, time.monotonic()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_kill_at_a_random_time_resumes_bit_identical(server, stack, reference, tmp_path, seed):
    """SIGKILL from outside, at a random moment of the run's output work."""
    timing = _start_holding_the_lock(server, stack, tmp_path / "timing.ome.zarr")
    assert timing[0].wait() == 0
    span = time.monotonic() - timing[1]  # how long that work takes on this machine now
    draws = random.Random(seed)
    for attempt in range(5):  # a draw near the end may miss a run that ran fast
        out = tmp_path / f"out{attempt}.ome.zarr"
        child, began = _start_holding_the_lock(server, stack, out)
        time.sleep(max(0.0, began + draws.uniform(0.0, 0.9 * span) - time.monotonic()))
        child.kill()
        if child.wait() == -signal.SIGKILL:
            break
    else:
        pytest.fail(f"5 random kills within {span:.2f} s all came after the run's end")
    _resume_and_compare(server, stack, out, reference)


def _pause_child(server, stack: Path, out: Path, tmp_path: Path, *flags: str) -> CliRun:
    """A child paused inside its run (holding the lock), after its 2nd block's pixels."""
    gate = tmp_path / "gate"
    gate.mkdir()
    child = _child(server, stack, out, *flags, hook=f"pause:block.written:2:{gate}")
    deadline = time.monotonic() + 60
    while not (gate / "ready").exists():
        assert child.poll() is None, child.stderr()
        assert time.monotonic() < deadline, "the child never reached its pause point"
        time.sleep(0.01)
    return child


def _release(child: CliRun, tmp_path: Path) -> None:
    (tmp_path / "gate" / "go").touch()
    assert child.wait() == 0, child.stderr()


@pytest.mark.parametrize("mode", ["fresh", "resume"])
def test_a_second_writer_is_refused_in_every_mode(server, stack, reference, tmp_path, mode, capsys):
    """The first writer runs in `mode`; a second one is refused in each mode."""
    out = tmp_path / "out.ome.zarr"
    flags = ["--resume"] if mode == "resume" else []
    if mode == "resume":  # an interrupted run to finish
        assert _child(server, stack, out, hook="kill:block.marked:1").wait() == -signal.SIGKILL
    first = _pause_child(server, stack, out, tmp_path, *flags)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    capsys.readouterr()
    for second in ([], ["--overwrite"], ["--resume"]):  # this process is the second writer
        assert main(["denoise", str(stack), str(out), *OPTIONS, *second]) == 2
        err = capsys.readouterr().err
        assert f"is being written by another run (pid {first.pid}" in err, err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before  # untouched
    _release(first, tmp_path)
    assert OmeZarrOutput(out).is_complete()
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[:], reference)
    assert not lock_path(out).exists()


def test_finalize_trusts_the_markers_on_disk_not_its_memory(server, stack, reference, tmp_path):
    out = tmp_path / "out.ome.zarr"
    child = _pause_child(server, stack, out, tmp_path)
    (marker,) = (state_dir(out) / "blocks").glob("*.done")  # the 1st block's
    marker.unlink()  # something outside the run undid a finished block
    (tmp_path / "gate" / "go").touch()
    assert child.wait() == 2
    err = child.stderr()
    assert "no marker on disk" in err and "--resume" in err
    assert not OmeZarrOutput(out).is_complete()
    _resume_and_compare(server, stack, out, reference)
