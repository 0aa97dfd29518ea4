"""Checks that need a CUDA GPU: marked `gpu`, skipped cleanly without one.

Run them on a GPU machine with ``pytest -m gpu tests/test_gpu.py``. They compare the GPU
with the CPU, measure the bfloat16 equivariance error, put the out-of-memory back-off
under a real memory cap (`torch.cuda.set_per_process_memory_fraction`), and, with two
GPUs, run one dask worker per GPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import zarr

from napari_wne import denoise
from napari_wne.backoff import MemoryBackoffWarning
from napari_wne.engine import cached_engine as _engine

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    rng = np.random.default_rng(3)
    rows = 400 + 300 * np.sin(np.arange(512) / 11.0)[:, None]
    return rng.poisson(rows, (512, 512)).astype(np.float64)


def relative_error(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / scale)


def test_cuda_float32_matches_the_cpu(noisy):
    cpu = denoise(noisy, "unet-wne", device="cpu", precision="float32", verbose=False)
    gpu = denoise(noisy, "unet-wne", device="cuda", precision="float32", verbose=False)
    assert relative_error(cpu, gpu, noisy.std()) < 1e-3


def test_cuda_auto_is_bfloat16_on_recent_gpus_and_stays_close(noisy):
    from napari_wne.precision import resolve_precision

    chosen, _ = resolve_precision("auto", "cuda", "unet")
    major, _ = torch.cuda.get_device_capability(0)
    assert chosen == ("bfloat16" if major >= 8 else "float16")
    reference = denoise(noisy, "unet-wne", device="cuda", precision="float32", verbose=False)
    low = denoise(noisy, "unet-wne", device="cuda", precision=chosen, verbose=False)
    assert 1e-5 < relative_error(reference, low, noisy.std()) < 0.1


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_cuda_equivariance_error_of_each_precision(noisy, precision):
    if precision == "bfloat16" and torch.cuda.get_device_capability(0)[0] < 8:
        pytest.skip("no bfloat16 on this GPU")
    a, b = 3.7, -1200.0
    options = {"device": "cuda", "precision": precision, "verbose": False}
    out = denoise(noisy, "unet-wne", **options)
    moved = denoise(a * noisy + b, "unet-wne", **options)
    assert relative_error(moved, a * out.astype(np.float64) + b, a * noisy.std()) < 1e-4


def test_out_of_memory_backoff_under_a_real_memory_cap():
    """A batch that cannot fit is halved (then its tiles cut) for the same result.

    Uncapped, this run peaks at 548 MiB on an H200 (DnCNN frees each layer's input as it
    goes); under 150 MiB it backs off twice (measured 2026-12-04). On failure the message
    gives the peak the run reached against the cap.
    """
    rng = np.random.default_rng(5)
    image = rng.poisson(300, (2048, 2048)).astype(np.float32)
    options = {"device": "cuda", "precision": "float32", "tile": 1024, "batch_size": 4}
    reference = denoise(image, "dncnn-wne", verbose=False, **options)
    _engine.cache_clear()  # a fresh engine: back-off state is kept per engine
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    cap = torch.cuda.memory_allocated(0) + 150 * 2**20
    torch.cuda.set_per_process_memory_fraction(cap / total, 0)
    torch.cuda.reset_peak_memory_stats(0)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            result = denoise(image, "dncnn-wne", verbose=False, **options)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        _engine.cache_clear()
    backoffs = [w for w in said if issubclass(w.category, MemoryBackoffWarning)]
    peak = torch.cuda.max_memory_allocated(0)
    assert backoffs, f"no back-off: peak {peak / 2**20:.0f} MiB under a {cap / 2**20:.0f} MiB cap"
    assert "out of memory on cuda:0" in str(backoffs[0].message)
    assert relative_error(result, reference, image.std()) < 1e-4


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_one_dask_worker_per_gpu(tmp_path, noisy):
    """Two workers, each pinned to its own GPU, give the single-process result."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    stack = np.stack([noisy, noisy[::-1]]).astype(np.float32)
    path = tmp_path / "stack.zarr"
    zarr.create_array(str(path), shape=stack.shape, chunks=(1, 256, 256), dtype="float32")[:] = (
        stack
    )
    workers = {
        f"gpu{i}": {
            "cls": Nanny,
            "options": {
                "nthreads": 1,
                "resources": {"GPU": 1},
                "env": {"CUDA_VISIBLE_DEVICES": str(i)},
            },
        }
        for i in range(2)
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    local = denoise(stack, "unet-wne", axes="TYX", device="cuda", verbose=False)
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster) as client:
        out = denoise(
            str(path), "unet-wne", axes="TYX", device="cuda", output=tmp_path / "out.zarr",
            scheduler=client, resources={"GPU": 1}, block=256, verbose=False,
        )  # fmt: skip
        seen = client.run(torch.cuda.device_count)  # each worker sees its own GPU only
    assert sorted(seen.values()) == [1, 1]
    assert relative_error(out.to_dask().compute(), local, noisy.std()) < 1e-3


def test_pinned_non_blocking_transfer_round_trips_exactly():
    from napari_wne.transfer import to_device, to_host

    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        stack = rng.normal(300, 40, (3, 96, 80)).astype(dtype)
        x = to_device(stack, torch.device("cuda"))
        assert x.device.type == "cuda" and x.dtype == torch.from_numpy(stack).dtype
        back = to_host(x * 2, x.dtype)  # a kernel queued after the copy, then back
        assert back.dtype == dtype and torch.from_numpy(back).is_pinned()
        np.testing.assert_array_equal(back, stack * 2)


def test_cuda_overlapped_run_equals_the_sequential_one(tmp_path, noisy, monkeypatch):
    stack = np.stack([noisy, noisy[::-1]]).astype(np.uint16)
    source = tmp_path / "in.zarr"
    zarr.create_array(str(source), data=stack, chunks=(1, 256, 256))
    outputs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("NAPARI_WNE_OVERLAP", flag)
        written = denoise(
            str(source), "unet-wne", axes="ZYX", output=tmp_path / f"o{flag}.ome.zarr",
            device="cuda", precision="float32", block=256, verbose=False,
        )  # fmt: skip
        outputs[flag] = np.asarray(written.to_dask().compute())
    np.testing.assert_array_equal(outputs["1"], outputs["0"])
