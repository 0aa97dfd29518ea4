"""Training data: read images, cut random patches, and synthesize realistic noise.

Everything random takes an explicit generator (numpy for crops, torch for noise), so a run
is reproducible from its seed and a resumed run continues the exact same stream of batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
import torch

from .camera import CameraNoise, _log_uniform, _uniform, correlate, simulate_camera
from .modes import NOISE

__all__ = [
    "IMAGE_SUFFIXES",
    "NOISE_KINDS",
    "NoiseConfig",
    "PatchSampler",
    "find_images",
    "jitter_intensity",
    "load_clean_images",
    "load_noisy_images",
    "load_pairs",
    "make_synthetic_pairs",
    "normalize_intensity",
    "read_image",
    "synthesize_noise",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
"""File types read from folders: TIFF through tifffile, the rest through imageio."""

Scale = Literal["auto", "dtype", "percentile"]

NOISE_KINDS = NOISE.values
"""The kinds of synthetic noise `NoiseConfig` knows (defined in `napari_wne.modes.NOISE`)."""


# --- reading images -------------------------------------------------------------------------


def find_images(paths_or_dirs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand folders into their image files (sorted, not recursive); keep files as given."""
    if isinstance(paths_or_dirs, (str, Path)):
        paths_or_dirs = [paths_or_dirs]
    found: list[Path] = []
    for entry in map(Path, paths_or_dirs):
        if entry.is_dir():
            files = sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {entry}")
            found.extend(files)
        elif entry.is_file():
            found.append(entry)
        else:
            raise FileNotFoundError(f"{entry} is neither an image file nor a folder")
    return found


def read_image(path: str | Path) -> np.ndarray:
    """Read one image as stored; colour (a last axis of 3 or 4) becomes grey by the mean.

    Alpha is dropped. A 3-D array whose last axis is not colour is a stack (ZYX or TYX).
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        image = tifffile.imread(path)
    else:
        import imageio.v3 as iio  # napari's own dependency; imported late to keep import light

        image = iio.imread(path)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        dtype = image.dtype
        image = image[..., :3].mean(axis=-1)
        if dtype.kind in "iu":  # keep the integer type, so the scaling rule still sees it
            image = np.rint(image).astype(dtype)
    image = np.squeeze(image)
    if image.ndim < 2:
        raise ValueError(f"{path} holds a {image.ndim}-D array; need a 2-D image or a stack")
    return image


def normalize_intensity(
    image: np.ndarray, scale: Scale = "auto", *, clip: bool = True
) -> np.ndarray:
    """Map an image's intensities to about [0, 1], as float32.

    ``"dtype"`` divides by the integer type's maximum (255 for uint8): natural 8-bit images
    use their full range, and the paper's noise levels (sigma in 8-bit units) keep their
    meaning. ``"percentile"`` maps the 0.1th..99.9th percentiles to 0..1: microscopy in
    uint16 often uses a few hundred of its 65535 levels, and a camera offset would otherwise
    count as photons when Poisson noise is synthesized. ``"auto"`` takes ``"dtype"`` for
    uint8 and ``"percentile"`` for everything else. `clip` bounds the result to [0, 1]
    (right for clean images; noisy images keep their tails, or the noise would be biased).
    """
    data = image.astype(np.float64)
    if scale == "auto":
        scale = "dtype" if image.dtype == np.uint8 else "percentile"
    if scale == "dtype":
        if image.dtype.kind not in "iu":
            raise ValueError(f"scale='dtype' needs integer pixels, got {image.dtype}")
        data = data / np.iinfo(image.dtype).max
    elif scale == "percentile":
        low, high = np.percentile(data, [0.1, 99.9])
        if high <= low:  # (almost) constant image: fall back to the full range, if any
            low, high = float(data.min()), float(data.max())
        data = (data - low) / (high - low) if high > low else data - low
    else:
        raise ValueError(f"scale must be 'auto', 'dtype' or 'percentile', got {scale!r}")
    if clip:
        data = np.clip(data, 0.0, 1.0)
    return data.astype(np.float32)


def load_clean_images(
    paths_or_dirs: str | Path | Iterable[str | Path], scale: Scale = "auto"
) -> list[np.ndarray]:
    """Clean training images as float32 in [0, 1] (see `normalize_intensity` for the rule)."""
    return [normalize_intensity(read_image(p), scale) for p in find_images(paths_or_dirs)]


def load_noisy_images(
    paths_or_dirs: str | Path | Iterable[str | Path], scale: Scale = "auto"
) -> list[np.ndarray]:
    """Noisy images for self-supervised training: float32, about [0, 1], tails not clipped."""
    return [
        normalize_intensity(read_image(p), scale, clip=False) for p in find_images(paths_or_dirs)
    ]


def load_pairs(
    noisy: str | Path | Iterable[str | Path],
    clean: str | Path | Iterable[str | Path],
    *,
    match_gain: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(noisy, clean) float32 pairs, matched by sorted file order, in one shared scale.

    With `match_gain`, the clean image is first mapped by the least-squares affine fit
    ``noisy ~ alpha * clean + beta``: averaged acquisitions are often stored with another
    gain or offset than single captures (W2S, FMD), and zero-mean noise leaves the fit
    unbiased. Both images are then scaled by the clean image's percentiles (so the pair
    stays consistent) and neither is clipped.
    """
    noisy_files, clean_files = find_images(noisy), find_images(clean)
    if len(noisy_files) != len(clean_files):
        raise ValueError(
            f"{len(noisy_files)} noisy but {len(clean_files)} clean images; pairs are matched "
            "by sorted file order, so both sides need the same number of files"
        )
    pairs = []
    for noisy_file, clean_file in zip(noisy_files, clean_files, strict=True):
        y = read_image(noisy_file).astype(np.float64)
        x = read_image(clean_file).astype(np.float64)
        if y.shape != x.shape:
            raise ValueError(f"{noisy_file} {y.shape} and {clean_file} {x.shape} differ in shape")
        if match_gain and x.std() > 0:
            alpha, beta = np.polyfit(x.ravel(), y.ravel(), 1)
            x = alpha * x + beta
        low, high = np.percentile(x, [0.1, 99.9])
        span = high - low if high > low else 1.0
        pairs.append((((y - low) / span).astype(np.float32), ((x - low) / span).astype(np.float32)))
    return pairs


# --- patches --------------------------------------------------------------------------------


class PatchSampler:
    """Random patches (crop, flips, 90° turns in the YX plane) from a list of images.

    Each item is one array, or a group of same-shaped arrays (e.g. noisy and clean) that
    receive the identical crop and augmentation. Arrays may have more axes than
    `spatial_dims` (a ZYX stack for 2-D training): a random index is drawn for the extra
    leading axes. Images smaller than the patch are reflect-padded. Items are drawn with
    probability proportional to their number of pixels, so a big image is not undersampled.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | Sequence[np.ndarray]],
        patch_size: int | Sequence[int],
        *,
        spatial_dims: int = 2,
        augment: bool = True,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if not images:
            raise ValueError("no training images given")
        if isinstance(patch_size, int):
            patch_size = (patch_size,) * spatial_dims
        self.patch = tuple(int(p) for p in patch_size)
        if len(self.patch) != spatial_dims or min(self.patch) < 1:
            raise ValueError(f"patch size {patch_size} does not fit {spatial_dims}-D patches")
        self.spatial_dims = spatial_dims
        self.augment = augment
        self.groups = [self._as_group(item) for item in images]
        sizes = np.array([g[0].size for g in self.groups], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def _as_group(self, item: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Stack a group on a new leading axis, padded so every patch (turned or not) fits."""
        arrays = [item] if isinstance(item, np.ndarray) else list(item)
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"arrays of one group must share a shape, got {sorted(shapes)}")
        group = np.stack([np.asarray(a, dtype=np.float32) for a in arrays])
        if group.ndim - 1 < self.spatial_dims:
            raise ValueError(
                f"a {group.ndim - 1}-D image cannot give {self.spatial_dims}-D patches"
            )
        need = list(self.patch)
        if self.augment:  # a 90° turn swaps the last two sides of the crop
            need[-2:] = [max(need[-2:])] * 2
        spatial = group.shape[-self.spatial_dims :]
        pads = [(0, 0)] * (group.ndim - self.spatial_dims)
        pads += [(0, max(0, n - s)) for n, s in zip(need, spatial, strict=True)]
        if any(p[1] for p in pads):
            group = np.pad(group, pads, mode="reflect")  # numpy repeats the mirror as needed
        return group

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """A batch shaped (batch, group size, *patch), float32; same `rng` state, same batch."""
        out = np.empty((batch_size, self.groups[0].shape[0], *self.patch), dtype=np.float32)
        for i in range(batch_size):
            group = self.groups[rng.choice(len(self.groups), p=self.weights)]
            turns = int(rng.integers(4)) if self.augment else 0
            crop_shape = list(self.patch)
            if turns % 2:
                crop_shape[-2:] = crop_shape[-2:][::-1]
            index: list[int | slice] = [slice(None)]
            for size in group.shape[1 : group.ndim - self.spatial_dims]:
                index.append(int(rng.integers(size)))
            spatial = group.shape[-self.spatial_dims :]
            for size, length in zip(spatial, crop_shape, strict=True):
                start = int(rng.integers(size - length + 1))
                index.append(slice(start, start + length))
            patch = group[tuple(index)]
            if self.augment:
                patch = np.rot90(patch, turns, axes=(-2, -1))
                flips = [ax for ax in range(1, patch.ndim) if rng.random() < 0.5]
                if flips:
                    patch = np.flip(patch, axis=flips)
            out[i] = patch
        return out


# --- noise ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseConfig:
    """Which noise to add to clean patches in [0, 1], and the intensity jitter after it.

    kind:
        ``"mixed"``: each patch gets Gaussian noise with probability ``1 - poisson_fraction``
        and Poisson-Gaussian noise otherwise; ``"gaussian"``; ``"poisson-gaussian"``;
        ``"fixed"``: Gaussian noise of one sigma, ``sigma_255 / 255`` (the paper's protocol);
        ``"camera"``: the full camera model of `napari_wne.camera` (photon and read noise,
        sCMOS pixels, hot pixels, correlated noise, bit depth, saturation), set by `camera`.
    """

    kind: Literal["mixed", "gaussian", "poisson-gaussian", "fixed", "camera"] = "mixed"
    sigma_range: tuple[float, float] = (0.01, 0.4)
    """Gaussian sigma, uniform in this range (units of the [0, 1] clean image)."""
    sigma_255: float = 25.0
    """The one sigma of ``kind="fixed"``, in 8-bit units."""
    poisson_fraction: float = 0.5
    photons_range: tuple[float, float] = (1.0, 300.0)
    """Photons at intensity 1, log-uniform: from 1 (very dim) to 300 (a bright image)."""
    read_noise_max: float = 0.1
    """Gaussian read noise of Poisson-Gaussian patches, uniform in [0, read_noise_max]."""
    jitter: bool = True
    """Random contrast a and brightness b, applied to noisy and clean alike."""
    contrast_range: tuple[float, float] = (0.05, 20.0)
    """Contrast a, log-uniform; brightness b = a * U(-1, 1)."""
    camera: CameraNoise = field(default_factory=CameraNoise)
    """The camera model's probabilities and ranges (``kind="camera"`` only)."""
    p_smoothed: float = 0.0
    """Kinds ``"mixed"``, ``"gaussian"`` and ``"poisson-gaussian"``: the share of patches
    whose noise is smoothed by an isotropic Gaussian of `smoothed_sigma_range`. A model for
    white noise still meets mildly correlated noise (lag-1 up to about 0.3) below the point
    where ``model="auto"`` switches to the correlated-noise model, and a fine-tune on
    white noise alone lost up to 0.4 dB there (docs/training.md)."""
    smoothed_sigma_range: tuple[float, float] = (0.3, 0.45)
    """Sigma (px) of that Gaussian, uniform in this range."""

    def __post_init__(self) -> None:
        if isinstance(self.camera, dict):  # read back from JSON (a card or a checkpoint)
            parts = {k: tuple(v) if isinstance(v, list) else v for k, v in self.camera.items()}
            object.__setattr__(self, "camera", CameraNoise(**parts))
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {self.kind!r}")
        low, high = self.sigma_range
        if not 0 <= low <= high:
            raise ValueError(f"sigma_range must be 0 <= low <= high, got {self.sigma_range}")
        if not 0 < self.photons_range[0] <= self.photons_range[1]:
            raise ValueError(f"photons_range must be positive, got {self.photons_range}")
        if not 0 < self.contrast_range[0] <= self.contrast_range[1]:
            raise ValueError(f"contrast_range must be positive, got {self.contrast_range}")
        if not 0.0 <= self.p_smoothed <= 1.0:
            raise ValueError(f"p_smoothed is a probability, in [0, 1]; got {self.p_smoothed}")
        if not 0 < self.smoothed_sigma_range[0] <= self.smoothed_sigma_range[1]:
            raise ValueError(
                f"smoothed_sigma_range must be 0 < low <= high, got {self.smoothed_sigma_range}"
            )


def synthesize_noise(
    clean: torch.Tensor, config: NoiseConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noisy version of clean patches (N, C, *spatial) in [0, 1]; CPU, float32.

    Returns ``(noisy, clean, a)``: both jittered by the same ``a * v + b`` when
    ``config.jitter``, and ``a`` per patch (shape (N,)), so the loss can be divided by
    ``a**2`` and every patch weighs the same whatever its intensity scale.
    """
    n = clean.shape[0]
    view = (n,) + (1,) * (clean.ndim - 1)
    x = clean.to(torch.float64)
    if config.kind == "camera":
        noisy, x = simulate_camera(x, config.camera, generator)
        return _finish(noisy, x, config, generator)
    if config.kind == "fixed":
        sigma = torch.full((n,), config.sigma_255 / 255.0, dtype=torch.float64)
        return _finish(x + sigma.view(view) * _randn(x, generator), x, config, generator)
    fraction = {"gaussian": 0.0, "poisson-gaussian": 1.0}.get(config.kind, config.poisson_fraction)
    shot = torch.rand(n, generator=generator, dtype=x.dtype) < fraction
    sigma = _uniform(n, *config.sigma_range, generator).view(view)
    noisy = x + sigma * _randn(x, generator)
    if shot.any():  # Poisson sampling is the costly part: only where it is used
        xs = x[shot]
        photons = _log_uniform(len(xs), *config.photons_range, generator).view((-1, *view[1:]))
        read = _uniform(len(xs), 0.0, config.read_noise_max, generator).view((-1, *view[1:]))
        counts = torch.poisson(xs.clamp(min=0) * photons, generator=generator)
        noisy[shot] = counts / photons + read * _randn(xs, generator)
    if config.p_smoothed > 0:  # no draws otherwise: older recipes keep their noise exactly
        noisy, x = correlate(noisy, x, _smoothing(config), generator)
    return _finish(noisy, x, config, generator)


def _smoothing(config: NoiseConfig) -> CameraNoise:
    """The camera's correlated-noise stage reduced to an isotropic smoothing of the noise."""
    return CameraNoise(
        p_correlated=config.p_smoothed,
        p_resample=0.0,
        p_anisotropic=0.0,
        kernel_sigma_range=config.smoothed_sigma_range,
    )


def _randn(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype)


def _finish(
    noisy: torch.Tensor, x: torch.Tensor, config: NoiseConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    (noisy, x), a = jitter_intensity((noisy, x), config, generator)
    return noisy.float(), x.float(), a.float()


def jitter_intensity(
    tensors: Sequence[torch.Tensor], config: NoiseConfig, generator: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Apply one random ``a * v + b`` per patch to every tensor (N, C, *spatial) alike.

    Plain networks must see many intensity scales to cope with real data; WNE networks do
    not care (they are equivariant), and the ``a`` returned lets the loss ignore the scale.
    With ``config.jitter`` off, the tensors come back as they are and ``a`` is 1.
    """
    n = tensors[0].shape[0]
    if not config.jitter:
        return list(tensors), torch.ones(n, dtype=torch.float64)
    view = (n,) + (1,) * (tensors[0].ndim - 1)
    a = _log_uniform(n, *config.contrast_range, generator)
    b = a * _uniform(n, -1.0, 1.0, generator)
    out = [(a.view(view) * t.double() + b.view(view)).to(t.dtype) for t in tensors]
    return out, a


def make_synthetic_pairs(
    clean_images: Sequence[np.ndarray], config: NoiseConfig, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed (noisy, clean) validation pairs: the same noise on every call with `seed`.

    The jitter is off: a validation PSNR should be read in the images' own [0, 1] scale.
    """
    gen = torch.Generator().manual_seed(seed)
    plain = replace(config, jitter=False)
    pairs = []
    for image in clean_images:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        noisy, clean, _ = synthesize_noise(x, plain, gen)
        pairs.append((noisy[0, 0].numpy(), clean[0, 0].numpy()))
    return pairs
