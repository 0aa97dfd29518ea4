"""OME-NGFF (OME-Zarr) image metadata: which array is full resolution, its axes, scale and
channel names (the ``omero`` block's labels, carried to the result).

Axis names are files' words ("time", "channel", "z"), mapped to our letters by
`napari_wne.axes.letter_for_axis_name`. NGFF before 0.4 could leave axes out (0.1 and
0.2 implied five, 0.3 listed names only): we then guess nothing and ask for axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .axes import KNOWN_AXES, letter_for_axis_name

__all__ = ["NgffImage", "axes_from_dimension_names", "read_ngff_image", "read_ngff_levels"]


@dataclass
class NgffImage:
    """The full-resolution array of an NGFF image and what its metadata says about it."""

    array: Any
    axes: str
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    channel_names: tuple[str, ...] | None = None
    """One label per index of C, when the ``omero`` block names every channel."""


def read_ngff_image(path: Path, group: Any, ome: dict, axes: str | None) -> NgffImage:
    """Level 0 of the first multiscales image in `group` (whose NGFF attributes are `ome`).

    An explicit `axes` replaces the file's axes; without it, axes the file lacks or names
    in a way we cannot read are an error that says to pass them.
    """
    import zarr

    image = ome["multiscales"][0]
    if not isinstance(image, dict):
        raise ValueError(f"{path}: its OME-NGFF multiscales metadata is not an object: {image!r}")
    version = image.get("version") or ome.get("version") or "(no version)"
    datasets = image.get("datasets") or [{}]
    level0 = datasets[0] if isinstance(datasets[0], dict) else {}
    where = level0.get("path")
    try:
        array = group[str(where)]
    except KeyError:
        array = None
    if where is None or not isinstance(array, zarr.Array):
        present = sorted(k for k, _ in group.arrays())
        example = path / (present[0] if present else "0")
        raise ValueError(
            f"{path}: its OME-NGFF metadata names dataset path {where!r} for the full "
            f"resolution, but the store holds no array there (arrays: {present or 'none'}); "
            f"the store is incomplete or its metadata is wrong: copy it again, or point at "
            f"an array inside it instead (e.g. {example})"
        )
    named = image.get("axes")
    if axes is None:
        if not named:
            raise ValueError(
                f"{path} has OME-NGFF {version} metadata without axes (before NGFF 0.4 they "
                f"were optional); pass axes= (CLI --axes) with one letter from {KNOWN_AXES} "
                f"per dimension of its shape {tuple(array.shape)}"
            )
        axes = _letters(path, named, array.ndim)
    scale, units = _scale_and_units(named or [], level0, axes)
    names = channel_labels(ome.get("omero"), axes, tuple(array.shape))
    return NgffImage(array, axes, scale, units, names)


def channel_labels(omero: Any, axes: str, shape: tuple[int, ...]) -> tuple[str, ...] | None:
    """The ``omero`` channel labels, when there is one text label per index of C.

    Anything less (no C axis, a count that does not match, a channel without a label) gives
    None: a name attached to the wrong channel is worse than none.
    """
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if "C" not in axes or not isinstance(channels, list):
        return None
    labels = [c.get("label") if isinstance(c, dict) else None for c in channels]
    if len(labels) != shape[axes.index("C")] or not all(isinstance(x, str) for x in labels):
        return None
    return tuple(labels)


def read_ngff_levels(path: Path) -> list[Any]:
    """Every level of the first multiscales image at `path`, largest first, as zarr arrays:
    what a viewer needs to show a pyramid (ours, `napari_wne.writers.pyramid`, or any other).

    Stops at the first level that is missing or does not shrink, so a damaged pyramid still
    opens at the levels it has; [] for a store without NGFF multiscales.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        datasets = attrs.get("ome", attrs)["multiscales"][0]["datasets"]
    except Exception:  # not a group, or no NGFF metadata: nothing to show as a pyramid
        return []
    levels: list[Any] = []
    for dataset in datasets:
        try:
            array = group[str(dataset["path"])]
        except (KeyError, TypeError):
            break
        if not isinstance(array, zarr.Array) or (
            levels
            and (
                array.ndim != levels[-1].ndim
                or any(n > m for n, m in zip(array.shape, levels[-1].shape, strict=True))
            )
        ):
            break
        levels.append(array)
    return levels


def axes_from_dimension_names(array: Any) -> str | None:
    """Letters from a zarr 3 array's dimension_names, or None unless every name is known."""
    names = getattr(array.metadata, "dimension_names", None)
    if not names or not all(isinstance(n, str) for n in names):
        return None
    letters = [letter_for_axis_name(n) for n in names]
    return None if None in letters else "".join(letters)


def _letters(path: Path, named: list, ndim: int) -> str:
    """Our letters for NGFF axes (names such as "time" or "z", with types from 0.4 on)."""
    if len(named) != ndim:
        raise ValueError(
            f"{path}: its OME-NGFF metadata names {len(named)} axes but the array has {ndim} "
            "dimensions; pass axes= (CLI --axes) with one letter per dimension"
        )
    letters = []
    for axis in named:
        name, kind = axis, None
        if isinstance(axis, dict):
            name, kind = axis.get("name"), axis.get("type")
        letter = letter_for_axis_name(str(name), kind)
        if letter is None:
            raise ValueError(
                f"{path}: OME-NGFF axis {name!r} (type {kind!r}) is not one we read as T, C, Z, "
                f"Y or X; pass axes= (CLI --axes) with one letter from {KNOWN_AXES} per "
                "dimension"
            )
        letters.append(letter)
    if len(set(letters)) != len(letters):
        raise ValueError(
            f"{path}: its OME-NGFF axes {[str(a) for a in named]} map to {''.join(letters)!r}, "
            "which repeats a letter; pass axes= (CLI --axes) with one letter per dimension"
        )
    return "".join(letters)


def _scale_and_units(named: list, level0: dict, axes: str) -> tuple[dict, dict]:
    scale: dict[str, float] = {}
    for transform in level0.get("coordinateTransformations", []):
        if transform.get("type") == "scale" and len(transform.get("scale", ())) == len(axes):
            scale = {a: float(s) for a, s in zip(axes, transform["scale"], strict=True)}
    units = {
        letter: axis["unit"]
        for letter, axis in zip(axes, named, strict=False)
        if isinstance(axis, dict) and axis.get("unit")
    }
    return scale, units
