"""`napari_wne.sources`: inputs read whole or refused, axes from files, and overrides."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import tifffile
import zarr

from napari_wne.sources import (
    DEFAULT_MISSING_CHUNKS,
    MISSING_CHUNKS,
    CorruptInputError,
    MissingChunkError,
    open_source,
)

ALL = (slice(None),) * 3
STACK = np.arange(4 * 32 * 32, dtype=np.uint16).reshape(4, 32, 32) % 1000 + 1

TIFF_KINDS = {
    "imagej": dict(imagej=True, metadata={"axes": "ZYX"}),
    "ome": dict(ome=True, metadata={"axes": "ZYX"}, photometric="minisblack"),
    "shaped": dict(metadata={"axes": "ZYX"}, photometric="minisblack"),
    "plain-pages": dict(metadata=None, photometric="minisblack"),
    "zlib": dict(metadata={"axes": "ZYX"}, photometric="minisblack", compression="zlib"),
    "tiled": dict(metadata={"axes": "ZYX"}, photometric="minisblack", tile=(16, 16)),
    "bigtiff": dict(metadata={"axes": "ZYX"}, photometric="minisblack", bigtiff=True),
}


@pytest.fixture(autouse=True)
def _quiet(quiet_tifffile):
    """Every test here reads damaged TIFFs on purpose (see conftest.quiet_tifffile)."""


def _tiff(path, kind):
    tifffile.imwrite(path, STACK, **TIFF_KINDS[kind])
    return path


@pytest.mark.parametrize("kind", TIFF_KINDS)
def test_a_whole_tiff_reads_back_every_plane(tmp_path, kind):
    source = open_source(_tiff(tmp_path / "whole.tif", kind), axes="ZYX")
    np.testing.assert_array_equal(source.read(ALL), STACK)
    source.close()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.97])
@pytest.mark.parametrize("kind", TIFF_KINDS)
def test_a_tiff_cut_anywhere_is_refused_naming_the_file(tmp_path, kind, fraction):
    whole = _tiff(tmp_path / "whole.tif", kind).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: int(len(whole) * fraction)])
    with pytest.raises(CorruptInputError, match=r"cut\.tif") as error:
        open_source(cut, axes="ZYX")
    assert "truncated or corrupt" in str(error.value) or "not a readable TIFF" in str(error.value)


def test_a_cut_imagej_stack_names_its_metadata_and_the_pages_left(tmp_path):
    whole = _tiff(tmp_path / "whole.tif", "imagej").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) // 2])
    # tifffile alone reads this file as one 32x32 plane
    with tifffile.TiffFile(cut) as tif:
        assert tif.series[0].shape == (32, 32)
    with pytest.raises(CorruptInputError, match=r"images=4 but only 1 page"):
        open_source(cut)


def test_a_contiguous_tiff_cut_short_names_the_first_incomplete_page(tmp_path):
    whole = _tiff(tmp_path / "whole.tif", "shaped").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) - 3 * 32 * 32])  # pages 1 and 2 whole, 3 cut
    with pytest.raises(CorruptInputError, match=r"page 3 of 4 is cut short"):
        open_source(cut)


def test_tifffiles_rgb_guess_gives_way_to_axes(tmp_path):
    planes = STACK[:3]
    guessed = tmp_path / "guessed.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that it stores them as RGB
        tifffile.imwrite(guessed, planes)
    with pytest.raises(ValueError, match=r"RGB\(A\).*pass axes="):
        open_source(guessed)
    source = open_source(guessed, axes="ZYX")
    assert source.shape == (3, 32, 32) and source.axes == "ZYX"
    np.testing.assert_array_equal(source.read(ALL), planes)


def test_interleaved_samples_read_as_planes_with_axes(tmp_path):
    planes = STACK[:3]
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.moveaxis(planes, 0, -1), photometric="rgb")
    source = open_source(rgb, axes="cyx")
    assert source.shape == (3, 32, 32) and source.axes == "CYX"
    np.testing.assert_array_equal(source.read(ALL), planes)
    np.testing.assert_array_equal(source.read((1, slice(3, 9), 4)), planes[1, 3:9, 4])
    np.testing.assert_array_equal(source.read((slice(0, 2), 5)), planes[0:2, 5])


def test_axes_replace_what_an_imagej_file_says(tmp_path):
    path = _tiff(tmp_path / "stack.tif", "imagej")
    assert open_source(path).axes == "ZYX"
    assert open_source(path, axes="tyx").axes == "TYX"


# --- zarr chunks ---------------------------------------------------------------------------


def _store(tmp_path, zarr_format=3, shards=None):
    path = tmp_path / f"v{zarr_format}{'-sharded' if shards else ''}.zarr"
    extra = {"shards": shards} if shards else {}
    array = zarr.create_array(
        str(path), shape=(2, 32, 32), dtype="uint16", chunks=(1, 16, 16),
        zarr_format=zarr_format, **extra,
    )  # fmt: skip
    array[:] = STACK[:2]
    return path


STORES = {
    "v3": (dict(zarr_format=3), "c/1/0/1"),
    "v3-sharded": (dict(zarr_format=3, shards=(1, 32, 32)), "c/1/0/0"),
    "v2": (dict(zarr_format=2), "1.0.1"),
}
"""Layouts of a (2, 32, 32) store in (1, 16, 16) chunks, and a chunk (or shard) of plane 1."""
LOST = {"v3": np.s_[0:16, 16:32], "v3-sharded": np.s_[:, :], "v2": np.s_[0:16, 16:32]}
"""Where in plane 1 that chunk (or shard) lies."""


@pytest.mark.parametrize("layout", STORES)
def test_a_missing_chunk_is_an_error_naming_store_and_key(tmp_path, layout):
    options, key = STORES[layout]
    path = _store(tmp_path, **options)
    (path / key).unlink()
    source = open_source(path, axes="ZYX")
    np.testing.assert_array_equal(source.read((0,)), STACK[0])  # plane 0 is whole
    with pytest.raises(MissingChunkError, match=key) as error:
        source.read((1, slice(None), slice(None)))
    message = str(error.value)
    assert str(path) in message and "missing_chunks='fill'" in message
    assert "skips empty chunks" in message


@pytest.mark.parametrize("layout", STORES)
def test_missing_chunks_can_be_accepted_as_the_fill_value(tmp_path, layout):
    options, key = STORES[layout]
    path = _store(tmp_path, **options)
    (path / key).unlink()
    plane = open_source(path, axes="ZYX", missing_chunks="fill").read((1,))
    expected = STACK[1].copy()
    expected[LOST[layout]] = 0  # the fill value
    np.testing.assert_array_equal(plane, expected)


@pytest.mark.parametrize("layout", STORES)
def test_a_corrupt_chunk_names_store_and_key(tmp_path, layout):
    options, key = STORES[layout]
    path = _store(tmp_path, **options)
    (path / key).write_bytes(b"not a chunk" * 8)
    source = open_source(path, axes="ZYX")
    with pytest.raises(CorruptInputError, match=f"chunk {key} cannot be decoded"):
        source.read(ALL)


def test_a_zarr_array_object_is_checked_too(tmp_path):
    path = _store(tmp_path)
    (path / "c/0/1/1").unlink()
    source = open_source(zarr.open_array(str(path), mode="r"), axes="ZYX")
    with pytest.raises(MissingChunkError, match="c/0/1/1"):
        source.read((0, slice(20, 24), slice(20, 24)))
    np.testing.assert_array_equal(source.read((0, slice(0, 8))), STACK[0, :8])  # others fine


def test_the_missing_chunks_option_is_checked():
    assert DEFAULT_MISSING_CHUNKS in MISSING_CHUNKS == ("error", "fill")
    with pytest.raises(ValueError, match="missing_chunks must be one of 'error', 'fill'"):
        open_source(np.zeros((4, 4)), missing_chunks="zeros")


def test_a_numpy_read_error_is_not_dressed_as_a_corrupt_file():
    with pytest.raises(IndexError):
        open_source(np.zeros((4, 4))).read((9, 0))


# --- OME-NGFF metadata ---------------------------------------------------------------------


def _ngff(tmp_path, multiscales, shape=(2, 32, 32), array_path="0", zarr_format=2):
    path = tmp_path / "image.ome.zarr"
    shutil.rmtree(path, ignore_errors=True)
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    array = group.create_array(array_path, shape=shape, dtype="float32", chunks=shape)
    array[:] = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    group.attrs["multiscales"] = multiscales
    return path


@pytest.mark.parametrize("version", ["0.1", "0.2"])
def test_ngff_without_axes_asks_for_them_and_guesses_nothing(tmp_path, version):
    path = _ngff(tmp_path, [{"version": version, "datasets": [{"path": "0"}]}])
    with pytest.raises(ValueError, match=rf"OME-NGFF {version} metadata without axes.*axes="):
        open_source(path)
    assert open_source(path, axes="ZYX").axes == "ZYX"


@pytest.mark.parametrize(
    ("axes", "letters"),
    [
        (["t", "y", "x"], "TYX"),  # NGFF 0.3: names only
        (["z", "y", "x"], "ZYX"),
        ([{"name": "time", "type": "time"}, {"name": "y"}, {"name": "x"}], "TYX"),
        ([{"name": "channel", "type": "channel"}, {"name": "y"}, {"name": "x"}], "CYX"),
        ([{"name": "frame", "type": "time"}, {"name": "y"}, {"name": "x"}], "TYX"),
    ],
)
def test_ngff_axis_names_map_to_letters(tmp_path, axes, letters):
    path = _ngff(tmp_path, [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}])
    assert open_source(path).axes == letters


def test_an_unknown_ngff_axis_name_asks_for_axes(tmp_path):
    axes = [{"name": "angle", "type": "space"}, {"name": "y"}, {"name": "x"}]
    path = _ngff(tmp_path, [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}])
    with pytest.raises(ValueError, match=r"axis 'angle' .*pass axes="):
        open_source(path)
    assert open_source(path, axes="ZYX").axes == "ZYX"


def test_ngff_scale_and_units_follow_the_letters(tmp_path):
    axes = [{"name": "z", "unit": "micrometer"}, {"name": "y"}, {"name": "x"}]
    transforms = [{"type": "scale", "scale": [2.0, 0.5, 0.25]}]
    datasets = [{"path": "0", "coordinateTransformations": transforms}]
    path = _ngff(tmp_path, [{"version": "0.4", "axes": axes, "datasets": datasets}])
    source = open_source(path)
    assert source.scale == {"Z": 2.0, "Y": 0.5, "X": 0.25}
    assert source.units == {"Z": "micrometer"}


def test_a_missing_ngff_dataset_path_is_named(tmp_path):
    multiscales = [{"version": "0.4", "axes": ["z", "y", "x"], "datasets": [{"path": "s0"}]}]
    path = _ngff(tmp_path, multiscales, array_path="0")
    with pytest.raises(ValueError, match=r"dataset path 's0'.*arrays: \['0'\]"):
        open_source(path)


def test_ngff_05_nests_under_ome_and_zarr3_dimension_names_are_read(tmp_path):
    path = tmp_path / "v05.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", shape=(2, 8, 8), dtype="uint8", chunks=(1, 8, 8))[:] = 1
    axes = [{"name": "t", "type": "time"}, {"name": "y"}, {"name": "x"}]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{"axes": axes, "datasets": [{"path": "0"}]}],
    }
    assert open_source(path).axes == "TYX"
    named = zarr.create_array(
        str(tmp_path / "named.zarr"), shape=(2, 8, 8), dtype="uint8", chunks=(2, 8, 8),
        dimension_names=["time", "y", "x"],
    )  # fmt: skip
    named[:] = 1
    assert open_source(tmp_path / "named.zarr").axes == "TYX"
    assert json.loads((tmp_path / "named.zarr" / "zarr.json").read_text())["dimension_names"]
