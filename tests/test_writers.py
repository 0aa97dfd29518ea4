"""The writers: one per output format, chosen by suffix, and files other tools can read.

Each test writes real files through `denoise` (or `write_tiff`) with a small untrained or
shipped model on the CPU, and reads them back with tifffile and zarr, the way Fiji
(Bio-Formats), QuPath or napari would: OME-XML parsed by tifffile, ImageJ tags as ImageJ
writes them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_wne import denoise
from napari_wne._reader import get_reader
from napari_wne.models import MODELS
from napari_wne.modes import OUTPUT_FORMAT, SUFFIXES
from napari_wne.pipeline import Cancelled
from napari_wne.sources import open_source
from napari_wne.writers import (
    DenoisedImage,
    OmeZarrWriter,
    OutputPlan,
    TiffWriter,
    writer_for,
)
from napari_wne.writers.tiff import write_tiff

SMALL = {"model": "unet-wne", "device": "cpu", "tile": 64, "halo": 8, "verbose": False}
SCALE = {"Z": 2.0, "Y": 0.5, "X": 0.25}
UNITS = {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """Two channels of a three-plane stack: C, Z, Y, X."""
    rng = np.random.default_rng(3)
    return rng.normal(100, 10, size=(2, 3, 40, 48)).astype(np.float32)


def _run(stack, output, **extra):
    return denoise(
        stack, output=output, axes="CZYX", instances="planes", block=24, scale=SCALE,
        units=UNITS, **SMALL, **extra,
    )  # fmt: skip


def _ome(path: Path) -> dict:
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        return tifffile.xml2dict(tif.ome_metadata)["OME"]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.zarr", "ome-zarr"), ("a.ome.zarr", "ome-zarr"), ("a.ome.tif", "ome-tiff"),
     ("a.OME.TIFF", "ome-tiff"), ("a.tif", "imagej-tiff"), ("a.b.tiff", "imagej-tiff")],
)  # fmt: skip
def test_the_suffix_picks_the_writer(name, kind):
    writer = writer_for(name)
    assert writer.format == kind
    assert isinstance(writer, OmeZarrWriter if kind == "ome-zarr" else TiffWriter)
    assert kind in OUTPUT_FORMAT.values and any(name.lower().endswith(s) for s in SUFFIXES[kind])


@pytest.mark.parametrize("name", ["a.png", "a", "a.zarr.bak", ".tif"])
def test_an_unknown_suffix_is_refused_with_the_known_ones(name):
    with pytest.raises(ValueError, match=r"\.ome\.tif.*\.tif or \.tiff"):
        writer_for(name)


def test_ome_tiff_carries_sizes_axes_channels_and_provenance(stack, tmp_path):
    result = _run(stack, tmp_path / "out.ome.tif")
    assert isinstance(result, DenoisedImage) and result.format == "ome-tiff"
    ome = _ome(result.path)
    pixels = ome["Image"]["Pixels"]
    assert pixels["DimensionOrder"] == "XYZCT"  # Bio-Formats' name for axes C, Z, Y, X
    assert (pixels["SizeC"], pixels["SizeZ"], pixels["SizeY"], pixels["SizeX"]) == (2, 3, 40, 48)
    assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeY"], pixels["PhysicalSizeZ"]) == (
        0.25, 0.5, 2.0,
    )  # fmt: skip
    assert {pixels[f"PhysicalSize{a}Unit"] for a in "XYZ"} == {"µm"}
    assert [c["Name"] for c in pixels["Channel"]] == ["image C0 denoised", "image C1 denoised"]
    annotation = ome["StructuredAnnotations"]["MapAnnotation"]
    assert annotation["Namespace"] == "napari-wne/provenance"
    provenance = {m["K"]: m["value"] for m in annotation["Value"]["M"]}
    weights = MODELS["unet-wne"].weights_path
    assert provenance["model"] == "unet-wne" and provenance["software"] == "napari-wne"
    assert provenance["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert '"norm": "tile"' in provenance["settings"] and '"halo": 8' in provenance["settings"]
    assert provenance["precision"] in ("float32", "bfloat16", "float16")  # what it ran in
    assert '"sha1"' in provenance["input_fingerprint"]  # which input, for later checks
    # the same pixels as the OME-Zarr writer and the in-memory result
    in_memory = denoise(stack, axes="CZYX", instances="planes", block=24, **SMALL)
    np.testing.assert_array_equal(tifffile.imread(result.path), in_memory)
    np.testing.assert_array_equal(result.to_dask().compute(), in_memory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.tif"]  # staging removed


def test_ome_tiff_is_read_back_with_its_scale_by_our_sources_and_reader(stack, tmp_path):
    result = _run(stack, tmp_path / "back.ome.tif")
    source = open_source(result.path)
    assert source.axes == "CZYX" and source.scale == SCALE
    assert source.units == UNITS
    reader = get_reader(str(result.path))
    assert reader is not None
    [(data, meta, kind)] = reader(str(result.path))
    assert kind == "image" and meta["channel_axis"] == 0 and data.shape == stack.shape
    assert meta["scale"] == (2.0, 0.5, 0.25) and meta["axis_labels"] == ("z", "y", "x")
    foreign = tmp_path / "foreign.ome.tif"  # an OME-TIFF we did not write: not claimed
    tifffile.imwrite(foreign, stack[0], ome=True, metadata={"axes": "ZYX"})
    assert get_reader(str(foreign)) is None


def test_imagej_tiff_is_a_calibrated_hyperstack(stack, tmp_path):
    result = _run(stack, tmp_path / "out.tif")
    assert result.format == "imagej-tiff" and result.axes == "ZCYX"  # ImageJ's order
    with tifffile.TiffFile(result.path) as tif:
        assert tif.is_imagej
        meta = tif.imagej_metadata
        assert (meta["channels"], meta["slices"], meta["hyperstack"]) == (2, 3, True)
        assert meta["unit"] == "micron" and meta["spacing"] == 2.0
        assert "weights_sha256 = " in meta["Info"] and "model = unet-wne" in meta["Info"]
        x_res, y_res = (tif.pages[0].tags[t].value for t in ("XResolution", "YResolution"))
        assert x_res[0] / x_res[1] == 4.0 and y_res[0] / y_res[1] == 2.0  # pixels per micron
        assert tif.series[0].axes == "ZCYX"
        pixels = tif.series[0].asarray()
    source = open_source(result.path)
    assert source.scale == SCALE and source.units == UNITS  # what Fiji's calibration says
    in_memory = denoise(stack, axes="CZYX", instances="planes", block=24, **SMALL)
    np.testing.assert_array_equal(pixels, in_memory.transpose(1, 0, 2, 3))


def test_imagej_tiff_refuses_a_type_imagej_cannot_hold_before_any_work(tmp_path, rng):
    image = rng.integers(0, 2**20, size=(32, 32)).astype(np.int32)
    with pytest.raises(ValueError, match=r"ImageJ TIFF holds uint8, uint16 or float32.*\.ome\.tif"):
        denoise(image, output=tmp_path / "out.tif", dtype="input", **SMALL)
    assert list(tmp_path.iterdir()) == []
    written = denoise(image, output=tmp_path / "out.ome.tif", dtype="input", **SMALL)
    assert tifffile.imread(written.path).dtype == np.int32  # OME-TIFF holds it


class _PlaneCounter:
    """A real array that remembers the largest read it served (in pixels)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.largest = 0

    def __getitem__(self, index):
        values = self.array[index]
        self.largest = max(self.largest, values.size)
        return values


def test_tiffs_are_streamed_one_plane_at_a_time(tmp_path, rng):
    data = rng.normal(size=(3, 4, 16, 20)).astype(np.float32)  # T, Z, Y, X
    plan = OutputPlan(
        shape=data.shape, axes="TZYX", dtype=data.dtype, block={}, blocks=(), record={},
        fingerprint=None, scale={"T": 1.5}, units={"T": "second"},
    )  # fmt: skip
    for kind, name in (("ome-tiff", "s.ome.tif"), ("imagej-tiff", "s.tif")):
        source = _PlaneCounter(data)
        write_tiff(tmp_path / name, source, plan, kind)
        assert source.largest == 16 * 20  # never more than one plane in memory
        np.testing.assert_array_equal(tifffile.imread(tmp_path / name), data)
    assert _ome(tmp_path / "s.ome.tif")["Image"]["Pixels"]["TimeIncrement"] == 1.5
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert tif.imagej_metadata["finterval"] == 1.5


def test_a_cancelled_tiff_run_resumes_from_its_staging(tmp_path, rng):
    image = rng.normal(100, 10, size=(64, 64)).astype(np.float32)
    target = tmp_path / "out.ome.tif"
    seen = []
    with pytest.raises(Cancelled):
        denoise(image, output=target, block=16, cancel=lambda: len(seen) >= 3,
                progress=seen.append, **SMALL)  # fmt: skip
    staging = tmp_path / ".out.ome.tif.partial.ome.zarr"
    assert not target.exists() and staging.is_dir()  # resumable, not half a TIFF
    with pytest.raises(FileExistsError, match="resume"):
        denoise(image, output=target, block=16, **SMALL)
    progress = []
    result = denoise(image, output=target, block=16, resume=True, progress=progress.append,
                     **SMALL)  # fmt: skip
    assert progress[0].done > 1  # the blocks finished before the cancel were kept
    np.testing.assert_array_equal(tifffile.imread(result.path), denoise(image, block=16, **SMALL))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.tif"]
    again = denoise(image, output=target, block=16, resume=True, **SMALL)  # finished: kept
    assert again.path == target


def test_a_failed_tiff_run_leaves_nothing_behind(tmp_path):
    image = np.ones((32, 32), np.float32)
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        denoise(image, output=tmp_path / "bad.tif", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_a_tiff_output_never_replaces_a_folder(tmp_path):
    folder = tmp_path / "mine.tif"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="folder or a link"):
        denoise(np.ones((16, 16), np.float32), output=folder, overwrite=True, **SMALL)
    assert (folder / "keep.txt").read_text() == "mine"


def test_a_denoised_image_is_its_path_as_a_string(tmp_path):
    result = denoise(np.ones((16, 16), np.float32), output=tmp_path / "r.ome.zarr", **SMALL)
    assert str(result) == os.fspath(result) == str(tmp_path / "r.ome.zarr")
    assert zarr.open_group(str(result), mode="r")["0"].shape == (16, 16)
    assert f"{result}".endswith("r.ome.zarr")


def test_the_ome_zarr_records_its_provenance(tmp_path):
    result = denoise(np.ones((16, 16), np.float32), output=tmp_path / "p.ome.zarr", **SMALL)
    attrs = zarr.open_group(str(result), mode="r").attrs["napari_wne"]
    assert attrs["complete"] and attrs["provenance"]["model"] == "unet-wne"
    assert len(attrs["provenance"]["weights_sha256"]) == 64
