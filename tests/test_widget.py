"""The "WNE Denoise" widget, opened through the manifest as a user would, in a real viewer.

Run under a virtual screen: ``xvfb-run -a python -m pytest tests/test_widget.py``. The
results are compared with `napari_wne.denoise` called directly, so the widget is checked
to be a thin shell over it (same data path, right axes) and not only to "add a layer".
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
from napari.layers import Image
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_wne import DEFAULT_MODEL, MODELS, denoise
from napari_wne._widget import DenoiseWidget, layer_axes
from napari_wne.writers import OmeZarrOutput

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")

TIMEOUT_MS = 120_000  # two shared CPU cores: generous, the runs themselves take seconds
# The fixture `viewer_widget` (a viewer with the widget docked, on the CPU) is in conftest.py;
# the helpers below are shared by the other tests/test_widget_*.py files.


def notes_since(start: int, severity: NotificationSeverity | None = None) -> list[str]:
    records = notification_manager.records[start:]
    return [str(n.message) for n in records if severity is None or n.severity == severity]


def run(widget: DenoiseWidget, qtbot) -> None:
    """Press Denoise and wait for the worker to finish."""
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)


def shown(label) -> bool:
    """Whether a note of the widget is on (the viewer window itself is not shown in tests)."""
    return not label.native.isHidden() and bool(label.value)


def expected(data: np.ndarray, axes: str, **kwargs) -> np.ndarray:
    return np.asarray(
        denoise(data, DEFAULT_MODEL, axes=axes, device="cpu", verbose=False, **kwargs)
    )


def test_widget_is_contributed_by_the_manifest():
    npe2 = pytest.importorskip("npe2")
    manager = npe2.PluginManager()
    manager.discover()
    manifest = manager.get_manifest("napari-wne")
    (widget,) = manifest.contributions.widgets
    assert widget.display_name == "WNE Denoise"
    command = next(c for c in manifest.contributions.commands if c.id == widget.command)
    assert command.python_name == "napari_wne._widget:DenoiseWidget"


@pytest.mark.parametrize(
    ("shape", "labels", "axes"),
    [
        ((8, 8), None, "YX"),
        ((3, 8, 8), None, "ZYX"),
        ((3, 8, 8), ("t", "y", "x"), "TYX"),
        ((3, 8, 8), ("Time", "-2", "-1"), "TYX"),
        ((3, 8, 8), ("c", "y", "x"), "CYX"),
        ((2, 3, 8, 8), None, "TZYX"),
        ((2, 3, 8, 8), ("t", "z", "y", "x"), "TZYX"),
        ((2, 3, 8, 8), ("z", "t", "y", "x"), "ZTYX"),
        ((3, 8, 8), ("t", "t", "x"), "ZYX"),  # contradictory labels are ignored
    ],
)
def test_axes_come_from_the_layer(shape, labels, axes):
    kwargs = {} if labels is None else {"axis_labels": labels}
    assert layer_axes(Image(np.zeros(shape, np.uint8), **kwargs)) == axes


def test_denoises_a_2d_layer_with_its_scale_units_and_labels(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (64, 64)).astype(np.uint16)
    layer = viewer.add_image(
        data, name="cells", scale=(0.5, 0.25), translate=(10.0, -3.0),
        units=("um", "um"), axis_labels=("y", "x"),
    )  # fmt: skip
    widget.image.value = layer
    start = len(notification_manager.records)
    run(widget, qtbot)

    assert not notes_since(start, NotificationSeverity.ERROR)
    result = viewer.layers[f"cells denoised ({DEFAULT_MODEL})"]
    assert isinstance(result.data, np.ndarray)
    assert result.data.shape == data.shape and result.data.dtype == np.float32
    np.testing.assert_array_equal(result.scale, layer.scale)
    np.testing.assert_array_equal(result.translate, layer.translate)
    assert tuple(result.units) == tuple(layer.units)
    assert tuple(result.axis_labels) == ("y", "x")
    np.testing.assert_allclose(result.data, expected(data, "YX"), rtol=1e-4, atol=1e-3)
    # WNE output is in the input's units: the same contrast limits, so no contrast boost.
    np.testing.assert_allclose(result.contrast_limits, layer.contrast_limits)
    if not MODELS[DEFAULT_MODEL].trained:
        warnings = notes_since(start, NotificationSeverity.WARNING)
        assert any("no trained weights" in w for w in warnings), warnings


def test_denoises_a_volume_as_zyx(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (4, 48, 48)).astype(np.uint16)
    layer = viewer.add_image(data, name="volume", scale=(2.0, 0.5, 0.5))
    widget.image.value = layer
    widget.dtype.value = "input"
    run(widget, qtbot)

    result = viewer.layers[f"volume denoised ({DEFAULT_MODEL})"]
    assert result.data.shape == data.shape and result.data.dtype == np.uint16
    np.testing.assert_array_equal(result.scale, (2.0, 0.5, 0.5))
    want = expected(data, "ZYX", dtype="input")
    assert np.abs(result.data.astype(int) - want.astype(int)).max() <= 1


def test_volumes_plane_by_plane_for_2d_models(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (3, 48, 48)).astype(np.uint16)
    widget.image.value = viewer.add_image(data, name="planes", axis_labels=("z", "y", "x"))
    widget.volumes.value = "planes"
    run(widget, qtbot)

    result = viewer.layers[f"planes denoised ({DEFAULT_MODEL})"]
    assert tuple(result.axis_labels) == ("z", "y", "x")
    for z in range(3):  # each plane exactly as the 2D image alone
        np.testing.assert_allclose(result.data[z], expected(data[z], "YX"), rtol=1e-4, atol=1e-3)


def test_multiscale_layer_uses_level_0_and_says_so(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (64, 64)).astype(np.uint16)
    widget.image.value = viewer.add_image([data, data[::2, ::2]], name="pyramid", multiscale=True)
    start = len(notification_manager.records)
    run(widget, qtbot)

    result = viewer.layers[f"pyramid denoised ({DEFAULT_MODEL})"]
    assert not result.multiscale and result.data.shape == (64, 64)
    infos = notes_since(start, NotificationSeverity.INFO)
    assert any("multiscale" in n and "level 0" in n for n in infos), infos


def test_denoises_a_time_lapse_frame_by_frame(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (3, 64, 64)).astype(np.float32)
    layer = viewer.add_image(data, name="movie", axis_labels=("t", "y", "x"), scale=(5.0, 1.0, 1.0))
    widget.image.value = layer
    run(widget, qtbot)

    result = viewer.layers[f"movie denoised ({DEFAULT_MODEL})"]
    assert result.data.shape == data.shape
    np.testing.assert_array_equal(result.scale, (5.0, 1.0, 1.0))
    assert tuple(result.axis_labels) == ("t", "y", "x")
    # Each frame on its own (TYX), not the stack as one volume (ZYX).
    np.testing.assert_allclose(result.data, expected(data, "TYX"), rtol=1e-4, atol=1e-3)


def test_cancel_adds_no_layer(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (4, 128, 128)).astype(np.uint16)
    viewer.add_image(data, name="long", axis_labels=("t", "y", "x"))
    widget.image.value = viewer.layers["long"]
    widget.tile.value, widget.overlap.value, widget.block.value = 64, 16, 16  # 4 x 64 blocks
    widget.progress.changed.connect(lambda done: done >= 1 and widget.cancel_button.native.click())
    start = len(notification_manager.records)
    run(widget, qtbot)

    assert [layer.name for layer in viewer.layers] == ["long"]
    assert widget.progress.value < widget.progress.max // 2  # stopped early, of 256 blocks
    infos = notes_since(start, NotificationSeverity.INFO)
    assert any("cancelled" in n and "no layer added" in n for n in infos), infos
    assert not notes_since(start, NotificationSeverity.ERROR)
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_rgb_layer_is_reported_not_raised(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    viewer.add_image(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), name="photo", rgb=True)
    widget.image.value = viewer.layers["photo"]
    start = len(notification_manager.records)
    run(widget, qtbot)

    errors = notes_since(start, NotificationSeverity.ERROR)
    assert len(errors) == 1 and "RGB" in errors[0], errors
    assert len(viewer.layers) == 1
    assert "RGB" in widget.status.value


def test_lazy_layer_needs_an_output_folder(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(da.zeros((2, 32, 32), chunks=(1, 32, 32), dtype=np.uint16), name="lazy")
    widget.image.value = viewer.layers["lazy"]
    start = len(notification_manager.records)
    run(widget, qtbot)

    errors = notes_since(start, NotificationSeverity.ERROR)
    assert len(errors) == 1 and "Output folder" in errors[0], errors
    assert len(viewer.layers) == 1


def test_dask_layer_goes_through_ome_zarr_resumably(viewer_widget, qtbot, rng, tmp_path):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (2, 128, 128)).astype(np.uint16)
    lazy = da.from_array(data, chunks=(1, 64, 64))
    viewer.add_image(lazy, name="big one", axis_labels=("t", "y", "x"), scale=(3.0, 0.5, 0.5))
    widget.image.value = viewer.layers["big one"]
    widget.output_folder.value = tmp_path
    widget.tile.value, widget.overlap.value, widget.block.value = 64, 16, 16  # 2 x 64 blocks

    # Cancelled: no layer, and an unfinished (resumable) OME-Zarr on disk.
    cancel = lambda done: done >= 1 and widget.cancel_button.native.click()  # noqa: E731
    widget.progress.changed.connect(cancel)
    run(widget, qtbot)
    widget.progress.changed.disconnect(cancel)
    path = tmp_path / f"big_one_denoised_{DEFAULT_MODEL}.ome.zarr"
    assert len(viewer.layers) == 1
    assert path.is_dir() and not OmeZarrOutput(path).is_complete()

    # Pressed again: it resumes into the same store and the result comes back lazily.
    start = len(notification_manager.records)
    run(widget, qtbot)
    assert not notes_since(start, NotificationSeverity.ERROR)
    assert OmeZarrOutput(path).is_complete()
    result = viewer.layers[f"big one denoised ({DEFAULT_MODEL})"]
    assert isinstance(result.data, da.Array)
    assert result.data.shape == data.shape
    np.testing.assert_array_equal(result.scale, (3.0, 0.5, 0.5))
    want = expected(data, "TYX", tile=64, halo=16)
    np.testing.assert_allclose(result.data.compute(), want, rtol=1e-4, atol=1e-3)

    # A finished output is never resumed into: a second run gets a numbered name.
    run(widget, qtbot)
    assert (tmp_path / f"big_one_denoised_{DEFAULT_MODEL}-2.ome.zarr").is_dir()


def test_large_numpy_layer_is_written_to_disk(viewer_widget, qtbot, rng, tmp_path, monkeypatch):
    monkeypatch.setattr("napari_wne._widget.runner.LARGE_LAYER_BYTES", 1000)
    viewer, widget = viewer_widget
    data = rng.poisson(30, (64, 64)).astype(np.uint16)
    widget.image.value = viewer.add_image(data, name="huge")
    widget.output_folder.value = tmp_path
    run(widget, qtbot)

    result = viewer.layers[f"huge denoised ({DEFAULT_MODEL})"]
    assert isinstance(result.data, da.Array)
    assert OmeZarrOutput(tmp_path / f"huge_denoised_{DEFAULT_MODEL}.ome.zarr").is_complete()
    np.testing.assert_allclose(result.data.compute(), expected(data, "YX"), rtol=1e-4, atol=1e-3)


def test_samples_open_in_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-wne", "nuclei_3d")
    original, noisy = viewer.layers
    assert original.data.shape == noisy.data.shape == (30, 256, 256)
    assert noisy.data.dtype == original.data.dtype == np.uint16
    np.testing.assert_allclose(noisy.scale, (0.29, 0.26, 0.26))
    assert not np.array_equal(noisy.data, original.data)
    # Poisson-Gaussian: the noise grows with the signal.
    residual = noisy.data.astype(float) - original.data
    dim, bright = original.data < 4000, original.data > 20000
    assert residual[bright].std() > 1.5 * residual[dim].std()
    assert abs(residual[bright].mean()) < 0.02 * original.data[bright].mean()
    viewer.open_sample("napari-wne", "nuclei_2d")
    assert viewer.layers[-1].data.shape == (512, 512)


def test_napari_opens_a_denoised_ome_zarr_with_its_scale(make_napari_viewer, tmp_path, rng):
    stack = rng.poisson(30, size=(2, 48, 40)).astype(np.uint16)
    source = tmp_path / "cells.tif"
    tifffile.imwrite(source, stack, imagej=True, metadata={"axes": "ZYX", "spacing": 2.0},
                     resolution=(4, 4))  # fmt: skip
    written = denoise(source, verbose=False)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(written.path), plugin="napari-wne")
    assert isinstance(layer.data, da.Array) and layer.data.shape == stack.shape
    np.testing.assert_allclose(layer.scale, (2.0, 0.25, 0.25))
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    assert str(layer.units[-1]) == "micrometer"
    np.testing.assert_array_equal(layer.data.compute(), written.to_dask().compute())


def test_a_model_trained_by_the_user_can_be_picked_as_a_folder(viewer_widget, qtbot, tmp_path, rng):
    from napari_wne.training import TrainConfig, train

    folder = tmp_path / "my-model"
    config = TrainConfig(folder, backbone="dncnn", backbone_kwargs={"depth": 3, "features": 8},
                         steps=2, batch_size=2, patch_size=16, threads=1, device="cpu")  # fmt: skip
    train(config, clean_images=[rng.random((32, 32)).astype(np.float32)])
    viewer, widget = viewer_widget
    data = rng.poisson(30, (48, 48)).astype(np.uint16)
    widget.image.value = viewer.add_image(data, name="mine")
    widget.model_folder.value = folder
    assert "dncnn trained" in widget.model_info.value
    run(widget, qtbot)
    result = viewer.layers["mine denoised (my-model)"]
    want = denoise(data, str(folder), device="cpu", verbose=False)
    np.testing.assert_allclose(result.data, want, rtol=1e-5, atol=1e-4)
