"""Which layer to denoise, and which axes it has: everything the widget reads off a layer.

Rules about axes strings themselves (letters, sizes) live in `napari_wne.axes`; this
module only turns what napari knows (axis labels, reader metadata, the number of
dimensions) into a first guess, and says where the guess came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Image

from ..axes import KNOWN_AXES

if TYPE_CHECKING:
    import napari

__all__ = ["MADE_BY_KEY", "guess_axes", "layer_axes", "layer_data", "pick_layer"]

MADE_BY_KEY = "napari_wne_made"
"""Metadata key of the layers the widget adds (result, residual, preview): "result",
"residual" or "preview". They are never picked on their own, and previews never offered."""

_LABEL_LETTERS = {
    "t": "T", "time": "T", "frame": "T", "frames": "T",
    "c": "C", "ch": "C", "channel": "C",
    "z": "Z", "depth": "Z",
    "y": "Y", "x": "X",
}  # fmt: skip
# Unlabelled dimensions get letters from the last one backwards: X, Y, Z, then T, then C.
_FILL_ORDER = "XYZTC"


def guess_axes(layer: Image) -> tuple[str, str]:
    """The axes a run would use for `layer`, and where they came from, in words.

    The layer's axis labels win ("t", "time", "z", "c", ...); then an ``axes`` string a
    reader left in the layer's metadata; dimensions neither names are filled by position
    (2D "YX", 3D "ZYX", 4D "TZYX"), and the words say that part is only a guess.
    """
    ndim = layer.ndim
    if not 2 <= ndim <= 5:
        raise ValueError(f"layer {layer.name!r} has {ndim} dimensions; WNE Denoise needs 2 to 5")
    labels = [str(label).strip().lower() for label in layer.axis_labels]
    letters: list[str | None] = [_LABEL_LETTERS.get(label) for label in labels]
    how = "the layer's axis labels"
    named = [letter for letter in letters if letter]
    if len(set(named)) != len(named):  # two dims claim the same letter: trust no label
        letters, named = [None] * ndim, []
    meta = str(layer.metadata.get("axes", "")).upper()
    if not named and len(meta) == ndim and set(meta) <= set(KNOWN_AXES):
        return meta, "the reader's metadata"
    free = [a for a in _FILL_ORDER if a not in named]
    for i in reversed(range(ndim)):
        if letters[i] is None:
            letters[i] = free.pop(0)
    axes = "".join(letter for letter in letters if letter)
    if not named:
        how = f"a guess from the {ndim}D shape (no axis labels): check it"
    elif len(named) < ndim:
        how += ", the rest guessed by position"
    return axes, how


def layer_axes(layer: Image) -> str:
    """The `axes` string napari's labels (or, failing those, the shape) give a layer."""
    axes, _how = guess_axes(layer)
    if "Y" not in axes or "X" not in axes:
        raise ValueError(
            f"layer {layer.name!r}: its axis labels {tuple(layer.axis_labels)} leave no Y and X "
            "axes to denoise; type the Axes, or rename the labels (e.g. to 'y' and 'x')"
        )
    return axes


def layer_data(layer: Image | None, viewer: napari.viewer.Viewer) -> Any:
    """The array to denoise (level 0 of a pyramid), or a ValueError that says what to do."""
    if layer is None or layer not in viewer.layers:
        raise ValueError("there is no image layer to denoise; open an image first")
    if layer.rgb:
        raise ValueError(
            f"layer {layer.name!r} is RGB: WNE Denoise works on intensity images; split the "
            "colours into channels first (e.g. File > Open with channel_axis, or the "
            "layer's 'Split RGB' action)"
        )
    return layer.data[0] if layer.multiscale else layer.data


def offered(layer: Any) -> bool:
    """Whether a layer is listed as an input: every image but the widget's previews."""
    return isinstance(layer, Image) and layer.metadata.get(MADE_BY_KEY) != "preview"


def _pickable(layer: Any) -> bool:
    return offered(layer) and layer.visible and MADE_BY_KEY not in layer.metadata


def pick_layer(viewer: napari.viewer.Viewer, current: Image | None = None) -> Image | None:
    """The layer to denoise when the user has not said: the selected image, else the one
    chosen before (if still there), else the newest visible image.

    Hidden layers (such as a sample's clean reference) and the widget's own results are
    never picked on their own; they can still be chosen in the Image list.
    """
    active = viewer.layers.selection.active
    if active is not None and _pickable(active):
        return active
    if current is not None and current in viewer.layers:
        return current
    return next((layer for layer in reversed(viewer.layers) if _pickable(layer)), None)
