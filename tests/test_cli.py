"""The `napari-wne` command: demo, single-file denoising, and its refusals."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

from napari_wne.cli import main


def test_demo_denoises_the_bundled_sample(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    out = tifffile.imread(tmp_path / "demo" / "nuclei_2d_denoised.tif")
    original = tifffile.imread(tmp_path / "demo" / "nuclei_2d_input.tif")
    assert out.shape == original.shape == (512, 512) and out.dtype == np.float32
    captured = capsys.readouterr()
    assert "denoised the bundled sample" in captured.out
    assert "device cpu" in captured.err and "warning" not in captured.err  # trained, shipped


def test_console_script_is_installed():
    exe = shutil.which("napari-wne")
    assert exe, "the napari-wne console script is not on PATH"
    result = subprocess.run([exe, "models"], capture_output=True, text=True, check=True)
    assert "unet-wne" in result.stdout and "(default)" in result.stdout


def test_denoise_a_tiff_keeps_shape_axes_and_dtype(tmp_path, rng):
    source = tmp_path / "stack.tif"
    stack = rng.poisson(30, size=(3, 32, 40)).astype(np.uint16)
    tifffile.imwrite(source, stack, photometric="minisblack", metadata={"axes": "TYX"})
    target = tmp_path / "out" / "denoised.tif"
    assert main(["denoise", str(source), str(target), "--dtype", "input"]) == 0
    with tifffile.TiffFile(target) as tif:
        assert tif.series[0].axes == "TYX"
        result = tif.series[0].asarray()
    assert result.shape == stack.shape and result.dtype == np.uint16
    np.testing.assert_array_equal(tifffile.imread(source), stack)  # input untouched


def test_existing_output_is_refused_unless_overwrite(tmp_path, rng, capsys):
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, rng.normal(size=(16, 16)).astype(np.float32))
    target.write_bytes(b"keep me")
    assert main(["denoise", str(source), str(target)]) == 2
    assert target.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert main(["denoise", str(source), str(target), "--overwrite"]) == 0
    assert tifffile.imread(target).shape == (16, 16)


def test_output_equal_to_input_is_refused(tmp_path, rng, capsys):
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, rng.normal(size=(16, 16)).astype(np.float32))
    before = source.read_bytes()
    assert main(["denoise", str(source), str(source), "--overwrite"]) == 2
    assert source.read_bytes() == before
    assert "is the input" in capsys.readouterr().err


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main(["denoise", str(tmp_path / "nope.tif"), str(tmp_path / "o.tif")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_failed_run_leaves_no_output_file(tmp_path, capsys):
    source = tmp_path / "bad.tif"
    image = np.ones((16, 16), dtype=np.float32)
    image[2, 2] = np.nan
    tifffile.imwrite(source, image)
    assert main(["denoise", str(source), str(tmp_path / "out.tif")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tif"]


def test_unknown_axes_in_the_file_ask_for_axes(tmp_path, capsys):
    source = tmp_path / "q.tif"
    tifffile.imwrite(source, np.ones((2, 8, 8), dtype=np.float32))  # tifffile calls this QYX
    assert main(["denoise", str(source), str(tmp_path / "o.tif")]) == 2
    assert "--axes" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--help"], ["denoise", "--help"], ["batch", "--help"]])
def test_help_exits_cleanly(args):
    result = subprocess.run(
        [sys.executable, "-m", "napari_wne.cli", *args], capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage" in result.stdout


def test_denoise_into_ome_zarr_shows_a_progress_bar(tmp_path, rng, capsys):
    source = tmp_path / "stack.tif"
    stack = rng.poisson(30, size=(2, 48, 40)).astype(np.uint16)
    tifffile.imwrite(source, stack, imagej=True, metadata={"axes": "ZYX"}, resolution=(4, 4))
    target = tmp_path / "stack.ome.zarr"
    argv = ["denoise", str(source), str(target), "--block", "16", "--tile", "64"]
    argv += ["--overlap", "16", "--norm", "tile"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "18/18" in err and "block" in err and "Mvoxel/s" in err  # 2 planes x 3 x 3 blocks
    group = zarr.open_group(str(target), mode="r")
    multiscale = group.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"][1:] == [0.25, 0.25]
    assert group["0"].shape == stack.shape


def test_interrupted_tiff_run_resumes_from_its_staging(tmp_path, rng, monkeypatch, capsys):
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, rng.normal(100, 10, size=(64, 64)).astype(np.float32))
    reference = tmp_path / "reference.tif"
    assert main(["denoise", str(source), str(reference), "--block", "16"]) == 0

    import napari_wne.pipeline as pipeline

    calls = {"n": 0}
    real = pipeline.Engine.compute

    def stop_at_the_fifth_block(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.Engine, "compute", stop_at_the_fifth_block)
    assert main(["denoise", str(source), str(target), "--block", "16"]) == 130
    assert not target.exists()
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(pipeline.Engine, "compute", real)
    assert main(["denoise", str(source), str(target), "--block", "16", "--resume"]) == 0
    np.testing.assert_array_equal(tifffile.imread(target), tifffile.imread(reference))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif", "reference.tif"]


def test_batch_skips_a_bad_file_finishes_the_rest_and_fails_at_the_end(tmp_path, rng, capsys):
    folder = tmp_path / "lab"
    folder.mkdir()
    for name in ("a.tif", "c.tif"):
        tifffile.imwrite(folder / name, rng.poisson(20, size=(32, 32)).astype(np.uint16))
    (folder / "b.tif").write_bytes(b"this is not a TIFF")
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    assert main(["batch", str(folder), str(out)]) == 1
    captured = capsys.readouterr()
    assert "b.tif" in captured.err and "not a readable TIFF" in captured.err
    assert "denoised 2 of 3 files" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a_denoised.ome.zarr", "c_denoised.ome.zarr"]
    for name in ("a", "c"):
        assert zarr.open_array(str(out / f"{name}_denoised.ome.zarr" / "0")).shape == (32, 32)


def test_batch_pattern_and_tiff_format(tmp_path, rng):
    folder = tmp_path / "lab"
    folder.mkdir()
    for name in ("keep_1.tif", "keep_2.tif", "other.tif"):
        tifffile.imwrite(folder / name, rng.poisson(20, size=(24, 24)).astype(np.uint16))
    out = tmp_path / "out"
    assert main(["batch", str(folder), str(out), "--pattern", "keep_*", "--format", "tif"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["keep_1_denoised.tif", "keep_2_denoised.tif"]
    assert tifffile.imread(out / "keep_1_denoised.tif").shape == (24, 24)


def test_unreachable_scheduler_is_a_clear_error(tmp_path, rng, capsys):
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, rng.normal(size=(16, 16)).astype(np.float32))
    argv = [
        "denoise",
        str(source),
        str(tmp_path / "o.ome.zarr"),
        "--scheduler",
        "tcp://127.0.0.1:1",
    ]
    assert main(argv) == 2
    assert "cannot reach the dask scheduler" in capsys.readouterr().err


def test_overlap_takes_one_size_per_axis_like_tile(tmp_path, rng):
    source = tmp_path / "plane.tif"
    tifffile.imwrite(source, rng.poisson(30, size=(48, 40)).astype(np.uint16))
    target = tmp_path / "plane.ome.zarr"
    argv = ["denoise", str(source), str(target), "--tile", "64", "--overlap", "8", "16"]
    assert main([*argv, "--model", "ne-dncnn"]) == 0
    assert zarr.open_group(str(target), mode="r").attrs["napari_wne"]["halo"] == [8, 16]
