"""A microscope camera, simulated: what turns a clean fluorescence image into a real capture.

Networks trained on white Gaussian or plain Poisson noise read what a real camera adds as
texture, and keep it: noise smoothed by registration, resampling or on-camera processing
(neighbour correlation up to 0.6 on widefield data), sCMOS pixels that each have their own
gain and offset, hot pixels, 8-bit exports, saturated highlights. `simulate_camera` draws
each of these per patch, with its own probability and range (`CameraNoise`), so one model
learns to see through all of them.

The order follows the physics: photons (Poisson) at a random brightness, read noise, the
pixel-to-pixel gain and offset of an sCMOS sensor, hot pixels, spatial correlation (the
noise alone smoothed by a small kernel, or the whole capture resampled at a sub-pixel shift
or zoom), then conversion to ADU at a random bit depth, with rounding and saturation. The
clean target goes through every step that changes the signal (resampling, saturation) and
none that adds noise, so the network learns to undo the noise and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

__all__ = ["CameraNoise", "simulate_camera"]


@dataclass(frozen=True)
class CameraNoise:
    """Probabilities and ranges of each part of the camera model (clean images in [0, 1]).

    Every ``p_*`` is the chance that a patch gets that part; ranges are sampled per patch.
    """

    p_gaussian_only: float = 0.15
    """Additive Gaussian noise instead of photon noise (natural images, processed data)."""
    sigma_range: tuple[float, float] = (0.01, 0.4)
    """Gaussian-only sigma, uniform, in units of the clean image."""
    photons_range: tuple[float, float] = (0.5, 500.0)
    """Photons at clean intensity 1, log-uniform (real single captures: a few to hundreds)."""
    read_noise_range: tuple[float, float] = (0.0, 4.0)
    """Read noise in photo-electrons, uniform (sCMOS about 1-2, EMCCD-less CCD up to 10)."""
    p_scmos: float = 0.25
    pixel_gain_sd_range: tuple[float, float] = (0.0, 0.05)
    """sCMOS pixel-to-pixel gain variation (relative), uniform."""
    pixel_offset_sd_range: tuple[float, float] = (0.0, 1.5)
    """sCMOS pixel-to-pixel offset variation, in electrons, uniform."""
    p_hot: float = 0.15
    hot_fraction_range: tuple[float, float] = (1e-4, 2e-3)
    """Share of hot pixels, log-uniform; each reads a random high value."""
    p_correlated: float = 0.5
    """Spatially correlated noise: by kernel (the noise alone) or by resampling (all)."""
    p_resample: float = 0.3
    """Of the correlated patches, the share resampled (sub-pixel shift and zoom)."""
    kernel_sigma_range: tuple[float, float] = (0.3, 1.0)
    """Gaussian smoothing of the noise, per axis, uniform: lag-1 correlation 0.06 to 0.78."""
    p_anisotropic: float = 0.3
    """Of the kernel patches, the share with another sigma per axis."""
    zoom_range: tuple[float, float] = (1.0, 2.0)
    """Resampling zoom (1 = a pure sub-pixel shift), uniform."""
    p_quantize: float = 0.5
    bit_depths: tuple[int, ...] = (8, 10, 12, 16)
    fill_range: tuple[float, float] = (0.03, 1.2)
    """Where clean intensity 1 lands in the ADU range, log-uniform; above 1 it saturates."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{item.name} is a probability, got {value}")
            if item.name.endswith("_range") and not 0.0 <= value[0] <= value[1]:
                raise ValueError(f"{item.name} must be 0 <= low <= high, got {value}")
        if self.photons_range[0] <= 0 or self.fill_range[0] <= 0 or self.zoom_range[0] < 1:
            raise ValueError("photons_range and fill_range must be positive, zoom_range >= 1")
        if not self.bit_depths or any(not 1 <= b <= 32 for b in self.bit_depths):
            raise ValueError(f"bit_depths must be between 1 and 32, got {self.bit_depths}")


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """`n` draws, one per patch, in float64 (`napari_wne.datasets` draws with these too)."""
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def _log_uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.exp(_uniform(n, math.log(low), math.log(high), gen))


def _chance(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) < p


def _randn(shape: Sequence[int], gen: torch.Generator) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float64)


def simulate_camera(
    clean: torch.Tensor, config: CameraNoise, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A simulated capture of clean patches (N, C, *spatial), and the matching target.

    Both come back as float64 in the clean image's units (intensity 1 = one "peak"), so
    intensities stay comparable from patch to patch; the camera's ADU scale and offset are
    removed again, as a WNE network ignores them anyway.
    """
    n = clean.shape[0]
    view = (n,) + (1,) * (clean.ndim - 1)
    x = clean.to(torch.float64).clamp(min=0.0)
    photons = _log_uniform(n, *config.photons_range, generator).view(view)
    electrons = x * photons
    noisy = torch.poisson(electrons, generator=generator)
    read = _uniform(n, *config.read_noise_range, generator).view(view)
    noisy = noisy + read * _randn(x.shape, generator)
    noisy = _scmos(noisy, config, generator)
    noisy = noisy / photons
    gaussian = _chance(n, config.p_gaussian_only, generator)
    if gaussian.any():
        sigma = _uniform(n, *config.sigma_range, generator).view(view)
        noisy = torch.where(gaussian.view(view), x + sigma * _randn(x.shape, generator), noisy)
    noisy = _hot_pixels(noisy, x, config, generator)
    noisy, x = correlate(noisy, x, config, generator)
    return _quantize(noisy, x, config, generator)


def _scmos(electrons: torch.Tensor, config: CameraNoise, gen: torch.Generator) -> torch.Tensor:
    """Per-pixel gain and offset of an sCMOS sensor, on the chosen patches."""
    n = electrons.shape[0]
    view = (-1,) + (1,) * (electrons.ndim - 1)
    chosen = _chance(n, config.p_scmos, gen)
    gain_sd = _uniform(n, *config.pixel_gain_sd_range, gen)[chosen].view(view)
    offset_sd = _uniform(n, *config.pixel_offset_sd_range, gen)[chosen].view(view)
    if not chosen.any():
        return electrons
    some = electrons[chosen]
    varied = some * (1 + gain_sd * _randn(some.shape, gen)) + offset_sd * _randn(some.shape, gen)
    out = electrons.clone()
    out[chosen] = varied
    return out


def _hot_pixels(
    noisy: torch.Tensor, x: torch.Tensor, config: CameraNoise, gen: torch.Generator
) -> torch.Tensor:
    """Pixels stuck at a random high value (1 to 3 times the patch's peak)."""
    n = noisy.shape[0]
    view = (-1,) + (1,) * (noisy.ndim - 1)
    chosen = _chance(n, config.p_hot, gen)
    share = _log_uniform(n, *config.hot_fraction_range, gen)[chosen].view(view)
    if not chosen.any():
        return noisy
    some = noisy[chosen]
    hot = torch.rand(some.shape, generator=gen, dtype=torch.float64) < share
    peak = x[chosen].flatten(1).amax(dim=1).clamp(min=1e-3).view(view)
    level = peak * (1 + 2 * torch.rand(some.shape, generator=gen, dtype=torch.float64))
    out = noisy.clone()
    out[chosen] = torch.where(hot, level, some)
    return out


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    """A 1-D Gaussian scaled so the sum of its squares is 1: smoothing keeps the variance."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.square().sum().sqrt()


def _smooth(noise: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Separable smoothing of one patch (C, *spatial), reflected at the borders."""
    out = noise
    for axis, sigma in enumerate(sigmas, start=1):
        kernel = _gaussian_kernel(sigma)
        moved = out.movedim(axis, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        pad = min(len(kernel) // 2, flat.shape[-1] - 1)
        k = kernel[len(kernel) // 2 - pad : len(kernel) // 2 + pad + 1]
        flat = F.conv1d(F.pad(flat, (pad, pad), mode="reflect"), k.view(1, 1, -1))
        out = flat.reshape(moved.shape).movedim(-1, axis)
    return out


def _resample(image: torch.Tensor, zoom: float, shift: Sequence[float]) -> torch.Tensor:
    """Linear resampling of one patch (C, *spatial) by `zoom` about a shifted centre."""
    spatial = image.ndim - 1
    theta = torch.zeros(1, spatial, spatial + 1, dtype=image.dtype)
    theta[0, :, :spatial] = torch.eye(spatial, dtype=image.dtype) / zoom
    theta[0, :, spatial] = torch.tensor(list(shift)[::-1], dtype=image.dtype)  # x first
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", align_corners=False)[0]


def correlate(
    noisy: torch.Tensor, x: torch.Tensor, config: CameraNoise, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated noise: smooth the noise alone, or resample capture and target alike.

    Only `config`'s correlated-noise fields count (`p_correlated`, `p_resample`, the kernel,
    zoom and anisotropy): `napari_wne.datasets` uses it for the white-noise kinds too.
    """
    n, spatial = noisy.shape[0], noisy.ndim - 2
    correlated = _chance(n, config.p_correlated, gen)
    resampled = _chance(n, config.p_resample, gen)
    anisotropic = _chance(n, config.p_anisotropic, gen)
    sigmas = _uniform(n * spatial, *config.kernel_sigma_range, gen).view(n, spatial)
    zooms = _uniform(n, *config.zoom_range, gen)
    shifts = torch.rand(n, spatial, generator=gen, dtype=torch.float64) * 2 - 1
    noisy, x = noisy.clone(), x.clone()
    for i in torch.nonzero(correlated).flatten().tolist():
        if resampled[i]:
            zoom = float(zooms[i])
            # a shift within the margin the zoom leaves, plus up to half a pixel
            size = torch.tensor(noisy.shape[2:], dtype=torch.float64)
            limit = (1 - 1 / zoom) + 1.0 / size
            shift = (shifts[i] * limit).tolist()
            noisy[i] = _resample(noisy[i], zoom, shift)
            x[i] = _resample(x[i], zoom, shift)
        else:
            sigma = sigmas[i] if anisotropic[i] else sigmas[i, :1].expand(spatial)
            noise = _smooth((noisy[i] - x[i]).float(), sigma.tolist())  # float32: 4x faster
            noisy[i] = x[i] + noise.double()
    return noisy, x


def _quantize(
    noisy: torch.Tensor, x: torch.Tensor, config: CameraNoise, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """ADU conversion at a random bit depth and offset: rounding, and saturation at the top.

    The target saturates where the capture would (a clean camera image clips too), and
    neither is rounded back: both return in the clean image's units.
    """
    n = noisy.shape[0]
    view = (n,) + (1,) * (noisy.ndim - 1)
    chosen = _chance(n, config.p_quantize, gen).view(view)
    depths = torch.tensor(config.bit_depths, dtype=torch.float64)
    depth = depths[torch.randint(len(depths), (n,), generator=gen)].view(view)
    full = 2.0**depth - 1
    fill = _log_uniform(n, *config.fill_range, gen).view(view)
    offset = (_uniform(n, 0.0, 0.05, gen).view(view) * full).round()
    scale = fill * (full - offset)  # ADU per unit of clean intensity
    adu = torch.minimum((noisy * scale + offset).round().clamp(min=0.0), full)
    target = torch.minimum(x * scale + offset, full)
    quantized = (adu - offset) / scale, (target - offset) / scale
    return torch.where(chosen, quantized[0], noisy), torch.where(chosen, quantized[1], x)
