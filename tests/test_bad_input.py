"""The bad-input contract, case by case: what a hostile or unlucky user gets back.

Each case asserts the error type and a phrase of its message (API), or the exit code and a
phrase of stderr (CLI), or the exact output where the input is valid after all. Files are
real (TIFF, zarr, OME-Zarr, pickles) and tiny; the model is the untrained `ne-dncnn`.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_wne import denoise
from napari_wne.cli import main
from napari_wne.engine import TileSettings
from napari_wne.model_io import CARD_FILE, CARD_FORMAT, WEIGHTS_FILE, save_weights
from napari_wne.sources import CorruptInputError, MissingChunkError
from napari_wne.training import CHECKPOINT_FILE, TrainConfig, train

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")

MODEL = "ne-dncnn"
STACK = (np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32) * 7) % 997 + 3


@pytest.fixture(autouse=True)
def _quiet(quiet_tifffile):
    """Every test here reads damaged TIFFs on purpose (see conftest.quiet_tifffile)."""


# --- inputs, each written into a test's tmp_path -------------------------------------------


def _nan_tiff(d: Path) -> Path:
    image = STACK[0].astype(np.float32)
    image[3, 3] = np.nan
    tifffile.imwrite(d / "nan.tif", image)
    return d / "nan.tif"


def _stack_tiff(d: Path, **kwargs) -> Path:
    tifffile.imwrite(d / "stack.tif", STACK, **kwargs)
    return d / "stack.tif"


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


def _cut_imagej(d: Path) -> Path:
    return _cut(_stack_tiff(d, imagej=True, metadata={"axes": "ZYX"}), 0.6)


def _cut_ome(d: Path) -> Path:
    return _cut(_stack_tiff(d, ome=True, photometric="minisblack", metadata={"axes": "ZYX"}), 0.9)


def _cut_shaped(d: Path) -> Path:
    return _cut(_stack_tiff(d, photometric="minisblack", metadata={"axes": "ZYX"}), 0.7)


def _text_as_tiff(d: Path) -> Path:
    (d / "notes.tif").write_text("not an image")
    return d / "notes.tif"


def _png(d: Path) -> Path:
    (d / "image.png").write_bytes(b"\x89PNG\r\n")
    return d / "image.png"


def _rgb_guess(d: Path) -> Path:
    """Three planes that tifffile stores and reads back as one RGB image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(d / "three.tif", np.concatenate([STACK, STACK[:1]]))
    return d / "three.tif"


def _store(d: Path) -> Path:
    array = zarr.create_array(
        str(d / "stack.zarr"), shape=STACK.shape, dtype=STACK.dtype, chunks=(1, 16, 16)
    )
    array[:] = STACK
    return d / "stack.zarr"


def _missing_chunk(d: Path) -> Path:
    path = _store(d)
    (path / "c" / "1" / "0" / "1").unlink()
    return path


def _corrupt_chunk(d: Path) -> Path:
    path = _store(d)
    (path / "c" / "1" / "1" / "0").write_bytes(b"\x00garbage" * 9)
    return path


def _ngff(d: Path, multiscales: list, array_path: str = "0") -> Path:
    path = d / "image.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array(array_path, shape=STACK.shape, dtype=STACK.dtype, chunks=STACK.shape)[:] = (
        STACK
    )
    group.attrs["multiscales"] = multiscales
    return path


def _ngff_02(d: Path) -> Path:
    return _ngff(d, [{"version": "0.2", "datasets": [{"path": "0"}]}])


def _ngff_names(d: Path) -> Path:
    axes = [{"name": "time", "type": "time"}, {"name": "y"}, {"name": "x"}]
    return _ngff(d, [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}])


def _ngff_bad_path(d: Path) -> Path:
    return _ngff(d, [{"version": "0.4", "axes": ["z", "y", "x"], "datasets": [{"path": "s0"}]}])


def _ngff_odd_axis(d: Path) -> Path:
    axes = [{"name": "angle", "type": "space"}, {"name": "y"}, {"name": "x"}]
    return _ngff(d, [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}])


class _RunsCode:
    """Unpickling this calls os.system (it is refused before it can)."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _evil_weights(d: Path) -> Path:
    torch.save({"conv.weight": torch.zeros(1), "x": _RunsCode()}, d / "weights.pt")
    return d / "weights.pt"


def _evil_exec(d: Path) -> Path:
    payload = {"x": _Exec()}
    (d / "weights.pt").write_bytes(pickle.dumps(payload, protocol=2))
    return d / "weights.pt"


class _Exec:
    def __reduce__(self):
        return (exec, ("open('pwned', 'w').close()",))


def _card(d: Path, card: dict | str) -> Path:
    folder = d / "model"
    folder.mkdir()
    text = card if isinstance(card, str) else json.dumps(card)
    (folder / CARD_FILE).write_text(text)
    save_weights({"w": torch.zeros(1)}, folder / WEIGHTS_FILE)
    return folder


GOOD_CARD = {
    "format": CARD_FORMAT,
    "backbone": "dncnn",
    "wne": True,
    "spatial_dims": 2,
    "backbone_kwargs": {"depth": 3},
}


# --- the API -------------------------------------------------------------------------------

Make = Callable[[Path], tuple[object, dict]]


def _array(image, **kwargs) -> Make:
    return lambda d: (image, kwargs)


def _file(make: Callable[[Path], Path], **kwargs) -> Make:
    return lambda d: (make(d), kwargs)


def _model_file(make: Callable[[Path], Path], prefix: str = "") -> Make:
    return lambda d: (STACK[0], {"model": prefix + str(make(d))})


def _card_case(card: dict | str) -> Make:
    return lambda d: (STACK[0], {"model": str(_card(d, card))})


NAN = STACK[0].astype(np.float64)
NAN[2, 2] = np.nan
INF = STACK[0].astype(np.float32)
INF[5, 1] = -np.inf

API_CASES = {
    # pixels
    "nan": (_array(NAN), ValueError, "1 NaN"),
    "inf": (_array(INF), ValueError, "infinite"),
    "empty": (_array(np.zeros((0, 16))), ValueError, "empty"),
    "bool": (_array(np.zeros((8, 8), bool)), TypeError, "boolean"),
    "complex": (_array(np.zeros((8, 8), complex)), TypeError, "complex"),
    "object": (_array(np.zeros((8, 8), object)), TypeError, "object"),
    "text": (_array(np.full((8, 8), "a")), TypeError, "text"),
    "not-an-image": (_array(object()), TypeError, "numpy, dask or zarr"),
    # axes
    "3d-without-axes": (_array(STACK), ValueError, "axes='ZYX'"),
    "axes-too-many": (_array(STACK[0], axes="ZYX"), ValueError, "names 3 axes"),
    "axes-unknown-letter": (_array(STACK[0], axes="YQ"), ValueError, "unknown letter"),
    "axes-repeated": (_array(STACK, axes="YYX"), ValueError, "repeats"),
    "axes-without-x": (_array(STACK[0], axes="TY"), ValueError, "both Y and X"),
    "singleton-z": (_array(STACK[:1], axes="ZYX"), ValueError, "at least 2"),
    # options
    "unknown-model": (_array(STACK[0], model="nope"), ValueError, "unknown model"),
    "bad-dtype-option": (_array(STACK[0], dtype="uint8"), ValueError, "dtype must be"),
    "bad-device": (_array(STACK[0], device="tpu"), ValueError, "device"),
    "bad-instances": (_array(STACK, axes="ZYX", instances="2d"), ValueError, "instances must"),
    "bad-norm": (_array(STACK[0], norm="local"), ValueError, "norm must be"),
    "float-tile": (_array(STACK[0], tile=256.0), ValueError, "tile must be a whole number"),
    "text-tile": (_array(STACK[0], tile="256.5"), ValueError, "tile must be a whole number"),
    "float-tile-axis": (_array(STACK[0], tile=(64, 32.5)), ValueError, "tile must be a whole"),
    "float-halo": (_array(STACK[0], halo=2.5), ValueError, "halo must be a whole number"),
    "zero-batch": (_array(STACK[0], batch_size=0), ValueError, "batch_size must be"),
    "zero-block": (_array(STACK[0], block=0), ValueError, "positive sizes"),
    "bad-missing-chunks": (_array(STACK[0], missing_chunks="zeros"), ValueError, "'error', 'fill'"),
    # files
    "missing-file": (lambda d: (d / "none.tif", {}), FileNotFoundError, "does not exist"),
    "unknown-suffix": (_file(_png), ValueError, "give a zarr store"),
    "text-as-tiff": (_file(_text_as_tiff), ValueError, "not a readable TIFF"),
    "cut-imagej": (_file(_cut_imagej), CorruptInputError, "images=2 but only 1 page"),
    "cut-ome": (_file(_cut_ome, axes="ZYX"), CorruptInputError, "truncated or corrupt"),
    "cut-shaped": (_file(_cut_shaped), CorruptInputError, "page 2 of 2 is cut short"),
    "rgb-guess-needs-axes": (_file(_rgb_guess), ValueError, "RGB(A) image"),
    "missing-chunk": (_file(_missing_chunk, axes="ZYX"), MissingChunkError, "chunk c/1/0/1"),
    "corrupt-chunk": (_file(_corrupt_chunk, axes="ZYX"), CorruptInputError, "c/1/1/0 cannot"),
    "ngff-0.2-without-axes": (_file(_ngff_02), ValueError, "0.2 metadata without axes"),
    "ngff-missing-dataset": (_file(_ngff_bad_path), ValueError, "dataset path 's0'"),
    "ngff-unknown-axis": (_file(_ngff_odd_axis), ValueError, "axis 'angle'"),
    # models
    "pickle-runs-os-system": (_model_file(_evil_weights, "dncnn-wne:"), ValueError, "system"),
    "pickle-runs-exec": (_model_file(_evil_exec, "dncnn-wne:"), ValueError, "asks for exec"),
    "card-not-json": (_card_case("{not json"), ValueError, "not a readable model card"),
    "card-not-object": (_card_case("[1, 2]"), ValueError, "a JSON list"),
    "card-without-wne": (
        _card_case({k: v for k, v in GOOD_CARD.items() if k != "wne"}),
        ValueError,
        "'wne' must be true or false",
    ),
    "card-bad-dims": (_card_case({**GOOD_CARD, "spatial_dims": "2"}), ValueError, "spatial_dims"),
    "card-bad-kwargs": (
        _card_case({**GOOD_CARD, "backbone_kwargs": {"depht": 3}}),
        ValueError,
        "cannot be built with backbone_kwargs",
    ),
    "card-unknown-backbone": (_card_case({**GOOD_CARD, "backbone": "vit"}), ValueError, "'vit'"),
}


@pytest.mark.parametrize(("make", "error", "phrase"), API_CASES.values(), ids=API_CASES.keys())
def test_api_refuses_with_a_clear_error(tmp_path, monkeypatch, make, error, phrase):
    monkeypatch.chdir(tmp_path)  # a payload that ran would leave "pwned" here
    image, kwargs = make(tmp_path)
    options = {"model": MODEL, "verbose": False, "device": "cpu", **kwargs}
    if isinstance(image, Path):
        options.setdefault("output", tmp_path / "out.ome.zarr")
    with pytest.raises(error) as raised:
        denoise(image, **options)
    message = str(raised.value)
    assert phrase in message
    if isinstance(image, Path) and image.exists():
        assert image.name in message, "the error must name the file"
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not (tmp_path / "pwned").exists()


def _denoised(image, **kwargs) -> np.ndarray:
    return denoise(image, model=MODEL, verbose=False, device="cpu", **kwargs)


def test_missing_chunks_accepted_as_fill_give_exactly_the_zero_filled_result(tmp_path):
    result = _denoised(
        _missing_chunk(tmp_path),
        axes="ZYX",
        missing_chunks="fill",
        output=tmp_path / "out.ome.zarr",
    )
    filled = STACK.copy()
    filled[1, 0:16, 16:32] = 0
    np.testing.assert_array_equal(result.to_dask().compute(), _denoised(filled, axes="ZYX"))


def test_ngff_without_axes_runs_with_given_axes_exactly_as_in_memory(tmp_path):
    result = _denoised(_ngff_02(tmp_path), axes="TYX", output=tmp_path / "out.ome.zarr")
    assert result.axes == "TYX"
    np.testing.assert_array_equal(result.to_dask().compute(), _denoised(STACK, axes="TYX"))


def test_ngff_axis_names_become_letters(tmp_path):
    result = _denoised(_ngff_names(tmp_path), output=tmp_path / "out.ome.zarr")
    assert result.axes == "TYX"
    np.testing.assert_array_equal(result.to_dask().compute(), _denoised(STACK, axes="TYX"))


def test_axes_override_tifffiles_rgb_guess_with_the_raw_pages(tmp_path):
    result = _denoised(_rgb_guess(tmp_path), axes="ZYX", output=tmp_path / "out.ome.zarr")
    assert result.axes == "ZYX" and result.to_dask().shape == (3, 32, 32)
    planes = np.concatenate([STACK, STACK[:1]])
    np.testing.assert_array_equal(result.to_dask().compute(), _denoised(planes, axes="ZYX"))


def test_axes_override_what_an_imagej_file_says(tmp_path):
    path = _stack_tiff(tmp_path, imagej=True, metadata={"axes": "ZYX"})
    result = _denoised(path, axes="TYX", output=tmp_path / "out.ome.zarr")
    assert result.axes == "TYX"
    np.testing.assert_array_equal(result.to_dask().compute(), _denoised(STACK, axes="TYX"))


def test_tile_settings_keep_whole_sizes_and_refuse_others():
    assert TileSettings(tile=[np.int64(64), 48]).tile == (64, 48)
    for bad in (True, 0, -3, 64.0, "64", (), (64, None)):
        with pytest.raises(ValueError, match="tile must be a whole number"):
            TileSettings(tile=bad)


# --- training folders ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ({"state_dict": {"w": torch.zeros(1)}}, "not a napari-wne training checkpoint"),
        (b"PK\x03\x04 half a zip", "not a readable training checkpoint"),
        ("pickle-runs-code", "asks for posix.system"),
    ],
    ids=["another-tools-checkpoint", "unreadable-checkpoint", "checkpoint-runs-code"],
)
def test_a_foreign_checkpoint_in_a_training_folder_is_refused_and_kept(tmp_path, content, phrase):
    folder = tmp_path / "run"
    folder.mkdir()
    checkpoint = folder / CHECKPOINT_FILE
    if isinstance(content, bytes):
        checkpoint.write_bytes(content)
    elif content == "pickle-runs-code":
        torch.save({"x": _RunsCode()}, checkpoint)
    else:
        torch.save(content, checkpoint)
    before = checkpoint.read_bytes()
    config = TrainConfig(
        output_dir=folder,
        backbone="dncnn",
        steps=2,
        batch_size=1,
        patch_size=16,
        backbone_kwargs={"depth": 3},
        threads=1,
    )
    with pytest.raises(ValueError, match=phrase) as raised:
        train(config, clean_images=[STACK[0].astype(np.float32) / 1000])
    assert CHECKPOINT_FILE in str(raised.value) and "move it away" in str(raised.value)
    assert checkpoint.read_bytes() == before  # never deleted or replaced
    tifffile.imwrite(tmp_path / "clean.tif", STACK[0])
    argv = ["train", str(folder), "--data", str(tmp_path / "clean.tif"), "--steps", "2"]
    assert main(argv) == 2
    assert checkpoint.read_bytes() == before


# --- the CLI -------------------------------------------------------------------------------

CliMake = Callable[[Path], list[str]]


def _cli(make: Callable[[Path], Path], *options: str) -> CliMake:
    return lambda d: [str(make(d)), str(d / "out.ome.zarr"), *options]


CLI_CASES = {
    "missing-input": (lambda d: [str(d / "none.tif"), str(d / "o.tif")], 2, "does not exist"),
    "nan": (_cli(_nan_tiff), 2, "NaN"),
    "axes-repeated": (_cli(_stack_tiff, "--axes", "ZZX"), 2, "repeats"),
    "axes-wrong-count": (_cli(_stack_tiff, "--axes", "YX"), 2, "names 2 axes"),
    "3d-without-axes": (_cli(_stack_tiff), 2, "needs axes"),
    "bad-output-suffix": (lambda d: [str(_stack_tiff(d)), str(d / "out.png")], 2, "must end in"),
    "cut-imagej": (_cli(_cut_imagej), 2, "images=2"),
    "cut-shaped": (_cli(_cut_shaped), 2, "cut short"),
    "text-as-tiff": (_cli(_text_as_tiff), 2, "not a readable TIFF"),
    "missing-chunk": (_cli(_missing_chunk, "--axes", "ZYX"), 2, "--missing-chunks fill"),
    "corrupt-chunk": (_cli(_corrupt_chunk, "--axes", "ZYX"), 2, "cannot be decoded"),
    "ngff-without-axes": (_cli(_ngff_02), 2, "pass axes= (CLI --axes)"),
    "ngff-missing-dataset": (_cli(_ngff_bad_path), 2, "dataset path 's0'"),
    "rgb-guess-needs-axes": (_cli(_rgb_guess), 2, "RGB(A)"),
    "pickle-model": (
        lambda d: [
            str(_stack_tiff(d)),
            str(d / "o.ome.zarr"),
            "--axes",
            "ZYX",
            "--model",
            f"dncnn-wne:{_evil_weights(d)}",
        ],
        2,
        "posix.system",
    ),
    "malformed-card": (
        lambda d: [
            str(_stack_tiff(d)),
            str(d / "o.ome.zarr"),
            "--axes",
            "ZYX",
            "--model",
            str(_card(d, "{}")),
        ],
        2,
        "not a napari-wne model card",
    ),
    # valid after all: exit 0
    "missing-chunk-filled": (
        _cli(_missing_chunk, "--axes", "ZYX", "--missing-chunks", "fill"),
        0,
        "denoised",
    ),
    "ngff-with-axes": (_cli(_ngff_02, "--axes", "ZYX"), 0, "(ZYX)"),
    "rgb-guess-with-axes": (_cli(_rgb_guess, "--axes", "ZYX"), 0, "(ZYX)"),
}


@pytest.mark.parametrize(("make", "code", "phrase"), CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_exit_code_and_message(tmp_path, monkeypatch, capsys, make, code, phrase):
    monkeypatch.chdir(tmp_path)
    argv = make(tmp_path)
    if "--model" not in argv:
        argv += ["--model", MODEL]
    assert main(["denoise", *argv, "--device", "cpu"]) == code
    captured = capsys.readouterr()
    assert phrase in (captured.err if code else captured.out)
    assert "Traceback" not in captured.err
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        (["--tile", "256.5"], "invalid int value: '256.5'"),
        (["--missing-chunks", "zeros"], "invalid choice: 'zeros'"),
        (["--dtype", "int8"], "invalid choice: 'int8'"),
        (["--norm", "local"], "invalid choice: 'local'"),
    ],
    ids=["float-tile", "bad-missing-chunks", "bad-dtype", "bad-norm"],
)
def test_cli_refuses_bad_option_values_before_reading(tmp_path, capsys, options, phrase):
    with pytest.raises(SystemExit) as exited:
        main(["denoise", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), *options])
    assert exited.value.code == 2
    assert phrase in capsys.readouterr().err


def test_cli_rgb_guess_with_axes_writes_the_raw_pages(tmp_path):
    source, target = _rgb_guess(tmp_path), tmp_path / "out.tif"
    assert main(["denoise", str(source), str(target), "--axes", "ZYX", "--model", MODEL]) == 0
    with tifffile.TiffFile(target) as tif:
        assert tif.series[0].axes == "ZYX" and tif.series[0].shape == (3, 32, 32)
