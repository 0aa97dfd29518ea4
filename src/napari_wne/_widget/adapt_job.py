"""What an adaptation run needs, read off the viewer on the GUI thread, and its worker body.

The run trains on the layer's planes (or only the one shown) through
`napari_wne.adaptation.adapt`, the same function as ``napari-wne adapt``. For the
before/after preview, a crop of the plane shown is denoised by `napari_wne.denoise` with
the weights of every held-out check that improved: the same path a saved model takes.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image

from ..adaptation import Adaptation, AdaptSettings, HeldOutCheck, adapt
from ..api import denoise, read_region

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_SIDE", "AdaptJob", "AdaptTarget", "run_adaptation"]

PREVIEW_SIDE = 256
"""The preview denoises at most this many pixels square of the plane shown, around the
centre of the view, so it costs a fraction of a second between checks."""

TRAIN_BYTES = 512 * 2**20
"""Every plane is used only up to this many bytes (as float32); larger layers train on
the plane shown."""


@dataclass(frozen=True)
class AdaptTarget:
    """What the Denoise settings say: the layer, its data and axes, the model, the device."""

    layer: Image
    data: Any
    axes: str
    model: str
    device: str


@dataclass
class AdaptJob:
    """Everything the worker needs, captured when Adapt is pressed."""

    target: AdaptTarget
    images: list[np.ndarray]
    folder: Path
    name: str
    settings: AdaptSettings
    overwrite: bool
    preview_input: np.ndarray | None
    """The crop of the plane shown that the preview denoises (None: no preview)."""
    preview_place: dict[str, Any]
    """`add_image` keywords that put a preview of the crop where it came from."""


def _plane_index(viewer: napari.viewer.Viewer, target: AdaptTarget) -> list[int | slice]:
    """The plane shown: the slider positions, with all of Y and X."""
    layer, axes, shape = target.layer, target.axes, target.data.shape
    position = layer.world_to_data(viewer.dims.point)
    return [
        slice(None) if axes[d] in "YX" else int(np.clip(round(float(position[d])), 0, n - 1))
        for d, n in enumerate(shape)
    ]


def _yx_last(array: np.ndarray, axes: str) -> np.ndarray:
    """`array` (with `axes`, in that order) with Y and X moved to the end."""
    return np.moveaxis(array, [axes.index("Y"), axes.index("X")], [-2, -1])


def training_images(
    viewer: napari.viewer.Viewer, target: AdaptTarget, every_plane: bool
) -> list[np.ndarray]:
    """The layer's planes as `adapt` takes them (Y and X last), or the plane shown only."""
    data, axes = target.data, target.axes
    if "Y" not in axes or "X" not in axes or len(axes) != len(data.shape):
        raise ValueError(f"Axes {axes!r}: adapting needs one letter per dimension, with Y and X")
    if every_plane:
        size = math.prod(data.shape) * 4
        if size > TRAIN_BYTES:
            raise ValueError(
                f"layer {target.layer.name!r} is {size / 2**30:.1f} GiB as float32, too large "
                "to adapt on at once: set 'Train on' to the plane shown"
            )
        whole = read_region(data, tuple(slice(None) for _ in data.shape))
        return [_yx_last(whole, axes)]
    index = _plane_index(viewer, target)
    plane = read_region(data, tuple(index))
    return [plane if axes.index("Y") < axes.index("X") else plane.T]


def preview_crop(
    viewer: napari.viewer.Viewer, target: AdaptTarget
) -> tuple[np.ndarray, dict[str, Any]]:
    """A crop of the plane shown (at most `PREVIEW_SIDE` square, around the view's centre),
    and the `add_image` keywords that put its denoised copy in the same place."""
    layer, axes, shape = target.layer, target.axes, target.data.shape
    index = _plane_index(viewer, target)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9
    centre = list(viewer.dims.point)
    shown = viewer.dims.displayed
    for d, c in zip(shown, camera.center[-len(shown) :], strict=True):
        centre[d] = c
    middle = layer.world_to_data(centre)
    for axis in "YX":
        d = axes.index(axis)
        side = min(PREVIEW_SIDE, shape[d])
        start = int(np.clip(round(float(middle[d])) - side // 2, 0, shape[d] - side))
        index[d] = slice(start, start + side)
    crop = read_region(target.data, tuple(index))
    translate = np.array(layer.translate, dtype=float)
    size = [1] * len(shape)
    for d, part in enumerate(index):
        start = part.start if isinstance(part, slice) else part
        translate[d] += start * layer.scale[d]
        if isinstance(part, slice):
            size[d] = part.stop - part.start
    place = {
        "shape": tuple(size), "scale": tuple(layer.scale), "translate": tuple(translate),
        "units": tuple(layer.units), "axis_labels": tuple(layer.axis_labels),
        "colormap": layer.colormap, "contrast_limits": tuple(layer.contrast_limits),
    }  # fmt: skip
    place["swapped"] = axes.index("Y") > axes.index("X")  # the crop is handed over as YX
    return (crop.T if place["swapped"] else crop), place


def run_adaptation(
    job: AdaptJob,
    stepped: Callable[[tuple[int, float]], None],
    checked: Callable[[tuple[int, float, bool]], None],
    previewed: Callable[[tuple[int, np.ndarray]], None],
    cancelled: Callable[[], bool],
) -> Adaptation:
    """Worker-thread body: adapt, reporting every step and check, and previewing the crop
    with the weights of every check that improved (step 0: the starting model)."""
    scratch = Path(tempfile.mkdtemp(prefix="napari-wne-adapt-preview-"))

    def on_check(check: HeldOutCheck) -> None:
        checked((check.step, check.loss, check.improved))
        if job.preview_input is None or not check.improved or cancelled():
            return
        # A new folder each time: `load_model` caches by path, so none is stale.
        folder = check.save(scratch / f"step-{check.step}")
        plane = denoise(
            job.preview_input, model=str(folder), axes="YX", device=job.target.device,
            verbose=False,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
        previewed((check.step, plane))

    try:
        return adapt(
            job.images, job.folder, init=job.target.model, settings=job.settings,
            sources=[f"napari layer {job.target.layer.name!r}"], overwrite=job.overwrite,
            progress=lambda report: stepped((report.step, report.loss)),
            on_check=on_check, cancel=cancelled,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
