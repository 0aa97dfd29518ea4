"""The bundled real sample: something to denoise at once, offline."""

from __future__ import annotations

from importlib import resources

import numpy as np
import tifffile

__all__ = ["load_sample", "nuclei_2d"]

SAMPLES = {"nuclei_2d": "nuclei_2d.tif"}


def load_sample(name: str = "nuclei_2d") -> np.ndarray:
    """Read a bundled sample image (see ``napari_wne/data/SOURCE.md`` for its origin)."""
    try:
        filename = SAMPLES[name]
    except KeyError:
        raise ValueError(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}") from None
    with resources.as_file(resources.files("napari_wne").joinpath("data", filename)) as path:
        return tifffile.imread(path)


def nuclei_2d() -> list[tuple]:
    """napari sample-data hook: the noisy 2D nuclei image as an image layer."""
    image = load_sample("nuclei_2d")
    return [(image, {"name": "nuclei 2D (noisy)", "colormap": "gray"}, "image")]
