"""Axes strings ("TZYX", "CYX", ...) and what one denoising instance is.

An instance is one 2D plane (YX) or one 3D volume (ZYX): every time point and every
channel is denoised on its own, so brightness changes over time or between channels
never leak into each other's normalization.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["InstanceLayout", "default_axes", "parse_axes"]

#: Letters we understand: time, channel, depth and the two plane axes.
KNOWN_AXES = "TCZYX"
#: Axes along which instances are independent.
BATCH_AXES = "TC"


@dataclass(frozen=True)
class InstanceLayout:
    """How to turn an array with `axes` into a batch of instances and back."""

    axes: str
    #: Order of the input's axes once moved: batch axes first, then spatial.
    permutation: tuple[int, ...]
    n_batch_axes: int

    @property
    def spatial_axes(self) -> str:
        return "".join(self.axes[i] for i in self.permutation[self.n_batch_axes :])

    @property
    def spatial_dims(self) -> int:
        return len(self.permutation) - self.n_batch_axes

    @property
    def inverse_permutation(self) -> tuple[int, ...]:
        inverse = [0] * len(self.permutation)
        for position, axis in enumerate(self.permutation):
            inverse[axis] = position
        return tuple(inverse)


def default_axes(ndim: int) -> str:
    """Axes when the caller gave none: only a 2D array is unambiguous."""
    if ndim == 2:
        return "YX"
    raise ValueError(
        f"a {ndim}-D image needs axes: pass e.g. axes='ZYX' for a volume, 'TYX' for a "
        "time-lapse, 'CYX' for channels or 'TZYX' for a 3D time-lapse"
    )


def parse_axes(axes: str | None, shape: Sequence[int]) -> InstanceLayout:
    """Check `axes` against `shape` and work out the instance layout."""
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
    batch = [axes.index(a) for a in BATCH_AXES if a in axes]
    spatial = [axes.index(a) for a in "ZYX" if a in axes]
    for letter in "ZYX":
        if letter in axes and shape[axes.index(letter)] < 2:
            raise ValueError(
                f"axis {letter} has size {shape[axes.index(letter)]}; a spatial axis needs "
                "at least 2 pixels (drop a singleton Z by squeezing it and its letter)"
            )
    return InstanceLayout(axes, tuple(batch + spatial), len(batch))
