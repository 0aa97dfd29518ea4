"""The live preview: one plane, following the dims slider, with a busy note, never stale.

Run under a virtual screen: ``xvfb-run -a python -m pytest tests/test_widget_preview.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_widget import TIMEOUT_MS, expected, shown

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


def test_preview_follows_the_dims_slider(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (4, 64, 64)).astype(np.uint16)
    data[3] *= 3  # planes differ clearly
    layer = viewer.add_image(data, name="stack", scale=(2.0, 1.0, 1.0), translate=(1.0, 0, 0))
    widget.image.value = layer
    viewer.dims.current_step = (1, 0, 0)

    def on_plane(z: int) -> bool:
        preview = widget.preview_layer
        return (
            not widget.preview_busy
            and preview is not None
            and preview.translate[0] == 1.0 + 2.0 * z
        )

    widget.preview.value = True
    qtbot.waitUntil(lambda: on_plane(1), timeout=TIMEOUT_MS)
    preview = widget.preview_layer
    assert preview.name == "preview" and preview.data.shape == (1, 64, 64)
    assert preview not in [choice for choice in widget.image.choices]
    np.testing.assert_allclose(preview.data[0], expected(data[1], "YX"), rtol=1e-4, atol=1e-3)

    viewer.dims.current_step = (3, 0, 0)
    qtbot.waitUntil(lambda: on_plane(3), timeout=TIMEOUT_MS)
    np.testing.assert_allclose(
        widget.preview_layer.data[0], expected(data[3], "YX"), rtol=1e-4, atol=1e-3
    )
    # Moving fast: only the last plane asked for ends up on screen.
    for z in (0, 2, 1):
        viewer.dims.current_step = (z, 0, 0)
    qtbot.waitUntil(lambda: on_plane(1), timeout=TIMEOUT_MS)
    np.testing.assert_allclose(
        widget.preview_layer.data[0], expected(data[1], "YX"), rtol=1e-4, atol=1e-3
    )

    widget.preview.value = False
    assert widget.preview_layer is None and [x.name for x in viewer.layers] == ["stack"]

    # Deleting the preview layer turns the preview off rather than bringing it back.
    widget.preview.value = True
    qtbot.waitUntil(lambda: on_plane(1), timeout=TIMEOUT_MS)
    viewer.layers.remove(widget.preview_layer)
    assert not widget.preview.value
    viewer.dims.current_step = (2, 0, 0)
    assert not widget.preview_busy and [x.name for x in viewer.layers] == ["stack"]


def test_preview_of_a_2d_layer_is_the_whole_image(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (48, 64)).astype(np.uint16)
    widget.image.value = viewer.add_image(data, name="flat")
    widget.preview.value = True
    qtbot.waitUntil(
        lambda: widget.preview_layer is not None and not widget.preview_busy, timeout=TIMEOUT_MS
    )
    np.testing.assert_allclose(
        widget.preview_layer.data, expected(data, "YX"), rtol=1e-4, atol=1e-3
    )


def test_preview_shows_that_it_is_busy_and_uses_the_input_contrast(viewer_widget, qtbot, rng):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (48, 64)).astype(np.uint16)
    layer = viewer.add_image(data, name="flat", contrast_limits=(5, 90))
    widget.image.value = layer
    assert not shown(widget.preview_status)
    widget.preview.value = True  # starts a worker at once: the note shows before it ends
    assert widget.preview_busy and shown(widget.preview_status)
    assert "computing" in widget.preview_status.value
    qtbot.waitUntil(
        lambda: widget.preview_layer is not None and not widget.preview_busy, timeout=TIMEOUT_MS
    )
    assert not shown(widget.preview_status)
    np.testing.assert_allclose(widget.preview_layer.contrast_limits, (5, 90))
    assert widget.preview_layer not in widget.image.choices  # never offered as an input


def test_a_3d_model_previews_the_plane_within_a_slab_of_its_neighbours(viewer_widget, qtbot, rng):
    from napari_wne._widget.preview import PREVIEW_Z_REACH
    from napari_wne.routing import VOLUME_MODEL

    viewer, widget = viewer_widget
    data = rng.poisson(30, (2 * PREVIEW_Z_REACH + 6, 40, 40)).astype(np.uint16)
    widget.image.value = viewer.add_image(data, name="stack")
    widget.model.value = VOLUME_MODEL
    widget.precision.value = "float32"  # the slab's reach is measured, not low precision's
    z = PREVIEW_Z_REACH + 4
    viewer.dims.current_step = (z, 0, 0)
    widget.preview.value = True
    qtbot.waitUntil(
        lambda: not widget.preview_busy and widget.preview_layer is not None, timeout=TIMEOUT_MS
    )
    slab = data[z - PREVIEW_Z_REACH : z + PREVIEW_Z_REACH + 1]
    settings = {"precision": widget.precision.value, "tile": None, "norm": widget.norm.value}
    denoised = denoise_cpu(slab, VOLUME_MODEL, "ZYX", **settings)
    assert widget.preview_layer.data.shape == (1, 40, 40)
    np.testing.assert_allclose(widget.preview_layer.data[0], denoised[PREVIEW_Z_REACH], atol=1e-3)
    whole = denoise_cpu(data, VOLUME_MODEL, "ZYX", **settings)[z]
    # Close to what Denoise gives with the whole stack: far below the noise it removes.
    assert np.abs(widget.preview_layer.data[0] - whole).max() < 0.02 * data.std()


def denoise_cpu(data, model, axes, **kwargs):
    from napari_wne import denoise

    return np.asarray(denoise(data, model, axes=axes, device="cpu", verbose=False, **kwargs))


def test_moving_the_strength_slider_reblends_the_preview_without_running_the_model(
    viewer_widget, qtbot, rng
):
    viewer, widget = viewer_widget
    data = rng.poisson(30, (3, 48, 64)).astype(np.uint16)
    widget.image.value = viewer.add_image(data, name="stack")
    viewer.dims.current_step = (2, 0, 0)
    widget.strength.value = 0.5
    widget.preview.value = True
    qtbot.waitUntil(
        lambda: widget.preview_layer is not None and not widget.preview_busy, timeout=TIMEOUT_MS
    )
    full = expected(data[2], "YX")
    np.testing.assert_allclose(
        widget.preview_layer.data[0], 0.5 * full + 0.5 * data[2], rtol=1e-4, atol=1e-3
    )
    widget.strength.value = 0.8  # applied on screen at once: no worker starts
    assert not widget.preview_busy
    np.testing.assert_allclose(
        widget.preview_layer.data[0], 0.8 * full + 0.2 * data[2], rtol=1e-4, atol=1e-3
    )
    # and it equals what Denoise gives for that plane at that strength
    np.testing.assert_allclose(
        widget.preview_layer.data[0],
        expected(data[2], "YX", strength=0.8),
        rtol=1e-4,
        atol=1e-3,
    )
