"""The widget's fields: "auto" for automatic sizes, a collapsed Advanced section, choices
from the library, options a model cannot run disabled with a reason, and axes that are
shown, can be typed over, and are checked as they are typed.

Run under a virtual screen: ``xvfb-run -a python -m pytest tests/test_widget_form.py``.
"""

from __future__ import annotations

import inspect
from typing import get_args

import numpy as np
import pytest

from napari_wne import DEFAULT_MODEL, MODELS, denoise
from napari_wne.api import Instances, OutputDtype
from napari_wne.engine import Norm
from test_widget import run, shown

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


def test_automatic_sizes_show_auto_in_a_collapsed_advanced_section(viewer_widget):
    _viewer, widget = viewer_widget
    for field in (widget.tile, widget.overlap, widget.block):
        assert field.value == "auto" and field.native.text() == "auto"
    assert not widget.form.advanced_section.isExpanded()
    inside = list(widget.form.advanced)
    for field in (widget.tile, widget.overlap, widget.block, widget.norm, widget.dtype):
        assert field in inside and field not in list(widget)
    widget.form.advanced_section.expand(animate=False)
    assert widget.form.advanced_section.isExpanded()


def test_choices_and_defaults_come_from_the_library(viewer_widget):
    _viewer, widget = viewer_widget
    defaults = {n: p.default for n, p in inspect.signature(denoise).parameters.items()}
    assert tuple(widget.norm.choices) == get_args(Norm) and widget.norm.value == defaults["norm"]
    assert tuple(widget.dtype.choices) == get_args(OutputDtype)
    assert widget.dtype.value == defaults["dtype"]
    assert tuple(widget.volumes.choices) == get_args(Instances)
    assert widget.volumes.value == defaults["instances"]
    assert widget.model.value == DEFAULT_MODEL and tuple(widget.model.choices) == tuple(MODELS)


def test_bad_sizes_are_named_as_typed_and_block_denoise(viewer_widget, rng):
    viewer, widget = viewer_widget
    viewer.add_image(rng.poisson(30, (32, 32)).astype(np.uint16), name="cells")
    assert widget.run_button.enabled
    widget.tile.value = "0"
    assert not widget.run_button.enabled and "Tile size" in widget.problem
    assert shown(widget.form.sizes_info) and "Tile size" in widget.form.sizes_info.value
    widget.tile.value = "48, 64"
    assert widget.run_button.enabled and widget.form.sizes()["tile"] == (48, 64)
    widget.tile.value = "auto"
    assert widget.run_button.enabled and widget.form.sizes()["tile"] is None


def _volumes_item(widget, value: str):
    return widget.volumes.native.model().item(get_args(Instances).index(value))


def test_3d_is_disabled_for_a_2d_only_model_and_says_why(viewer_widget, rng):
    viewer, widget = viewer_widget
    viewer.add_image(rng.poisson(30, (4, 32, 32)).astype(np.uint16), name="stack")
    assert MODELS[DEFAULT_MODEL].dims == (2,)  # the shipped default: trained on 2D images
    item = _volumes_item(widget, "volumes")
    assert not item.isEnabled() and "2D images only" in item.toolTip()
    assert "2D images only" in widget.volumes_info.value
    assert widget.run_button.enabled  # "automatic" (plane by plane) still runs
    widget.model.value = "ne-dncnn"  # untrained: runs in 2D and 3D
    assert _volumes_item(widget, "volumes").isEnabled()
    widget.volumes.value = "volumes"
    widget.model.value = DEFAULT_MODEL  # a choice that no longer works falls back to auto
    assert widget.volumes.value == "auto"


def test_volumes_is_off_for_an_image_without_z(viewer_widget, rng):
    viewer, widget = viewer_widget
    viewer.add_image(rng.poisson(30, (3, 32, 32)).astype(np.uint16), name="movie",
                     axis_labels=("t", "y", "x"))  # fmt: skip
    assert widget.axes.value == "TYX"
    assert not widget.volumes.native.isEnabled() and "Z axis" in widget.volumes_info.value


def test_axes_are_shown_from_the_labels_or_flagged_as_a_guess(viewer_widget, rng):
    viewer, widget = viewer_widget
    viewer.add_image(rng.poisson(30, (3, 32, 32)).astype(np.uint16), name="labelled",
                     axis_labels=("t", "y", "x"))  # fmt: skip
    assert widget.axes.value == "TYX" and "axis labels" in widget.axes_info.value
    viewer.add_image(rng.poisson(30, (3, 32, 32)).astype(np.uint16), name="plain tiff")
    assert widget.image.value.name == "plain tiff"
    assert widget.axes.value == "ZYX" and "guess" in widget.axes_info.value


def test_typed_axes_are_used_for_the_run(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (3, 32, 32)).astype(np.float32)
    viewer.add_image(data, name="movie")  # a time-lapse from a plain TIFF: no labels
    widget.model.value = "ne-dncnn"  # runs 3D volumes too, so ZYX and TYX differ
    assert widget.axes.value == "ZYX"
    widget.axes.value = "tyx"
    assert widget.problem is None and "as typed" in widget.axes_info.value
    assert "T index is denoised on its own" in widget.axes_info.value
    run(widget, qtbot)
    result = viewer.layers["movie denoised (ne-dncnn)"].data
    frames = np.asarray(denoise(data, "ne-dncnn", axes="TYX", device="cpu", verbose=False))
    np.testing.assert_allclose(result, frames, rtol=1e-4, atol=1e-3)
    volume = np.asarray(denoise(data, "ne-dncnn", axes="ZYX", device="cpu", verbose=False))
    assert np.abs(result - volume).max() > 1e-2  # the typed axes really changed the run


@pytest.mark.parametrize(
    ("typed", "why"),
    [("TQX", "unknown letter"), ("YX", "names 2 axes"), ("TYY", "repeats"), ("ZTC", "Y and X")],
)
def test_invalid_axes_are_named_as_typed_and_block_denoise(viewer_widget, rng, typed, why):
    viewer, widget = viewer_widget
    viewer.add_image(rng.poisson(30, (3, 32, 32)).astype(np.uint16), name="stack")
    widget.axes.value = typed
    assert why in widget.axes_info.value and shown(widget.axes_info)
    assert not widget.run_button.enabled and why in widget.problem
    widget.axes.value = "CYX"
    assert widget.run_button.enabled and widget.problem is None


def test_axes_follow_the_layer_after_an_override(viewer_widget, rng):
    viewer, widget = viewer_widget
    first = viewer.add_image(rng.poisson(30, (3, 32, 32)).astype(np.uint16), name="first")
    second = viewer.add_image(rng.poisson(30, (32, 32)).astype(np.uint16), name="second")
    assert widget.image.value is second and widget.axes.value == "YX"
    widget.image.value = first
    widget.axes.value = "CYX"
    widget.image.value = second
    assert widget.axes.value == "YX"
    widget.image.value = first
    assert widget.axes.value == "ZYX"  # each layer starts again from its own axes


def test_test_time_augmentation_is_an_advanced_option_that_reaches_the_run(
    viewer_widget, qtbot, rng
):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (40, 48)).astype(np.float32)
    viewer.add_image(data, name="plane")
    widget.model.value = "dncnn-wne"
    assert widget.tta.value is False  # denoise's default
    assert widget.tta.native.parent() is widget.form.advanced.native  # tucked away
    widget.tta.value = True
    run(widget, qtbot)
    result = viewer.layers["plane denoised (dncnn-wne)"].data
    expected = denoise(data, "dncnn-wne", tta=True, device="cpu", verbose=False)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-3)
    plain = denoise(data, "dncnn-wne", device="cpu", verbose=False)
    assert np.abs(result - plain).max() > 1e-3


def test_the_strength_slider_starts_at_full_and_reaches_the_run(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (40, 48)).astype(np.float32)
    viewer.add_image(data, name="plane")
    widget.model.value = "dncnn-wne"
    assert widget.strength.value == 1.0  # denoise's default: the full result
    assert widget.strength.native.parent() is not widget.form.advanced.native  # in view
    widget.strength.value = 0.6
    run(widget, qtbot)
    result = viewer.layers["plane denoised (dncnn-wne, strength 0.6)"].data  # named by it
    full = denoise(data, "dncnn-wne", device="cpu", verbose=False)
    np.testing.assert_allclose(result, 0.6 * full + 0.4 * data, rtol=1e-4, atol=1e-3)
