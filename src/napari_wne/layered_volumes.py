"""3-D training volumes built from real 2-D fluorescence images.

The only real volume in the data we may use (cells3d's `nuclei.tif`) is kept for testing,
so the 3-D model had trained on procedural phantoms alone, and on real structure it trails
what the phantoms predict (docs/results.md). Real clean content exists in 2-D: the 3D-RCAN
crops, the time-lapse, the W2S training rows. Here each volume stacks a few such images
as layers: each layer is a crop lying at some depth with some thickness (a Gaussian
profile along Z), drifting laterally from plane to plane as tilted structures do, and
the stack is then blurred along Z by an axial PSF. The in-plane texture is real; only
how it continues through Z is made up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d, shift

from .phantoms import _log_uniform

__all__ = ["layered_volume", "layered_volume_set"]

LAYERS = (1, 4)
"""Fewest and most layers in a volume."""
MAX_DRIFT = 0.6
"""Largest lateral drift of a layer, in pixels per plane, along each of Y and X."""
THICKNESS = (2.0, 0.5)
"""A layer's Gaussian profile along Z: its sigma from 2 planes to half the stack's depth."""
AXIAL_SIGMA = (0.5, 2.0)
"""The axial PSF's sigma in planes: Z is sampled more coarsely than Y and X, so a PSF
2-4 times longer than wide spans only one or two planes either side."""


def _crop(plane: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of `size` from `plane`, turned and flipped at random."""
    if rng.integers(2):
        plane = plane.T
    height, width = plane.shape
    if height < size[0] or width < size[1]:
        raise ValueError(f"a {plane.shape} image is too small for layers of {size} px")
    y = rng.integers(height - size[0] + 1)
    x = rng.integers(width - size[1] + 1)
    crop = plane[y : y + size[0], x : x + size[1]]
    return crop[:: rng.choice((-1, 1)), :: rng.choice((-1, 1))]


def layered_volume(
    images: Sequence[np.ndarray], shape: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """One (Z, Y, X) volume of layers cut from `images`, scaled so its maximum is 1.

    Each layer is cut from an image drawn at random (from one plane of it, if it is a
    stack, so a 30-frame time-lapse weighs as much as one crop) and keeps its texture;
    its depth, thickness, drift and brightness are drawn at random.
    """
    depth, height, width = (int(n) for n in shape)
    margin = int(np.ceil(MAX_DRIFT * depth))
    inner = (slice(margin, margin + height), slice(margin, margin + width))
    volume = np.zeros((depth, height, width), np.float32)
    z = np.arange(depth)
    for _ in range(rng.integers(LAYERS[0], LAYERS[1] + 1)):
        plane = np.asarray(images[rng.integers(len(images))], np.float32)
        if plane.ndim == 3:  # a stack (a time-lapse): one of its planes
            plane = plane[rng.integers(len(plane))]
        crop = _crop(plane, (height + 2 * margin, width + 2 * margin), rng)
        centre = rng.uniform(0.0, depth)
        thickness = _log_uniform(rng, THICKNESS[0], max(depth * THICKNESS[1], 2))
        profile = np.exp(-0.5 * ((z - centre) / thickness) ** 2)
        drift = rng.uniform(-MAX_DRIFT, MAX_DRIFT, 2)
        brightness = _log_uniform(rng, 0.2, 1.0)
        for k in np.flatnonzero(profile > 1e-3):
            moved = shift(crop, drift * (k - centre), order=1, mode="reflect")
            volume[k] += brightness * profile[k] * moved[inner]
    volume = gaussian_filter1d(volume, rng.uniform(*AXIAL_SIGMA), axis=0)
    peak = float(volume.max())
    return volume / peak if peak > 0 else volume


def layered_volume_set(
    images: Sequence[np.ndarray], count: int, shape: Sequence[int], seed: int
) -> list[np.ndarray]:
    """`count` layered volumes of `shape` from one seed (the same seed, the same set)."""
    if not images or any(np.ndim(image) not in (2, 3) for image in images):
        raise ValueError("layered volumes are cut from 2-D images or stacks of them")
    rng = np.random.default_rng(seed)
    return [layered_volume(images, shape, rng) for _ in range(count)]
