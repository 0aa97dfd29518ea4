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
    assert status.startswith("Done in") and "cpu" in status and "float32" in status
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
