"""The `napari-wne` command: demo, single-file denoising, and its refusals."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_wne.cli import main


def test_demo_denoises_the_bundled_sample(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    out = tifffile.imread(tmp_path / "demo" / "nuclei_2d_denoised.tif")
    original = tifffile.imread(tmp_path / "demo" / "nuclei_2d_input.tif")
    assert out.shape == original.shape == (512, 512) and out.dtype == np.float32
    captured = capsys.readouterr()
    assert "denoised the bundled sample" in captured.out
    assert "device cpu" in captured.err and "no trained weights" in captured.err


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


@pytest.mark.parametrize("args", [["--help"], ["denoise", "--help"]])
def test_help_exits_cleanly(args):
    result = subprocess.run(
        [sys.executable, "-m", "napari_wne.cli", *args], capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage" in result.stdout
