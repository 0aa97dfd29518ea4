"""The bundled real samples: something to denoise at once, offline.

``nuclei_2d`` is a real noisy acquisition without a clean reference. ``nuclei_3d`` is a
real, fairly clean confocal stack together with a noisy copy made from it, so a result
can be compared with the clean stack by eye (see ``napari_wne/data/SOURCE.md``).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import tifffile

__all__ = ["NOISE", "add_poisson_gaussian_noise", "load_sample", "nuclei_2d", "nuclei_3d"]

SAMPLES = {"nuclei_2d": "nuclei_2d.tif", "nuclei_3d": "nuclei_3d.tif"}

NUCLEI_3D_SCALE = (0.29, 0.26, 0.26)
"""Voxel size of ``nuclei_3d`` in micrometres (Z, Y, X), as scikit-image documents it."""

NOISE = {"gain": 2000.0, "read_noise": 1000.0, "seed": 0}
"""Noise of the noisy ``nuclei_3d``: intensity units per photon, read-noise standard
deviation in intensity units, and the random seed (so every user sees the same image)."""


def load_sample(name: str = "nuclei_2d") -> np.ndarray:
    """Read a bundled sample image (see ``napari_wne/data/SOURCE.md`` for its origin)."""
    try:
        filename = SAMPLES[name]
    except KeyError:
        raise ValueError(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}") from None
    with resources.as_file(resources.files("napari_wne").joinpath("data", filename)) as path:
        return tifffile.imread(path)


def add_poisson_gaussian_noise(
    image: np.ndarray, gain: float, read_noise: float, seed: int
) -> np.ndarray:
    """Shot noise plus camera read noise, in the image's own intensity units and dtype.

    Each pixel becomes ``gain * Poisson(image / gain) + Normal(0, read_noise)``, rounded
    and clipped to the dtype's range: ``image / gain`` is the mean photon count.
    """
    rng = np.random.default_rng(seed)
    photons = rng.poisson(image.astype(np.float64) / gain)
    noisy = gain * photons + rng.normal(0.0, read_noise, image.shape)
    info = np.iinfo(image.dtype)
    return np.clip(np.rint(noisy), info.min, info.max).astype(image.dtype)


def nuclei_2d() -> list[tuple]:
    """napari sample-data hook: the noisy 2D nuclei image as an image layer."""
    image = load_sample("nuclei_2d")
    return [(image, {"name": "nuclei 2D noisy", "colormap": "gray"}, "image")]


def nuclei_3d() -> list[tuple]:
    """napari sample-data hook: a confocal nuclei stack and its Poisson-Gaussian noisy copy.

    The clean stack comes first and hidden, named as what it is (a reference to compare
    with), so the noisy copy on top is what is selected and denoised.
    """
    clean = load_sample("nuclei_3d")
    noisy = add_poisson_gaussian_noise(clean, **NOISE)
    common = {
        "scale": NUCLEI_3D_SCALE,
        "units": "micrometer",
        "axis_labels": ("z", "y", "x"),
        "colormap": "gray",
    }
    return [
        (clean, {**common, "name": "nuclei 3D clean reference", "visible": False}, "image"),
        (noisy, {**common, "name": "nuclei 3D noisy"}, "image"),
    ]
