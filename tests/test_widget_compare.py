"""Fair before and after: the input's contrast limits on the result, Compare side by side
and back, and the residual layer (input - result, diverging, centred at 0).

Run under a virtual screen: ``xvfb-run -a python -m pytest tests/test_widget_compare.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_wne import DEFAULT_MODEL
from napari_wne._widget.compare import RESIDUAL_COLORMAP
from test_widget import run

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


def _grid(viewer):
    return viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid


def test_result_has_the_input_contrast_limits(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(300, (48, 48)).astype(np.uint16)
    layer = viewer.add_image(data, name="cells", contrast_limits=(0, 65535))
    widget.dtype.value = "input"
    run(widget, qtbot)
    result = viewer.layers[f"cells denoised ({DEFAULT_MODEL})"]
    np.testing.assert_allclose(result.contrast_limits, (0, 65535))
    layer.contrast_limits = (200, 400)  # what the user set is what the result gets
    run(widget, qtbot)
    np.testing.assert_allclose(viewer.layers[-1].contrast_limits, (200, 400))


def test_compare_shows_input_and_result_side_by_side_and_back(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    reference = viewer.add_image(rng.random((48, 48)), name="clean", visible=False)
    other = viewer.add_image(rng.random((48, 48)), name="other")
    layer = viewer.add_image(rng.poisson(30, (48, 48)).astype(np.uint16), name="cells")
    assert not widget.compare_button.enabled  # nothing to compare yet
    run(widget, qtbot)
    result = viewer.layers[f"cells denoised ({DEFAULT_MODEL})"]
    assert widget.compare_button.enabled
    grid = _grid(viewer)
    assert not grid.enabled

    widget.compare_button.native.click()
    assert grid.enabled and tuple(grid.shape) == (1, 2)
    assert [x.name for x in viewer.layers if x.visible] == ["cells", result.name]
    assert {grid.position(i, viewer.layers) for i in (2, 3)} == {(0, 0), (0, 1)}
    assert widget.compare_button.text == "Back"

    widget.compare_button.native.click()
    assert not grid.enabled and tuple(grid.shape) == (-1, -1)
    assert (reference.visible, other.visible, layer.visible, result.visible) == (
        False, True, True, True,
    )  # fmt: skip
    assert widget.compare_button.text == "Compare"

    widget.compare_button.native.click()
    viewer.layers.remove(result)  # the result goes away: back to the normal view
    assert not grid.enabled and not widget.compare_button.enabled


def test_residual_layer_is_input_minus_result_centred_at_zero(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (48, 48)).astype(np.uint16)
    viewer.add_image(data, name="cells")
    widget.residual.value = True
    run(widget, qtbot)
    result = viewer.layers[f"cells denoised ({DEFAULT_MODEL})"]
    residual = viewer.layers[f"cells residual ({DEFAULT_MODEL})"]
    np.testing.assert_allclose(residual.data, data.astype(np.float32) - result.data, atol=1e-5)
    assert residual.colormap.name == RESIDUAL_COLORMAP
    low, high = residual.contrast_limits
    assert low == -high and 0 < high <= np.abs(residual.data).max()
    assert widget.image.value.name == "cells"  # neither new layer is picked as the input
