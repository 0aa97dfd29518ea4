"""The same pipeline as dask.distributed tasks, on a real LocalCluster of worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from distributed import Client, LocalCluster

from napari_wne import denoise
from napari_wne.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        resources={"GPU": 1},  # a label only: lets the tests ask for GPU=1 per task
        dashboard_address=":0",
    ) as local:
        yield local


@pytest.fixture
def stack_path(tmp_path):
    rng = np.random.default_rng(7)
    stack = rng.poisson(40, size=(3, 80, 72)).astype(np.uint16)
    path = tmp_path / "stack.zarr"
    array = zarr.create_array(str(path), shape=stack.shape, chunks=(1, 40, 36), dtype="uint16")
    array[:] = stack
    return path, stack


def test_cluster_run_equals_the_local_run_voxel_for_voxel(cluster, stack_path, tmp_path):
    path, _ = stack_path
    common = dict(axes="TYX", block=32, tile=64, halo=16, device="cpu", verbose=False)
    local = denoise(path, output=tmp_path / "local.ome.zarr", **common)
    seen = []
    remote = denoise(
        path,
        output=tmp_path / "remote.ome.zarr",
        scheduler=cluster.scheduler_address,
        progress=seen.append,
        **common,
    )
    # Worker processes run torch on one thread (dask sets OMP_NUM_THREADS=1) and this one on
    # two: on AVX-512 CPUs oneDNN's float32 sums may then differ in the last bit or two.
    np.testing.assert_allclose(
        remote.to_dask().compute(), local.to_dask().compute(), rtol=1e-6, atol=0
    )
    assert seen[-1].done == seen[-1].total == 3 * 3 * 3  # T x Y blocks x X blocks
    with Client(cluster) as client:  # the work really ran on both worker processes
        counts = client.run(lambda: _engines_built())
    assert sorted(counts.values()) == [1, 1]


def test_cluster_run_honours_gpu_resources_and_the_cli(cluster, stack_path, tmp_path):
    path, _ = stack_path
    target = tmp_path / "cli.ome.zarr"
    argv = ["denoise", str(path), str(target), "--axes", "TYX", "--block", "40", "--device", "cpu",
            "--scheduler", cluster.scheduler_address, "--gpu-per-task"]  # fmt: skip
    assert main(argv) == 0
    reference = denoise(path, axes="TYX", block=40, device="cpu", verbose=False,
                        output=tmp_path / "ref.ome.zarr")  # fmt: skip
    np.testing.assert_allclose(  # last-bit tolerance: see the test above
        zarr.open_array(str(target / "0"))[:], reference.to_dask().compute(), rtol=1e-6, atol=0
    )


def test_cluster_run_needs_paths_every_worker_can_read(cluster, tmp_path):
    image = np.ones((16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="input as a path"):
        denoise(image, output=tmp_path / "o.ome.zarr", scheduler=cluster.scheduler_address)


def test_a_failing_block_surfaces_the_workers_error(cluster, tmp_path):
    image = np.ones((64, 64), dtype=np.float32)
    image[50, 50] = np.nan
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, image)
    target = tmp_path / "nan.ome.zarr"
    with pytest.raises(ValueError, match="NaN"):
        denoise(path, output=target, block=32, scheduler=cluster.scheduler_address, verbose=False)
    group = zarr.open_group(str(target), mode="r")
    assert group.attrs["napari_wne"]["complete"] is False  # nothing that looks complete


def test_cluster_writes_an_ome_tiff_through_its_staging(cluster, stack_path, tmp_path):
    """The job carries the writer's choice: workers fill the TIFF's staging store, and the
    client streams it into the OME-TIFF."""
    path, _ = stack_path
    common = dict(axes="TYX", block=40, device="cpu", verbose=False)
    target = tmp_path / "remote.ome.tif"
    result = denoise(path, output=target, scheduler=cluster.scheduler_address, **common)
    assert result.format == "ome-tiff" and sorted(p.name for p in tmp_path.iterdir()) == [
        "remote.ome.tif", "stack.zarr",
    ]  # fmt: skip
    reference = denoise(path, output=tmp_path / "ref.ome.zarr", **common)
    np.testing.assert_allclose(  # last-bit tolerance: see the first test
        tifffile.imread(target), reference.to_dask().compute(), rtol=1e-6, atol=0
    )


def _engines_built() -> int:
    """How many engines this worker process built (its per-process cache)."""
    from napari_wne.engine import cached_engine

    return cached_engine.cache_info().currsize


def test_a_cluster_run_gets_its_pyramid_from_the_same_writer(cluster, tmp_path):
    """Workers write level 0; the writer's final pass (in this process) adds the levels."""
    rng = np.random.default_rng(3)
    path = tmp_path / "wide.zarr"
    array = zarr.create_array(str(path), shape=(16, 1100), chunks=(16, 550), dtype="float32")
    array[:] = rng.normal(100, 10, size=(16, 1100))
    out = denoise(
        path, "ne-dncnn", axes="YX", block=(16, 512), device="cpu", verbose=False,
        output=tmp_path / "wide.ome.zarr", pyramid="on", scheduler=cluster.scheduler_address,
    )  # fmt: skip
    level0, level1 = (zarr.open_array(f"{out}/{k}")[:] for k in ("0", "1"))
    assert level1.shape == (8, 550)
    expected = level0.reshape(8, 2, 550, 2).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_allclose(level1, expected, rtol=1e-6)
