"""A full run: progress tile by tile, the settings locked while it runs and usable again
after it ends (also after an error), and a status line with device, precision and speed.

Run under a virtual screen: ``xvfb-run -a python -m pytest tests/test_widget_runner.py``.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_wne import DEFAULT_MODEL
from napari_wne.precision import resolve_precision
from test_widget import TIMEOUT_MS, expected, notes_since, run

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


def _locked(widget) -> dict[str, bool]:
    fields = widget.form.settings_fields()
    return {
        "settings": not any(field.enabled for field in fields),
        "denoise": not widget.run_button.enabled,
        "cancel": widget.cancel_button.enabled,
    }


def test_a_single_2d_plane_shows_progress_tile_by_tile(viewer_widget, qtbot, rng, monkeypatch):
    # One tile per forward pass, as with the default 1280-px tiles on a large plane.
    monkeypatch.setattr("napari_wne.devices.CPU_BATCH_VOXELS", 1)
    viewer, widget = viewer_widget
    data = rng.poisson(30, (160, 160)).astype(np.uint16)
    viewer.add_image(data, name="plane")
    widget.tile.value, widget.overlap.value = "64", "8"  # one block, several tiles
    seen, statuses = [], []
    widget.progress.changed.connect(seen.append)
    widget.progress.changed.connect(lambda _: statuses.append(widget.status.value))
    run(widget, qtbot)

    steps = widget.progress.max
    assert seen[-1] == steps
    partial = [v for v in seen if 0 < v < steps]
    assert len(partial) >= 3 and partial == sorted(partial)
    assert any("block 1 of 1, tile 1 of" in s for s in statuses), statuses
    tiles = int(next(s for s in statuses if "tile 1 of" in s).split("tile 1 of ")[1].split()[0])
    assert tiles >= 4
    result = viewer.layers[f"plane denoised ({DEFAULT_MODEL})"]
    np.testing.assert_allclose(result.data, expected(data, "YX", tile=64, halo=8), atol=1e-3)


def test_settings_are_locked_during_a_run_and_unlocked_after(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    viewer.add_image(rng.poisson(30, (4, 64, 64)).astype(np.uint16), name="movie",
                     axis_labels=("t", "y", "x"))  # fmt: skip
    during = []
    widget.progress.changed.connect(lambda _value: during.append(_locked(widget)))
    run(widget, qtbot)
    assert during and all(all(state.values()) for state in during), during
    assert not any(_locked(widget).values())
    assert widget.volumes.native.isEnabled() is False  # still off: the movie has no Z
    status = widget.status.value
    precision = resolve_precision("auto", "cpu", "unet")[0]  # this CPU's "auto" for the UNet
    assert status.startswith("Done in") and "cpu" in status and precision in status
    assert "Mvoxel/s" in status


def test_an_error_in_the_worker_says_what_to_do_and_unlocks(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.random((48, 48)).astype(np.float32)
    data[5, 7] = np.nan
    viewer.add_image(data, name="holes")
    start = len(notification_manager.records)
    widget.run_button.native.click()
    assert widget.busy and all(_locked(widget).values())  # the worker has not reported yet
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)

    errors = notes_since(start, NotificationSeverity.ERROR)
    assert len(errors) == 1 and "NaN" in errors[0] and "replace them" in errors[0], errors
    assert widget.status.value.startswith("Error:")
    assert not any(_locked(widget).values())
    assert [layer.name for layer in viewer.layers] == ["holes"]
    viewer.layers["holes"].data = np.nan_to_num(data)  # fixed as the message says
    run(widget, qtbot)
    assert f"holes denoised ({DEFAULT_MODEL})" in viewer.layers


def test_an_error_before_the_run_leaves_the_widget_usable(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(da.zeros((2, 32, 32), chunks=(1, 32, 32), dtype=np.uint16), name="lazy")
    start = len(notification_manager.records)
    run(widget, qtbot)  # refused before any worker starts: no Output folder for a lazy layer
    errors = notes_since(start, NotificationSeverity.ERROR)
    assert len(errors) == 1 and "choose an Output folder" in errors[0], errors
    assert not any(_locked(widget).values())


def test_error_messages_end_with_what_to_do():
    from napari_wne._widget.runner import advice

    memory = advice(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "smaller Tile size" in memory and "Advanced" in memory
    assert advice(MemoryError()).startswith("MemoryError. Out of memory")
    unexpected = advice(KeyError("plane"))
    assert unexpected.startswith("KeyError") and "report" in unexpected
    assert "press Denoise to try again" in unexpected
    assert advice(ValueError("axes 'Q' ...; use letters")) == "axes 'Q' ...; use letters"


def test_save_as_ome_tiff_writes_the_result_with_the_layers_scale(
    viewer_widget, qtbot, rng, tmp_path
):
    import tifffile

    from napari_wne.sources import open_source

    viewer, widget = viewer_widget
    data = rng.poisson(30, (64, 64)).astype(np.uint16)
    viewer.add_image(data, name="cells", scale=(0.5, 0.25), units=("µm", "µm"))
    widget.output_folder.value = tmp_path
    widget.form.output_format.value = "ome-tiff"  # a small layer, written since asked
    run(widget, qtbot)
    path = tmp_path / f"cells_denoised_{DEFAULT_MODEL}.ome.tif"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    source = open_source(path)
    assert source.scale == {"Y": 0.5, "X": 0.25} and source.units["X"] == "micrometer"
    layer = viewer.layers[f"cells denoised ({DEFAULT_MODEL})"]
    np.testing.assert_array_equal(np.asarray(layer.data), tifffile.imread(path))
    np.testing.assert_allclose(tifffile.imread(path), expected(data, "YX"), atol=1e-3)


def test_the_precision_field_reaches_the_run_and_the_status(viewer_widget, qtbot, rng):
    from napari_wne.precision import PRECISIONS

    viewer, widget = viewer_widget
    assert list(widget.precision.choices) == list(PRECISIONS)
    assert widget.precision.value == "auto"
    data = rng.poisson(30, (64, 64)).astype(np.uint16)
    viewer.add_image(data, name="plane")
    widget.precision.value = "bfloat16"
    run(widget, qtbot)
    assert "bfloat16" in widget.status.value
    result = viewer.layers[f"plane denoised ({DEFAULT_MODEL})"].data
    np.testing.assert_array_equal(result, expected(data, "YX", precision="bfloat16"))
    assert np.abs(result - expected(data, "YX", precision="float32")).max() > 0


def test_running_out_of_memory_is_notified_and_the_result_is_unchanged(
    viewer_widget, qtbot, rng, monkeypatch
):
    """A real `torch.OutOfMemoryError` from a capped backbone (tests/test_backoff.py)."""
    from napari_wne import engine
    from napari_wne.engine import cached_engine as _engine
    from napari_wne.wne import WNE
    from test_backoff import MemoryCap

    viewer, widget = viewer_widget
    data = rng.poisson(30, (200, 200)).astype(np.uint16)
    reference = np.asarray(denoise_cpu(data, model="dncnn-wne", tile=160, precision="float32"))
    real = engine.with_precision

    def capped(model, precision):  # holds a 112x112 piece of a 160x160 tile, not the tile
        model = real(model, precision)
        return WNE(MemoryCap(model.backbone, 120 * 120), residual=model.residual, eps=model.eps)

    monkeypatch.setattr(engine, "with_precision", capped)
    _engine.cache_clear()
    viewer.add_image(data, name="plane")
    widget.model.value, widget.tile.value, widget.precision.value = "dncnn-wne", "160", "float32"
    start = len(notification_manager.records)
    try:
        run(widget, qtbot)
    finally:
        _engine.cache_clear()  # no capped engine for the next tests
    notes = notes_since(start)
    assert any("out of memory" in n and "pieces" in n for n in notes), notes
    result = viewer.layers["plane denoised (dncnn-wne)"].data
    assert np.abs(result - reference).max() / data.std() < 1e-5


def denoise_cpu(data, **kwargs):
    from napari_wne import denoise

    return denoise(data, axes="YX", device="cpu", verbose=False, **kwargs)


def test_auto_is_settled_on_the_layer_for_runs_and_previews(viewer_widget, qtbot):
    """With the default "auto", the widget decides once per layer, on the plane `denoise`
    measures, so previews of small crops run the same model as Denoise."""
    from napari_wne.routing import CORRELATED_NOISE_MODEL, WHITE_NOISE_MODEL
    from test_routing import capture

    viewer, widget = viewer_widget
    assert widget.model.value == DEFAULT_MODEL == "auto"
    smoothed = capture(0.8, seed=3)[:128, :160]
    viewer.add_image(smoothed, name="smoothed")
    assert widget._settings()["model"] == CORRELATED_NOISE_MODEL
    run(widget, qtbot)
    result = viewer.layers[-1].data
    alone = denoise_cpu(smoothed, model=CORRELATED_NOISE_MODEL, precision=widget.precision.value)
    np.testing.assert_allclose(result, alone, atol=1e-4)
    viewer.add_image(capture(None, seed=3)[:128, :160], name="white")
    widget.image.value = viewer.layers["white"]
    assert widget._settings()["model"] == WHITE_NOISE_MODEL
