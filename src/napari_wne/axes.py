"""Axes strings ("TZYX", "CYX", ...) and what one denoising instance is.

An instance is one 2D plane (YX) or one 3D volume (ZYX): every time point and every
channel is denoised on its own, so brightness changes over time or between channels
never leak into each other's normalization.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["InstanceLayout", "default_axes", "letter_for_axis_name", "parse_axes", "select"]

KNOWN_AXES = "TCZYX"
"""Letters we understand: time, channel, depth and the two plane axes."""
BATCH_AXES = "TC"
"""Axes along which instances are independent."""
AXIS_NAMES = {
    "t": "T",
    "time": "T",
    "c": "C",
    "ch": "C",
    "channel": "C",
    "z": "Z",
    "y": "Y",
    "x": "X",
}
"""Axis names that files use (OME-NGFF, zarr dimension_names), and our letter for each."""
AXIS_TYPES = {"time": "T", "channel": "C"}
"""OME-NGFF axis types that alone tell the letter (a "space" axis needs its name)."""


def letter_for_axis_name(name: str, kind: str | None = None) -> str | None:
    """Our letter for a named axis ("time" -> "T", "z" -> "Z"), or None if it is unknown.

    `kind` is the OME-NGFF axis type; it decides for a time or channel axis with an unusual
    name. No guess is made for a spatial axis with another name.
    """
    letter = AXIS_NAMES.get(str(name).strip().lower())
    if letter is None and kind is not None:
        letter = AXIS_TYPES.get(str(kind).strip().lower())
    return letter


@dataclass(frozen=True)
class InstanceLayout:
    """How to turn an array with `axes` into a batch of instances and back."""

    axes: str
    permutation: tuple[int, ...]
    """Order of the input's axes once moved: batch axes first, then spatial."""
    n_batch_axes: int

    @property
    def batch_axes(self) -> str:
        """The letters whose every index is an instance of its own, e.g. "TC" (or "TCZ")."""
        return "".join(self.axes[i] for i in self.permutation[: self.n_batch_axes])

    @property
    def spatial_axes(self) -> str:
        """The spatial letters in instance order, e.g. "ZYX"."""
        return "".join(self.axes[i] for i in self.permutation[self.n_batch_axes :])

    def batch_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Sizes of the T and C axes present, in that order: the grid of instances."""
        return tuple(shape[i] for i in self.permutation[: self.n_batch_axes])

    def spatial_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Sizes of the spatial axes in Z, Y, X order: one instance's shape."""
        return tuple(shape[i] for i in self.permutation[self.n_batch_axes :])

    @property
    def spatial_dims(self) -> int:
        """2 for plane instances, 3 for volumes."""
        return len(self.permutation) - self.n_batch_axes

    @property
    def inverse_permutation(self) -> tuple[int, ...]:
        """The permutation that puts a result back in the input's axis order."""
        inverse = [0] * len(self.permutation)
        for position, axis in enumerate(self.permutation):
            inverse[axis] = position
        return tuple(inverse)


def select(
    layout: InstanceLayout, axes: str, batch_index: Sequence[int], region: Sequence[slice]
) -> tuple[tuple, tuple[int, ...]]:
    """Index one instance's box in an array laid out as `axes` (the layout's letters in
    any order), and the transpose that puts the selected box in Z, Y, X order."""
    batch_letters = list(layout.batch_axes)
    spatial_letters = layout.spatial_axes
    index = tuple(
        batch_index[batch_letters.index(a)]
        if a in batch_letters
        else region[spatial_letters.index(a)]
        for a in axes
    )
    kept = [a for a in axes if a in spatial_letters]
    return index, tuple(kept.index(a) for a in spatial_letters)


def default_axes(ndim: int) -> str:
    """Axes when the caller gave none: only a 2D array is unambiguous."""
    if ndim == 2:
        return "YX"
    raise ValueError(
        f"a {ndim}-D image needs axes (the CLI's --axes): e.g. axes='ZYX' for a volume, "
        "'TYX' for a time-lapse, 'CYX' for channels or 'TZYX' for a 3D time-lapse"
    )


def parse_axes(axes: str | None, shape: Sequence[int], planes: bool = False) -> InstanceLayout:
    """Check `axes` against `shape` and work out the instance layout.

    With `planes`, every Z plane is an instance of its own (for a 2D model on a volume).
    """
    ndim = len(shape)
    axes = default_axes(ndim) if axes is None else str(axes).upper()
    unknown = sorted(set(axes) - set(KNOWN_AXES))
    if unknown:
        raise ValueError(
            f"axes {axes!r} has unknown letter(s) {', '.join(unknown)}; use letters from "
            f"{KNOWN_AXES!r} (T time, C channel, Z depth, Y and X the plane)"
        )
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} repeats a letter; each axis may appear once")
    if len(axes) != ndim:
        raise ValueError(
            f"axes {axes!r} names {len(axes)} axes but the image has {ndim} "
            f"(shape {tuple(shape)}); give one letter per dimension"
        )
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} must contain both Y and X")
    batch_letters = BATCH_AXES + "Z" if planes else BATCH_AXES
    batch = [axes.index(a) for a in batch_letters if a in axes]
    spatial = [axes.index(a) for a in "ZYX" if a in axes and a not in batch_letters]
    for letter in "ZYX":
        if letter in axes and shape[axes.index(letter)] < 2:
            raise ValueError(
                f"axis {letter} has size {shape[axes.index(letter)]}; a spatial axis needs "
                "at least 2 pixels (drop a singleton Z by squeezing it and its letter)"
            )
    return InstanceLayout(axes, tuple(batch + spatial), len(batch))
