"""Fair before/after views: input and result side by side, and what denoising removed.

Compare uses napari's grid mode, whose cells share one camera, so panning or zooming one
moves both. Everything it changes (grid settings, which layers are visible) is put back
when it is switched off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image

from ..api import difference, read_region
from .layers import MADE_BY_KEY

if TYPE_CHECKING:
    import napari

__all__ = ["RESIDUAL_COLORMAP", "Compare", "add_residual", "residual_limits"]

RESIDUAL_COLORMAP = "PiYG"
"""A diverging colormap (napari ships it): removed brightness one colour, added the other."""


def _grid(viewer: napari.viewer.Viewer):
    return viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari >= 0.9


class Compare:
    """Switches a viewer between its own view and input | result side by side."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self._saved: dict | None = None

    @property
    def on(self) -> bool:
        return self._saved is not None

    def show(self, before: Image, after: Image) -> None:
        """Only `before` and `after` visible, in a 1 x 2 grid with a shared camera."""
        if self.on:
            self.hide()
        grid = _grid(self.viewer)
        self._saved = {
            "enabled": grid.enabled,
            "shape": tuple(grid.shape),
            "stride": grid.stride,
            "visible": {layer.name: layer.visible for layer in self.viewer.layers},
        }
        for layer in self.viewer.layers:
            layer.visible = layer in (before, after)
        grid.stride = 1
        grid.shape = (1, 2)
        grid.enabled = True
        self.viewer.reset_view()

    def hide(self) -> None:
        """Back to the view as it was (layers added meanwhile stay as they are)."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        grid = _grid(self.viewer)
        grid.enabled = saved["enabled"]
        grid.shape = saved["shape"]
        grid.stride = saved["stride"]
        for layer in self.viewer.layers:
            if layer.name in saved["visible"]:
                layer.visible = saved["visible"][layer.name]
        self.viewer.reset_view()


def residual_limits(residual) -> tuple[float, float]:
    """Limits centred at 0, from the 99.9th percentile of |residual| on its central plane."""
    central = tuple(n // 2 for n in residual.shape[:-2])
    plane = np.abs(read_region(residual, central))
    plane = plane[np.isfinite(plane)]
    high = float(np.percentile(plane, 99.9)) if plane.size else 0.0
    high = high if high > 0 else 1.0
    return -high, high


def add_residual(viewer: napari.viewer.Viewer, before: Image, after: Image, name: str) -> Image:
    """Add ``before - after`` as a layer on top of the result (lazily for lazy layers)."""
    data = before.data[0] if before.multiscale else before.data
    residual = difference(data, after.data)
    return viewer.add_image(
        residual, name=name, colormap=RESIDUAL_COLORMAP,
        contrast_limits=residual_limits(residual), scale=tuple(after.scale),
        translate=tuple(after.translate), units=tuple(after.units),
        axis_labels=tuple(after.axis_labels), visible=True,
        metadata={MADE_BY_KEY: "residual"},
    )  # fmt: skip
