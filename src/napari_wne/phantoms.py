"""Procedural fluorescence images: unlimited clean training content that looks like biology.

The real clean microscopy we may train on is a handful of crops. Phantoms add what
fluorescence shows most (nuclei and blobs, filaments and tubules, membranes, puncta), at
random density, size, brightness and blur, over a smooth background, so a network sees
every structure at every contrast and does not learn one image's look. Each phantom is
blurred by a Gaussian PSF: fluorescence images are band-limited, and a network trained on
sharp synthetic edges would sharpen real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree
from scipy.special import expit

__all__ = ["PHANTOM_KINDS", "fluorescence_phantom", "phantom_set"]


def _log_uniform(rng: np.random.Generator, low: float, high: float, size=None):
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _smooth_field(shape: Sequence[int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field in [0, 1] whose features are about `scale` pixels wide."""
    field = gaussian_filter(rng.standard_normal(shape), scale, mode="wrap")
    field -= field.min()
    return field / (field.max() or 1.0)


def _grid(shape: Sequence[int]) -> np.ndarray:
    return np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij"))


def nuclei(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Ellipsoidal blobs with soft edges and chromatin-like texture."""
    image = np.zeros(shape)
    grid = _grid(shape)
    size = min(shape)
    for _ in range(int(rng.integers(2, 25))):
        centre = rng.uniform(0, shape)
        radii = rng.uniform(0.03, 0.15, len(shape)) * size + 2
        angle = rng.uniform(0, np.pi)
        d = grid - centre.reshape(-1, *([1] * len(shape)))
        if len(shape) >= 2:  # turn in the YX plane
            c, s = np.cos(angle), np.sin(angle)
            d[-2], d[-1] = c * d[-2] - s * d[-1], s * d[-2] + c * d[-1]
        r = np.sqrt(sum((d[i] / radii[i]) ** 2 for i in range(len(shape))))
        edge = rng.uniform(0.03, 0.2)
        body = expit((1 - r) / edge)
        texture = 0.5 + 0.5 * _smooth_field(shape, rng.uniform(1, 4), rng)
        image += body * texture * _log_uniform(rng, 0.1, 1.0)
    return image


def filaments(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Smooth random curves: microtubules, actin, neurites, ER tubules."""
    image = np.zeros(shape)
    for _ in range(int(rng.integers(3, 40))):
        steps = int(rng.integers(40, 6 * max(shape)))
        turn = rng.uniform(0.01, 0.15)
        heading = np.cumsum(rng.normal(0, turn, steps)) + rng.uniform(0, 2 * np.pi)
        start = rng.uniform(0, shape)
        path = [np.cumsum(np.sin(heading)) * 0.5, np.cumsum(np.cos(heading)) * 0.5]
        if len(shape) == 3:
            path.insert(0, np.cumsum(rng.normal(0, 0.2, steps)))
        points = np.stack([start[i] + path[i] for i in range(len(shape))])
        inside = np.all((points >= 0) & (points < np.array(shape)[:, None] - 0.5), axis=0)
        idx = tuple(np.rint(points[:, inside]).astype(int))
        np.add.at(image, idx, _log_uniform(rng, 0.2, 1.0))
    return image


def membranes(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Cell outlines: the edges of a random Voronoi tiling, of random width."""
    seeds = rng.uniform(0, shape, size=(int(rng.integers(4, 40)), len(shape)))
    points = _grid(shape).reshape(len(shape), -1).T
    distances, _ = cKDTree(seeds).query(points, k=2)
    gap = (distances[:, 1] - distances[:, 0]).reshape(shape)
    width = rng.uniform(0.5, 2.5)
    return np.exp(-0.5 * (gap / width) ** 2) * (0.4 + 0.6 * _smooth_field(shape, 20, rng))


def puncta(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Diffraction-limited spots: vesicles, single molecules, foci."""
    image = np.zeros(shape)
    count = int(_log_uniform(rng, 10, 0.004 * np.prod(shape) + 11))
    idx = tuple(rng.integers(0, n, count) for n in shape)
    np.add.at(image, idx, _log_uniform(rng, 0.1, 1.0, count))
    return gaussian_filter(image, rng.uniform(0.6, 1.5)) * 10


PHANTOM_KINDS: dict[str, Callable[[Sequence[int], np.random.Generator], np.ndarray]] = {
    "nuclei": nuclei,
    "filaments": filaments,
    "membranes": membranes,
    "puncta": puncta,
}
"""The structures a phantom is built from; a phantom mixes one to three of them."""


def fluorescence_phantom(
    shape: Sequence[int],
    rng: np.random.Generator,
    axial_ratio: tuple[float, float] = (1.0, 1.0),
    kinds: Sequence[str] | None = None,
) -> np.ndarray:
    """One clean phantom (2-D or 3-D), float32 in [0, 1]: structures, PSF blur, background.

    `axial_ratio`: for 3-D phantoms, the PSF's Z sigma is the lateral one times a ratio
    drawn from this range, since a microscope resolves Z two to four times worse than Y and
    X. The default (isotropic) draws nothing, so the default phantoms never change.
    `kinds`: the structures to build it from (names of `PHANTOM_KINDS`), for a test set of
    one structure; by default one to three are drawn at random.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 and tuple(axial_ratio) != (1.0, 1.0):
        raise ValueError(f"axial_ratio applies to 3-D phantoms only, not shape {shape}")
    if kinds is None:
        chosen = rng.choice(list(PHANTOM_KINDS), size=int(rng.integers(1, 4)), replace=False)
    elif not kinds or set(kinds) - set(PHANTOM_KINDS):
        raise ValueError(f"kinds must be some of {sorted(PHANTOM_KINDS)}, got {list(kinds)}")
    else:
        chosen = list(kinds)
    image = np.zeros(shape)
    for name in chosen:
        part = PHANTOM_KINDS[str(name)](shape, rng)
        image += part / (part.max() or 1.0) * _log_uniform(rng, 0.2, 1.0)
    lateral = rng.uniform(0.5, 2.5)
    if tuple(axial_ratio) == (1.0, 1.0):
        image = gaussian_filter(image, lateral)
    else:
        image = gaussian_filter(image, (lateral * rng.uniform(*axial_ratio), lateral, lateral))
    if rng.random() < 0.5:  # a slanted, uneven illumination
        image *= 1 - rng.uniform(0, 0.6) * _smooth_field(shape, max(shape) / 4, rng)
    image /= np.percentile(image, 99.9) or 1.0
    image = np.clip(image, 0, None) ** rng.uniform(0.7, 1.5)  # dynamic range
    background = rng.uniform(0, 0.3) * _smooth_field(shape, max(shape) / 6, rng)
    image = image * rng.uniform(0.5, 1.0) + background + rng.uniform(0, 0.1)
    return np.clip(image / image.max(), 0, 1).astype(np.float32)


def phantom_set(
    count: int,
    shape: Sequence[int],
    seed: int = 0,
    axial_ratio: tuple[float, float] = (1.0, 1.0),
    kinds: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """`count` phantoms from one seed: the same list on every call (resumable training)."""
    rng = np.random.default_rng(seed)
    return [fluorescence_phantom(shape, rng, axial_ratio, kinds) for _ in range(count)]
