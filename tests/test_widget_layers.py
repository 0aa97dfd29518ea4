"""Which layer the widget picks: the selected one, else the newest visible one; never a
hidden clean reference, and never its own results. Axes are read off layers here too.

Run under a virtual screen: ``xvfb-run -a python -m pytest tests/test_widget_layers.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image

from napari_wne import DEFAULT_MODEL
from napari_wne._widget.layers import guess_axes
from test_widget import run

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


def test_samples_name_their_layers_plainly(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-wne", "nuclei_3d")
    assert [layer.name for layer in viewer.layers] == [
        "nuclei 3D clean reference",
        "nuclei 3D noisy",
    ]
    assert not viewer.layers["nuclei 3D clean reference"].visible
    viewer.open_sample("napari-wne", "nuclei_2d")
    assert viewer.layers[-1].name == "nuclei 2D noisy"


def test_widget_open_first_picks_the_noisy_layer_of_each_sample(viewer_widget):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-wne", "nuclei_3d")
    assert widget.image.value.name == "nuclei 3D noisy"
    assert widget.axes.value == "ZYX" and "axis labels" in widget.axes_info.value
    viewer.open_sample("napari-wne", "nuclei_2d")
    assert widget.image.value.name == "nuclei 2D noisy" and widget.axes.value == "YX"


def test_widget_opened_after_the_sample_picks_the_noisy_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-wne", "nuclei_3d")
    viewer.layers.selection.clear()  # nothing selected: the newest visible layer
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-wne", "WNE Denoise")
    assert widget.image.value.name == "nuclei 3D noisy"


def test_the_selection_is_followed_but_hidden_layers_are_not_picked(viewer_widget, rng):
    viewer, widget = viewer_widget
    a = viewer.add_image(rng.random((16, 16)), name="a")
    b = viewer.add_image(rng.random((16, 16)), name="b", visible=False)
    assert widget.image.value is a  # b is hidden
    viewer.layers.selection.active = b
    assert widget.image.value is a
    c = viewer.add_image(rng.random((16, 16)), name="c")
    assert widget.image.value is c
    viewer.layers.selection.active = a
    assert widget.image.value is a
    widget.image.value = b  # chosen by hand in the list: allowed
    assert widget.image.value is b and b in [choice for choice in widget.image.choices]


def test_the_result_is_not_picked_after_a_run(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    layer = viewer.add_image(rng.poisson(30, (32, 32)).astype(np.uint16), name="cells")
    run(widget, qtbot)
    result = viewer.layers[f"cells denoised ({DEFAULT_MODEL})"]
    assert viewer.layers.selection.active is result  # napari selects what was added
    assert widget.image.value is layer  # pressing Denoise again denoises the input again


@pytest.mark.parametrize(
    ("shape", "labels", "metadata", "axes", "how"),
    [
        ((8, 8), None, {}, "YX", "guess"),
        ((3, 8, 8), None, {}, "ZYX", "guess"),
        ((3, 8, 8), ("t", "y", "x"), {}, "TYX", "axis labels"),
        ((3, 8, 8), ("t", "-2", "-1"), {}, "TYX", "rest guessed by position"),
        ((3, 8, 8), None, {"axes": "TYX"}, "TYX", "reader"),
        ((3, 8, 8), None, {"axes": "QYX"}, "ZYX", "guess"),  # not axes we know: ignored
    ],
)
def test_axes_say_where_they_came_from(shape, labels, metadata, axes, how):
    kwargs = {} if labels is None else {"axis_labels": labels}
    got, said = guess_axes(Image(np.zeros(shape, np.uint8), metadata=metadata, **kwargs))
    assert got == axes and how in said
