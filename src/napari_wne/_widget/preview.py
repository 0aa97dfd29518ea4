"""The live preview: denoise only the plane on screen, again whenever the slider moves.

One preview runs at a time. Requests that arrive meanwhile collapse into one, and a
result whose plane, layer or settings are no longer current is dropped, so the screen
only ever shows the plane the user stopped on.

The model runs at full strength and the plane's input is kept beside its result, so
moving the Strength slider re-blends the two on screen at once (`napari_wne.strength`),
without running the model again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from superqt.utils import FunctionWorker

from ..api import denoise, read_region
from ..models import get_model
from ..strength import keep_strength
from .layers import MADE_BY_KEY

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_NAME", "Preview"]

PREVIEW_NAME = "preview"


PREVIEW_Z_REACH = 8
"""A model that runs only in 3-D previews the plane with up to this many planes either
side: close to what Denoise gives with the whole stack, at a fraction of its cost."""


def _run_preview(
    data: Any, index: tuple, kwargs: dict[str, Any], z_axis: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Worker-thread body: read one plane and denoise it as a 2D image, or, for a 3-D
    model, the plane within a slab of its neighbours, taken back out of the result.
    Returns the plane and its result at full strength."""
    volumetric = 2 not in get_model(kwargs["model"]).dims
    plane = read_region(data, index)
    if not volumetric or z_axis is None or not isinstance(index[z_axis], int):
        return plane, denoise(plane, axes="YX", verbose=False, **kwargs)
    z = index[z_axis]
    first = max(0, z - PREVIEW_Z_REACH)
    last = min(np.shape(data)[z_axis], z + PREVIEW_Z_REACH + 1)
    slab = (*index[:z_axis], slice(first, last), *index[z_axis + 1 :])
    kept = [d for d, i in enumerate(slab) if isinstance(i, slice)]
    letters = iter("YX")
    axes = "".join("Z" if d == z_axis else next(letters) for d in kept)
    result = denoise(read_region(data, slab), axes=axes, verbose=False, **kwargs)
    return plane, np.take(result, z - first, axis=kept.index(z_axis))


class Preview:
    """Keeps a `preview` layer in step with the dims slider, the chosen layer and settings."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        form: Any,
        target: Callable[[], tuple[Image, Any, dict[str, Any]]],
        on_error: Callable[[str], None],
        on_warned: Callable[[tuple], None],
    ) -> None:
        """`target()` gives the layer, its data and the `denoise` settings; it raises a
        LookupError when the layer is gone, a ValueError when it cannot be denoised."""
        self.viewer = viewer
        self.form = form
        self._target = target
        self._on_error = on_error
        self._on_warned = on_warned
        self.worker: FunctionWorker | None = None
        self.pending = False
        self.shown: tuple | None = None
        self._layer: Image | None = None
        self.dropped = 0
        """Results thrown away because the slider or the settings had moved on."""
        self._full: tuple[np.ndarray, np.ndarray] | None = None
        """The plane on screen and its result at full strength, for re-blending."""

    @property
    def busy(self) -> bool:
        return self.worker is not None or self.pending

    @property
    def layer(self) -> Image | None:
        layer = self._layer
        return layer if layer is not None and layer in self.viewer.layers else None

    def on_layer_removed(self) -> None:
        # Deleting the preview means: no preview. (Compared by membership, not identity:
        # napari hands plugins proxies of its layers.)
        if self._layer is not None and self._layer not in self.viewer.layers:
            self._layer = None
            self.form.preview.value = False

    def toggled(self, on: bool) -> None:
        if on:
            self.request()
            return
        self.pending = False
        self.shown = None
        self._full = None
        layer = self.layer
        if layer is not None:
            self.viewer.layers.remove(layer)
        self._layer = None
        self._busy_note()

    def request(self, *_: Any) -> None:
        """Recompute the preview; one worker at a time, and only the latest request survives."""
        if not self.form.preview.value:
            return
        if self.worker is not None:
            self.pending = True  # started when the running one finishes
            self._busy_note()
            return
        self._start()

    def _place(self) -> dict[str, Any]:
        """The plane shown now, where to put its result, and a key that changes whenever
        the plane, the layer or the settings do."""
        layer, data, settings = self._target()
        offset = self.viewer.dims.ndim - layer.ndim
        shown = sorted(d - offset for d in self.viewer.dims.displayed if d >= offset)[-2:]
        if len(shown) < 2:
            shown = [layer.ndim - 2, layer.ndim - 1]
        position = layer.world_to_data(self.viewer.dims.point)
        index = tuple(
            slice(None) if d in shown else int(np.clip(round(float(position[d])), 0, n - 1))
            for d, n in enumerate(data.shape)
        )
        # Strength is left out of the key and of the run: it is applied on screen.
        strength = settings.pop("strength", 1.0)
        key = (id(layer), id(data), index, tuple(settings.items()))
        axes = self.form.axes.value.strip().upper()
        return {
            "z_axis": axes.index("Z") if "Z" in axes and len(axes) == layer.ndim else None,
            "key": key, "data": data, "settings": settings, "strength": strength,
            "ndim": layer.ndim,
            "index": index, "shown": tuple(shown), "scale": tuple(layer.scale),
            "translate": tuple(layer.translate), "units": tuple(layer.units),
            "axis_labels": tuple(layer.axis_labels), "colormap": layer.colormap,
            "contrast_limits": tuple(layer.contrast_limits),
        }  # fmt: skip

    def _start(self) -> None:
        self.pending = False
        try:
            place = self._place()
        except LookupError:  # the input went away: so does its preview
            self.form.preview.value = False
            return
        except (ValueError, TypeError) as err:
            self.form.preview.value = False
            self._on_error(f"WNE Denoise preview: {err}")
            return
        if place["key"] == self.shown and self.layer is not None:
            self._busy_note()
            if self._full is not None:  # only the strength may have moved
                self.layer.data = self._blended(place["strength"]).reshape(self.layer.data.shape)
            return  # already on screen
        body = functools.partial(
            _run_preview, place["data"], place["index"], place["settings"], place["z_axis"]
        )
        worker = create_worker(
            body, _worker_class=FunctionWorker, _ignore_errors=True, _start_thread=False
        )
        worker.returned.connect(functools.partial(self._on_result, place))
        worker.errored.connect(self._on_failed)
        worker.warned.connect(self._on_warned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._busy_note()
        worker.start()

    def _busy_note(self) -> None:
        busy = self.form.preview.value and self.busy
        self.form.preview_status.value = "Preview: computing the plane shown..." if busy else ""
        self.form.preview_status.visible = busy

    def _blended(self, strength: float) -> np.ndarray:
        """The full-strength result on screen blended with its plane at `strength`."""
        plane, result = self._full
        return keep_strength(result.copy(), plane, strength)

    def _on_result(self, place: dict[str, Any], computed: tuple[np.ndarray, np.ndarray]) -> None:
        if not self.form.preview.value:
            return
        try:
            now = self._place()
        except (LookupError, ValueError, TypeError):
            return
        plane, result = computed
        if place["key"] != now["key"]:  # the slider, layer or settings moved on: drop it
            self.dropped += 1
            self.pending = True
            return
        ndim, index, shown = place["ndim"], place["index"], place["shown"]
        shape = [1] * ndim
        for d, n in zip(shown, result.shape, strict=True):
            shape[d] = n
        translate = np.array(place["translate"], dtype=float)
        for d in range(ndim):
            if d not in shown:  # sit on the plane it came from
                translate[d] += index[d] * place["scale"][d]
        self._full = (plane, result)
        data = self._blended(now["strength"]).reshape(shape)
        layer = self.layer
        if layer is not None and layer.ndim != ndim:
            self.viewer.layers.remove(layer)
            layer = None
        self.shown = place["key"]
        if layer is None:
            self._layer = self.viewer.add_image(
                data, name=PREVIEW_NAME, scale=place["scale"], translate=translate,
                units=place["units"], axis_labels=place["axis_labels"],
                colormap=place["colormap"], contrast_limits=place["contrast_limits"],
                metadata={MADE_BY_KEY: "preview"},
            )  # fmt: skip
            return
        layer.data = data
        layer.scale = place["scale"]
        layer.translate = translate
        layer.contrast_limits = place["contrast_limits"]

    def _on_failed(self, err: Exception) -> None:
        self._on_error(f"WNE Denoise preview: {err}")

    def _on_finished(self) -> None:
        self.worker = None
        if self.pending and self.form.preview.value:
            self._start()
        else:
            self.pending = False
            self._busy_note()
