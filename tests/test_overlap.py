"""Overlapped I/O (`napari_wne.overlap`): the same pixels, errors and cancellation as in order."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import zarr

from napari_wne import denoise
from napari_wne.axes import parse_axes
from napari_wne.engine import Engine, TileSettings
from napari_wne.overlap import run_in_order
from napari_wne.pipeline import Cancelled, run_blocks, write_block
from napari_wne.sources import MissingChunkError, open_source
from napari_wne.writers import block_store

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")

SMALL = {"tile": 64, "halo": 8, "blend": 8, "block": 48, "precision": "float32", "verbose": False}
"""Small tiles and blocks: a 3x96x100 stack is 18 blocks, each of several tiles."""


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:100]
    clean = 300 + 80 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    return np.stack([clean + rng.normal(0, 20, clean.shape) + 50 * t for t in range(3)]).astype(
        np.uint16
    )


def _io_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("napari-wne-")]


def test_overlapped_run_equals_the_sequential_one_pixel_for_pixel(tmp_path, stack, monkeypatch):
    source = tmp_path / "in.zarr"
    zarr.create_array(str(source), data=stack, chunks=(1, 32, 32))
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("NAPARI_WNE_OVERLAP", flag)
        assert TileSettings().overlap is (flag == "1")
        out = tmp_path / f"out{flag}.ome.zarr"
        written = denoise(str(source), axes="TYX", output=out, model="dncnn-wne", **SMALL)
        results[flag] = np.asarray(written.to_dask().compute())
        results[flag + "memory"] = denoise(stack, axes="TYX", model="dncnn-wne", **SMALL)
    assert results["1"].dtype == np.float32  # exact float equality, not rounded
    np.testing.assert_array_equal(results["1"], results["0"])
    np.testing.assert_array_equal(results["1memory"], results["0memory"])
    assert not _io_threads()


def test_overlap_is_on_for_a_gpu_and_off_on_the_cpu_unless_asked(stack, monkeypatch):
    from napari_wne.pipeline import overlaps

    monkeypatch.delenv("NAPARI_WNE_OVERLAP", raising=False)
    assert TileSettings().overlap is None
    engine, _ = _engine(stack, None)
    assert not overlaps(engine)  # measured slower on the CPU: docs/performance.md
    engine.device = torch.device("cuda")  # only the decision is read here
    assert overlaps(engine)
    assert overlaps(_engine(stack, True)[0]) and not overlaps(_engine(stack, False)[0])


def _engine(stack: np.ndarray, overlap: bool | None) -> tuple[Engine, list]:
    layout = parse_axes("TYX", stack.shape)
    settings = TileSettings(tile=64, halo=8, blend=8, precision="float32", overlap=overlap)
    engine = Engine("dncnn-wne", layout, stack.shape[1:], torch.device("cpu"), settings)
    return engine, engine.blocks((stack.shape[0],), (48, 48))


@pytest.mark.parametrize("overlap", ["1", "0"])
def test_a_failing_read_reaches_the_caller_with_its_message(tmp_path, stack, overlap, monkeypatch):
    """A missing chunk in plane 1 fails that plane's read, in the reader thread when
    overlapped: the caller gets the same MissingChunkError, after the blocks before it
    have landed with their markers, and nothing after it."""
    monkeypatch.setenv("NAPARI_WNE_OVERLAP", overlap)
    path = tmp_path / "in.zarr"
    zarr.create_array(str(path), data=stack, chunks=(1, 96, 100))
    (path / "c" / "1" / "0" / "0").unlink()
    out = tmp_path / "out.ome.zarr"
    with pytest.raises(MissingChunkError, match="c/1/0/0 is missing") as error:
        denoise(str(path), axes="TYX", output=out, model="dncnn-wne", **SMALL)
    assert str(path) in str(error.value)
    plane0 = {f"0_{y}-{y + 48}_{x}-{min(x + 48, 100)}" for y in (0, 48) for x in (0, 48, 96)}
    assert block_store(out).done_blocks() == plane0
    assert not _io_threads()


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failing_write_reaches_the_caller_and_later_blocks_are_not_written(stack, overlap):
    engine, blocks = _engine(stack, overlap)
    source = open_source(stack, axes="TYX")
    result = np.zeros_like(stack)
    written = []

    def write(block, values):
        if len(written) == 4:
            raise OSError(28, "No space left on device (test)")
        write_block(result, engine.layout, "TYX", block, values, stack.dtype)
        written.append(block.key)

    with pytest.raises(OSError, match=r"No space left on device \(test\)"):
        run_blocks(engine, source, "TYX", blocks, write)
    assert written == [b.key for b in blocks[:4]]  # in order, nothing after the failure
    assert not _io_threads()


@pytest.mark.parametrize("overlap", [True, False])
def test_cancel_stops_at_a_block_boundary_with_every_started_write_finished(stack, overlap):
    engine, blocks = _engine(stack, overlap)
    source = open_source(stack, axes="TYX")
    stop = threading.Event()
    written, heard = [], []

    def write(block, values):
        time.sleep(0.05)  # a slow disk: the write is still under way when cancel is seen
        written.append(block.key)

    def progress(p):
        heard.append(p.done)
        if p.done == 3:
            stop.set()

    with pytest.raises(Cancelled, match="cancelled after"):
        run_blocks(engine, source, "TYX", blocks, write, progress=progress, cancel=stop)
    # The cancel is seen before the next block is computed; a block already computed
    # when it came is written whole, none later.
    assert written == [b.key for b in blocks[: len(written)]]
    assert 3 <= len(written) <= 4 and heard == list(range(1, len(heard) + 1))
    assert not _io_threads()


def test_reads_run_at_most_one_block_ahead_and_writes_in_order():
    events: list[tuple[str, int]] = []
    lock = threading.Lock()

    def log(what: str, i: int) -> None:
        with lock:
            events.append((what, i))

    def read(i):
        log("read", i)
        time.sleep(0.01)
        return i

    def compute(i, value):
        log("compute", i)
        time.sleep(0.02)
        return value * 10

    def write(i, value):
        assert value == i * 10
        time.sleep(0.03)
        log("write", i)

    run_in_order(8, read, compute, write)
    computed = [i for what, i in events if what == "compute"]
    assert computed == list(range(8))
    assert [i for what, i in events if what == "write"] == list(range(8))
    for n, (what, i) in enumerate(events):
        seen = [j for w, j in events[:n] if w == "compute"]
        if what == "read":  # read ahead by one: block i once block i-2 has been computed
            assert len(seen) >= i - 1, (i, seen)
        if what == "compute":  # at most one write pending: block i-2 is on disk
            assert i < 2 or ("write", i - 2) in events[:n]


def test_an_error_in_compute_lets_the_write_under_way_finish():
    landed = []

    def compute(i, value):
        if i == 2:
            raise ValueError("the model gave NaN in block 2")
        return value

    def write(i, value):
        time.sleep(0.1)
        landed.append(i)

    with pytest.raises(ValueError, match="NaN in block 2"):
        run_in_order(5, lambda i: i, compute, write)
    assert landed == [0, 1]  # block 1's write was under way: it finished before the raise
    assert not _io_threads()


def test_on_the_cpu_tiles_reach_the_model_and_come_back_without_a_copy():
    from napari_wne.transfer import to_device, to_host

    stack = np.random.default_rng(1).normal(size=(2, 16, 16))
    x = to_device(stack, torch.device("cpu"))
    assert np.shares_memory(x.numpy(), stack)
    assert np.shares_memory(to_host(x, torch.float64), stack)


def test_channels_last_backbone_computes_what_the_default_layout_does(monkeypatch):
    """Where the measured table turns channels_last on, only the kernels change."""
    from napari_wne import acceleration
    from napari_wne.models import get_model, load_model

    model = load_model("dncnn-wne", 2, "cpu")
    arch = get_model("dncnn-wne").backbone
    cpu = torch.device("cpu")
    assert acceleration.accelerate(model, cpu, arch, "float32", 3) is model  # measured in 2D only
    assert acceleration.accelerate(model, cpu, "restormer", "float16", 2) is model  # slower there
    fast = acceleration.accelerate(model, cpu, arch, "float32", 2)
    assert isinstance(fast.backbone, acceleration.ChannelsLast)
    assert next(model.backbone.parameters()).is_contiguous()  # the shared model is untouched
    x = torch.randn(2, 1, 40, 48, dtype=torch.float64) * 30 + 200
    with torch.inference_mode():
        expected, got = model(x), fast(x)
    assert got.is_contiguous()
    # other kernels sum in another order: float32 rounding over 17 layers, no more
    assert float((got - expected).abs().max() / expected.std()) < 1e-4


def test_the_compile_opt_in_gives_the_eager_result(stack):
    """`compile=True` compiles the backbone (seconds on a CPU, once per tile shape)."""
    layout = parse_axes("YX", stack.shape[1:])
    plane = stack[0].astype(np.float32)
    results = []
    for compiled in (False, True):
        settings = TileSettings(tile=64, halo=8, blend=8, precision="float32", compile=compiled)
        engine = Engine("dncnn-wne", layout, plane.shape, torch.device("cpu"), settings)
        assert hasattr(engine.model.backbone, "_orig_mod") is compiled
        block = engine.blocks((), plane.shape)[0]
        box, tiles = engine.plan(block)
        results.append(engine.compute(plane[box], box, tiles, block.region))
    assert np.abs(results[1] - results[0]).max() / plane.std() < 1e-4
