"""The napari face of saving: the writer contribution and the Layers > Filter menu entry.

The viewer test needs a screen: ``xvfb-run -a python -m pytest tests/test_napari_writer.py``.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

npe2 = pytest.importorskip("npe2")
napari = pytest.importorskip("napari")

from napari_wne._reader import get_reader  # noqa: E402
from napari_wne._writer import write_image  # noqa: E402

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_wne" / "napari.yaml"


@pytest.fixture
def manifest():
    return npe2.PluginManifest.from_file(MANIFEST)


def test_the_manifest_offers_the_widget_under_layers_filter(manifest):
    (item,) = manifest.contributions.menus["napari/layers/filter"]
    (widget,) = manifest.contributions.widgets
    assert item.command == widget.command == "napari-wne.denoise_widget"


def test_the_manifest_declares_an_image_writer_for_our_suffixes(manifest):
    (writer,) = manifest.contributions.writers
    command = next(c for c in manifest.contributions.commands if c.id == writer.command)
    assert command.python_name == "napari_wne._writer:write_image"
    assert writer.layer_types == ["image"]
    assert {".ome.zarr", ".ome.tif", ".tif"} <= set(writer.filename_extensions)


def _layer(data, **kwargs):
    return napari.layers.Image(data, **kwargs).as_layer_data_tuple()


def _read(path: Path):
    data, meta, kind = get_reader(str(path))(str(path))[0]
    assert kind == "image"
    return np.asarray(data), meta


@pytest.mark.parametrize("name", ["saved.ome.zarr", "saved.ome.tif"])
def test_a_layer_reads_back_equal_with_its_scale_units_and_axes(tmp_path, rng, name):
    stack = rng.integers(0, 4000, (5, 33, 47), dtype=np.uint16)
    data, meta, _ = _layer(
        da.from_array(stack, chunks=(2, 16, 16)),  # lazy: copied block by block
        scale=(2.0, 0.25, 0.5), units=("um", "um", "um"), axis_labels=("z", "y", "x"),
        name="nuclei",
    )  # fmt: skip
    (written,) = write_image(str(tmp_path / name), data, meta)
    assert Path(written) == tmp_path / name
    back, back_meta = _read(tmp_path / name)
    assert back.dtype == stack.dtype and np.array_equal(back, stack)
    assert back_meta["scale"] == (2.0, 0.25, 0.5)
    assert back_meta["axis_labels"] == ("z", "y", "x")
    assert set(back_meta["units"]) == {"micrometer"}


def test_channels_and_time_are_written_in_ome_order(tmp_path, rng):
    movie = rng.normal(size=(2, 3, 20, 30)).astype(np.float32)  # C, T, Y, X as the layer has it
    data, meta, _ = _layer(movie, axis_labels=("c", "t", "y", "x"), scale=(1, 4, 1, 1))
    write_image(str(tmp_path / "m.ome.zarr"), data, meta)
    back, back_meta = _read(tmp_path / "m.ome.zarr")  # OME order T, C, Y, X; C split off
    assert back_meta["channel_axis"] == 1
    assert np.array_equal(back, np.moveaxis(movie, 0, 1))
    assert back_meta["scale"] == (4.0, 1.0, 1.0)
    assert back_meta["units"] == ("pixel",) * 3  # napari's "pixel" is not written as a unit


def test_imagej_tiff_keeps_the_pixel_size(tmp_path, rng):
    plane = rng.integers(0, 255, (40, 30), dtype=np.uint8)
    data, meta, _ = _layer(plane, scale=(0.5, 0.5), units=("um", "um"))
    write_image(str(tmp_path / "p.tif"), data, meta)
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        assert np.array_equal(tif.asarray(), plane)
        x_resolution = tif.pages[0].tags["XResolution"].value
        assert x_resolution[0] / x_resolution[1] == pytest.approx(2.0)  # pixels per micron


def test_an_existing_folder_is_never_replaced(tmp_path, rng):
    data, meta, _ = _layer(rng.random((8, 8)).astype(np.float32))
    folder = tmp_path / "taken.ome.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="choose another output path"):
        write_image(str(folder), data, meta)
    assert (folder / "notes.txt").read_text() == "mine"
    write_image(str(tmp_path / "ours.ome.zarr"), data, meta)
    with pytest.raises(FileExistsError, match="exists"):  # ours, but its layer may read it
        write_image(str(tmp_path / "ours.ome.zarr"), data, meta)


def test_rgb_and_unknown_suffixes_are_refused_with_a_reason(tmp_path, rng):
    data, meta, _ = _layer(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), rgb=True)
    with pytest.raises(ValueError, match="RGB"):
        write_image(str(tmp_path / "rgb.ome.zarr"), data, meta)
    data, meta, _ = _layer(rng.random((8, 8)))
    with pytest.raises(ValueError, match="must end in"):
        write_image(str(tmp_path / "plane.png"), data, meta)
    assert list(tmp_path.iterdir()) == []


def test_the_viewer_saves_through_the_plugin_and_lists_the_menu_entry(tmp_path, rng):
    from app_model import Application  # napari's menus live in its app model

    plane = rng.integers(0, 4000, (24, 36), dtype=np.uint16)
    viewer = napari.Viewer(show=False)
    try:
        viewer.add_image(plane, name="plane", scale=(0.3, 0.3), units="um")
        written = viewer.layers.save(str(tmp_path / "v.ome.zarr"), plugin="napari-wne")
        assert written == [str(tmp_path / "v.ome.zarr")]
        filter_menu = Application.get_app("napari").menus.get_menu("napari/layers/filter")
        commands = [getattr(item, "command", None) for item in filter_menu]
        assert "napari-wne.denoise_widget" in [c.id for c in commands if c is not None]
    finally:
        viewer.close()
    back, back_meta = _read(tmp_path / "v.ome.zarr")
    assert np.array_equal(back, plane) and back_meta["scale"] == (0.3, 0.3)


def test_a_tiff_layer_can_be_saved_over_the_file_it_reads_from(tmp_path, rng):
    plane = rng.integers(0, 4000, (30, 20), dtype=np.uint16)
    path = tmp_path / "again.ome.tif"
    write_image(str(path), *_layer(plane, scale=(0.5, 0.5), units=("um", "um"))[:2])
    lazy, meta, _ = get_reader(str(path))(str(path))[0]  # reads the file while it is replaced
    data, meta, _ = _layer(lazy, **{k: meta[k] for k in ("scale", "units", "axis_labels")})
    write_image(str(path), data, meta)
    back, back_meta = _read(path)
    assert np.array_equal(back, plane) and back_meta["scale"] == (0.5, 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.ome.tif"]  # no leftovers
