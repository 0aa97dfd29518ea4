"""The widget's "Adapt to this image" section, end to end on a small image and a tiny model:
live losses, a before/after preview, a saved model that joins the Model list and
`napari-wne models`, Cancel, and errors that leave the panel usable.

Run under a virtual screen: ``xvfb-run -a python -m pytest tests/test_widget_adapt.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtCore import QRectF

from napari_wne import denoise
from napari_wne._widget.adapt import AFTER_NAME, BEFORE_NAME
from napari_wne._widget.adapt_job import PREVIEW_SIDE, training_images
from napari_wne._widget.loss_plot import LossPlot
from napari_wne.adaptation import AdaptSettings
from napari_wne.cli import main
from napari_wne.models import USER_MODELS_ENV
from test_adaptation import _noisy, _start_model
from test_widget import TIMEOUT_MS, notes_since

TINY = {"batch_size": 4, "patch_size": 32, "check_every": 2, "patience": 50, "lr": 3e-3}


@pytest.fixture(scope="module")
def start_model(tmp_path_factory) -> str:
    """A tiny trained UNet-WNE folder (a few supervised steps) to adapt from."""
    return _start_model(tmp_path_factory.mktemp("start"))


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "saved"
    monkeypatch.setenv(USER_MODELS_ENV, str(folder))
    return folder


@pytest.fixture
def panel(models_dir, viewer_widget, start_model, qtbot):
    """The docked widget on a 96 px noisy image, the tiny model as Own model, tiny settings."""
    viewer, widget = viewer_widget
    layer = viewer.add_image((1000 + 500 * _noisy(96)).astype(np.float32), name="cells")
    widget.model_folder.value = start_model
    widget.adapt.settings = AdaptSettings(**TINY, device="cpu")
    widget.adapt_section.expand(animate=False)
    yield viewer, widget, widget.adapt, layer
    widget.adapt.cancel()
    qtbot.waitUntil(lambda: not widget.adapt.busy, timeout=TIMEOUT_MS)


def _press(panel, qtbot) -> None:
    panel.adapt_button.native.click()
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)


def _usable(panel) -> bool:
    fields = (panel.save_as, panel.train_on, panel.steps, panel.replace, panel.show_preview)
    return (
        all(f.enabled for f in fields)
        and panel.adapt_button.enabled
        and not (panel.cancel_button.enabled)
    )


def test_adapt_end_to_end_saves_a_model_that_joins_the_model_list_and_the_cli(
    panel, models_dir, start_model, qtbot, capsys
):
    viewer, widget, adapt, layer = panel
    assert adapt.save_as.value == "cells-adapted"  # suggested from the layer
    adapt.steps.value = 6
    locked = []
    adapt.progress.changed.connect(lambda _: locked.append(not _usable(adapt)))
    _press(adapt, qtbot)

    assert adapt.status.value.startswith("Saved 'cells-adapted'"), adapt.status.value
    assert locked and all(locked)  # the panel was locked while it ran
    assert _usable(adapt)
    result = adapt.result
    # the loss curve got every step and every check (step 0 = the starting model)
    assert [s for s, _ in adapt.loss_plot.train] == list(range(1, 7))
    assert [s for s, _ in adapt.loss_plot.held_out] == [0, 2, 4, 6]
    assert adapt.loss_plot.held_out[0][1] == result.start_loss
    assert min(loss for _, loss in adapt.loss_plot.held_out) == result.best_loss
    assert adapt.progress.value == adapt.progress.max == 6

    folder = models_dir / "cells-adapted"
    card = json.loads((folder / "model.json").read_text())["adaptation"]
    assert card["from_model"] == start_model
    assert card["images"] == ["napari layer 'cells'"]
    # the saved model is in the Model list, chosen, and no Own model folder overrides it
    assert "cells-adapted" in widget.model.choices
    assert widget.model.value == "cells-adapted" and widget.model_name == "cells-adapted"
    assert widget.problem is None and widget.run_button.enabled
    assert adapt.save_as.value == "cells-adapted-2"  # the next run gets a new name
    assert main(["models"]) == 0
    assert any(line.startswith("cells-adapted ") for line in capsys.readouterr().out.splitlines())

    # before/after preview: the plane denoised by the starting model and by the saved one
    crop = layer.data[:PREVIEW_SIDE, :PREVIEW_SIDE]  # the image is smaller than a crop
    before, after = viewer.layers[BEFORE_NAME], viewer.layers[AFTER_NAME]
    assert before.data.shape == after.data.shape == layer.data.shape
    np.testing.assert_allclose(before.data, denoise(crop, model=start_model, verbose=False))
    saved = denoise(crop, model="cells-adapted", verbose=False)
    np.testing.assert_allclose(after.data, saved)
    assert after.metadata["step"] == result.best_step
    assert tuple(after.contrast_limits) == tuple(layer.contrast_limits)  # a fair comparison
    assert widget.image.value is layer  # previews are never picked as the input


def test_cancel_saves_nothing_and_leaves_the_panel_usable(panel, models_dir, qtbot):
    _viewer, _widget, adapt, _layer = panel
    adapt.steps.value = 100_000
    start = len(notification_manager.records)
    adapt.adapt_button.native.click()
    qtbot.waitUntil(lambda: len(adapt.loss_plot.train) >= 2, timeout=TIMEOUT_MS)
    assert adapt.busy and adapt.cancel_button.enabled and not adapt.adapt_button.enabled
    adapt.cancel_button.native.click()
    qtbot.waitUntil(lambda: not adapt.busy, timeout=TIMEOUT_MS)
    assert adapt.status.value.startswith("Cancelled"), adapt.status.value
    assert len(adapt.loss_plot.train) < 100
    assert any("no model was saved" in n for n in notes_since(start))
    assert list(models_dir.iterdir()) == []  # no model, no scratch folder
    assert _usable(adapt)


def test_an_error_in_the_run_is_shown_and_the_panel_is_usable_again(panel, models_dir, qtbot):
    viewer, widget, adapt, _layer = panel
    tiny = viewer.add_image(np.random.default_rng(0).normal(size=(24, 24)), name="speck")
    assert widget.image.value is tiny
    adapt.save_as.value = "speck-model"
    start = len(notification_manager.records)
    _press(adapt, qtbot)
    errors = notes_since(start, NotificationSeverity.ERROR)
    assert any("too small to adapt on" in e for e in errors), errors
    assert adapt.status.value.startswith("Error:") and "too small" in adapt.status.value
    assert not (models_dir / "speck-model").exists()
    assert _usable(adapt)
    # and it works again once the cause is gone
    widget.image.value = viewer.layers["cells"]
    adapt.steps.value = 2
    _press(adapt, qtbot)
    assert (models_dir / "speck-model" / "model.json").is_file()


def test_a_model_without_trained_weights_is_refused_with_the_reason(panel, qtbot):
    _viewer, widget, adapt, _layer = panel
    widget.model_folder.value = None
    widget.model.value = "ne-dncnn"
    start = len(notification_manager.records)
    _press(adapt, qtbot)
    errors = notes_since(start, NotificationSeverity.ERROR)
    assert any("has no trained weights to start from" in e for e in errors), errors
    assert _usable(adapt)


def test_the_name_is_checked_as_typed(panel, models_dir):
    _viewer, widget, adapt, _layer = panel
    widget.adapt_section.collapse()  # the section folds away, and opens again
    assert adapt.native.isHidden() and not widget.adapt_section.isExpanded()
    widget.adapt_section.button.click()
    assert not adapt.native.isHidden() and widget.adapt_section.isExpanded()
    adapt.save_as.value = "no/slashes"
    assert not adapt.adapt_button.enabled and "model name" in adapt.name_info.value
    adapt.save_as.value = "unet-wne"
    assert not adapt.adapt_button.enabled and "shipped model" in adapt.name_info.value
    (models_dir / "mine").mkdir(parents=True)
    (models_dir / "mine" / "model.json").write_text("{}")
    adapt.save_as.value = "mine"
    assert not adapt.adapt_button.enabled and "saved already" in adapt.name_info.value
    adapt.replace.value = True
    assert adapt.adapt_button.enabled and not adapt.name_info.value


def test_training_images_take_every_plane_or_the_one_shown(panel):
    viewer, widget, _adapt, _layer = panel
    stack = np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)
    viewer.add_image(stack, name="stack", axis_labels=("z", "y", "x"))
    viewer.dims.set_current_step(0, 2)
    target = widget._adapt_target()
    assert target.axes == "ZYX"
    (every,) = training_images(viewer, target, every_plane=True)
    np.testing.assert_array_equal(every, stack)
    (shown,) = training_images(viewer, target, every_plane=False)
    np.testing.assert_array_equal(shown, stack[2])


def test_the_loss_plot_scales_to_its_points_and_paints(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 120)
    plot.clear(steps=10)
    for step in range(1, 11):
        plot.add_train(step, 1.0 / step)
    plot.add_train(11, 1000.0)  # one spike does not squash the rest
    plot.add_held_out(0, 0.5)
    plot.add_held_out(10, 0.2)
    low, high = plot.y_range()
    assert low < 0.2 and 0.5 < high < 2
    points = plot.points(plot.held_out, QRectF(0, 0, 280, 90))
    assert points[0].x() < points[1].x() and points[0].y() < points[1].y()  # 0.5 drawn higher
    assert not plot.grab().isNull()


def test_a_layer_opened_before_the_widget_gets_its_axes_and_a_name(models_dir, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 40, 40), np.float32), name="early", axis_labels=("t", "y", "x"))
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-wne", "WNE Denoise")
    assert widget.image.value is viewer.layers["early"]
    assert widget.axes.value == "TYX"
    assert widget.adapt.save_as.value == "early-adapted"
