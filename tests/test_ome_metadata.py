"""What our outputs say about themselves: valid OME-Zarr 0.5, readable without a warning by
napari's readers, provenance with timing and device, and the input's channel names.

Every store is checked by yaozarrs' validator (metadata and structure), independently of
the models that built it; OME-TIFF metadata is read back with tifffile's OME parser, as
Bio-Formats would read it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaozarrs
import zarr

from napari_wne import denoise
from napari_wne.pipeline import Cancelled
from napari_wne.sources import open_source
from napari_wne.writers import OmeZarrOutput, save_image

SMALL = {"model": "unet-wne", "device": "cpu", "tile": 64, "halo": 8, "verbose": False}
SCALE = {"T": 2.0, "Z": 2.0, "Y": 0.5, "X": 0.25}
UNITS = {"T": "second", "Z": "micrometer", "Y": "micrometer", "X": "micrometer"}


def _image(shape, dtype=np.float32, seed=0) -> np.ndarray:
    data = np.random.default_rng(seed).normal(400, 30, size=shape)
    return data.astype(dtype)


def _attrs(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]


def _resumed(tmp_path: Path) -> Path:
    """A run stopped after its first block, then finished with resume=True."""
    image, out = _image((3, 40, 40), seed=5), tmp_path / "resumed.ome.zarr"
    stop = threading.Event()
    with pytest.raises(Cancelled):
        denoise(image, output=out, axes="TYX", block=32, cancel=stop,
                progress=lambda p: stop.set(), **SMALL)  # fmt: skip
    assert not OmeZarrOutput(out).is_complete()
    denoise(image, output=out, axes="TYX", block=32, resume=True, **SMALL)
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """One output of each kind we write."""
    folder = tmp_path_factory.mktemp("outputs")
    made = {}
    for name, shape, axes, dtype in [
        ("2d", (40, 48), "YX", np.float32),
        ("3d", (3, 40, 48), "ZYX", np.float32),
        ("tzyx", (2, 3, 32, 32), "TZYX", np.float32),
        ("czyx_uint16", (2, 3, 32, 32), "CZYX", np.uint16),
    ]:
        out = folder / f"{name}.ome.zarr"
        scale = {a: SCALE[a] for a in axes if a in SCALE}
        units = {a: UNITS[a] for a in axes if a in UNITS}
        denoise(_image(shape, dtype), output=out, axes=axes, scale=scale, units=units,
                dtype="input", instances="planes", **SMALL)  # fmt: skip
        made[name] = out
    made["resumed"] = _resumed(folder)
    made["saved"] = save_image(folder / "saved.ome.zarr", _image((2, 24, 24)), "CYX").path
    return made


@pytest.mark.parametrize("kind", ["2d", "3d", "tzyx", "czyx_uint16", "resumed", "saved"])
def test_every_output_is_valid_ome_zarr(outputs, kind):
    out = outputs[kind]
    yaozarrs.validate_zarr_store(out)  # metadata and structure (arrays, shapes, dims)
    assert sorted(p.name for p in out.iterdir()) == ["0", "zarr.json"]  # nothing else inside
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())


def test_axes_units_and_scale_are_what_the_input_said(outputs):
    image = _attrs(outputs["tzyx"])["ome"]["multiscales"][0]
    assert [(a["name"], a["type"], a.get("unit")) for a in image["axes"]] == [
        ("t", "time", "second"), ("z", "space", "micrometer"), ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]  # fmt: skip
    (dataset,) = image["datasets"]
    assert dataset["coordinateTransformations"] == [{"type": "scale", "scale": [2, 2, 0.5, 0.25]}]
    assert zarr.open_array(str(outputs["czyx_uint16"] / "0")).dtype == np.uint16


@pytest.mark.parametrize("kind", ["3d", "czyx_uint16"])
def test_napari_readers_open_our_output_without_a_warning(outputs, kind):
    from napari_builtins.io._read import napari_get_reader as builtin_reader
    from napari_ome_zarr._reader import napari_get_reader as ome_zarr_reader

    path = str(outputs[kind])
    expected = zarr.open_array(str(outputs[kind] / "0"), mode="r")[:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stray folder in the store makes zarr warn
        (builtin,) = builtin_reader(path)(path)
        layers = ome_zarr_reader(path)(path)
    np.testing.assert_array_equal(np.asarray(builtin[0][0]), expected)
    data, meta = layers[0][0], layers[0][1]
    np.testing.assert_array_equal(np.asarray(data[0]), expected)
    if kind == "3d":
        assert list(meta["scale"]) == [2.0, 0.5, 0.25]


def test_provenance_has_timing_and_device(outputs):
    before = dt.datetime.now().astimezone()
    out = outputs["2d"]
    provenance = _attrs(out)["napari_wne"]["provenance"]
    assert provenance["model"] == "unet-wne" and len(provenance["weights_sha256"]) == 64
    assert provenance["device"] == "cpu" and provenance["torch_version"] == torch.__version__
    assert provenance["precision"] in ("float32", "bfloat16", "float16")
    assert provenance["settings"]["halo"] == 8 and provenance["input_fingerprint"]["sha1"]
    timing = provenance["timing"]
    started = dt.datetime.fromisoformat(timing["started"])
    finished = dt.datetime.fromisoformat(timing["finished"])
    assert started <= finished <= before and timing["resumed"] is None
    assert 0 < timing["wall_seconds"] <= (before - started).total_seconds() + 1


def test_a_resumed_run_keeps_its_first_start(outputs):
    timing = _attrs(outputs["resumed"])["napari_wne"]["provenance"]["timing"]
    first = dt.datetime.fromisoformat(timing["started"])
    resumed = dt.datetime.fromisoformat(timing["resumed"])
    assert first <= resumed <= dt.datetime.fromisoformat(timing["finished"])


def test_ome_tiff_provenance_has_timing_and_device(tmp_path):
    out = denoise(_image((40, 48)), output=tmp_path / "p.ome.tif", **SMALL).path
    with tifffile.TiffFile(out) as tif:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
    values = ome["StructuredAnnotations"]["MapAnnotation"]["Value"]["M"]
    provenance = {m["K"]: m["value"] for m in values}
    assert provenance["torch_version"] == torch.__version__ and provenance["device"] == "cpu"
    timing = json.loads(provenance["timing"])
    assert timing["wall_seconds"] > 0 and timing["started"] <= timing["finished"]


# --- channel names ---------------------------------------------------------------------------


def _named_ome_zarr(path: Path, data: np.ndarray, names: list[str]) -> Path:
    """An OME-Zarr 0.5 input, as another tool writes it, naming its channels."""
    group = zarr.create_group(str(path), zarr_format=3)
    group.create_array("0", data=data, dimension_names=["c", "y", "x"])
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "yx"
    ]
    scale = [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]
    window = {"start": 0, "end": 1000, "min": 0, "max": 65535}
    channels = [{"label": n, "color": "00FF00", "window": window} for n in names]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}
        ],
        "omero": {"channels": channels},
    }
    return path


def test_ome_zarr_channel_names_reach_both_outputs(tmp_path):
    data = _image((2, 40, 48))
    source = _named_ome_zarr(tmp_path / "in.ome.zarr", data, ["DAPI", "GFP"])
    assert open_source(source).channel_names == ("DAPI", "GFP")
    zarr_out = denoise(source, output=tmp_path / "out.ome.zarr", **SMALL).path
    yaozarrs.validate_zarr_store(zarr_out)
    omero = _attrs(zarr_out)["ome"]["omero"]
    assert [c["label"] for c in omero["channels"]] == ["DAPI", "GFP"]
    pixels = zarr.open_array(str(zarr_out / "0"), mode="r")[:]
    for channel, plane in zip(omero["channels"], pixels, strict=True):
        window = channel["window"]  # a sample of the result's own range, for display
        assert plane.min() <= window["start"] < window["end"] <= plane.max()
    from napari_ome_zarr._reader import napari_get_reader

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (layer,) = napari_get_reader(str(zarr_out))(str(zarr_out))
    assert [name.split(": ")[-1] for name in layer[1]["name"]] == ["DAPI", "GFP"]
    tiff_out = denoise(source, output=tmp_path / "out.ome.tif", **SMALL).path
    with tifffile.TiffFile(tiff_out) as tif:
        pixels_meta = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert [c["Name"] for c in pixels_meta["Channel"]] == ["DAPI", "GFP"]


def test_ome_tiff_channel_names_reach_the_output(tmp_path):
    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, _image((3, 32, 32)), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["a", "b", "c"]}})  # fmt: skip
    out = denoise(source, output=tmp_path / "out.ome.zarr", **SMALL).path
    assert [c["label"] for c in _attrs(out)["ome"]["omero"]["channels"]] == ["a", "b", "c"]
    again = denoise(out, output=tmp_path / "again.ome.tif", **SMALL).path  # and on, via zarr
    with tifffile.TiffFile(again) as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert [c["Name"] for c in pixels["Channel"]] == ["a", "b", "c"]


def test_names_that_no_longer_fit_are_dropped(tmp_path):
    source = tmp_path / "in.ome.tif"
    tifffile.imwrite(source, _image((3, 32, 32)), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["a", "b", "c"]}})  # fmt: skip
    assert open_source(source, axes="ZYX").channel_names is None  # C read as Z: no names
    out = denoise(source, output=tmp_path / "z.ome.zarr", axes="ZYX", **SMALL).path
    assert "omero" not in _attrs(out)["ome"]  # no names: no omero block at all
    unnamed = tmp_path / "unnamed.ome.zarr"
    _named_ome_zarr(unnamed, _image((2, 32, 32)), ["only one"])  # 1 label for 2 channels
    assert open_source(unnamed).channel_names is None
