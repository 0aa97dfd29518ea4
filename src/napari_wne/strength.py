"""Denoising strength: how much of the denoiser's change to an image to keep.

A network trained on noisy data smooths a little fine detail along with the noise, and
where there is little noise to remove, that loss can outweigh the gain: at 3,000 photons
the shipped models score under the noisy input on correlated noise against the real
references (docs/results.md, "Little noise"; against exact phantoms they stay above it).
Giving back part of the input, ``strength * f(y) + (1 - strength) * y``, returns that
detail with part of the noise. No single value suits every photon count, and
none could be read reliably off the noisy image (a rule from the residual's variance in
the flattest patches chose 0.96 where 0.76 was right; Stein's unbiased risk estimate picks
the best value when the noise's level is known, but it needs that level to within a few
per cent, and read off the image it left most of the gain), so the default is the full
result and the user chooses, with the preview in napari or the figures of
`benchmarks/quality_photons.py`.

The blend keeps everything exact. It acts voxel by voxel on the blended tiles, so tiled
results still equal whole-image ones; and with f equivariant, f(a*y + b) = a*f(y) + b, so is
the blend: strength * (a*f(y) + b) + (1 - strength) * (a*y + b) = a*(blend of y) + b.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FULL_STRENGTH", "check_strength", "keep_strength"]

FULL_STRENGTH = 1.0
"""The denoiser's result as it is: the default."""


def check_strength(strength: float) -> float:
    """`strength` as a float in [0, 1], or a clear error naming what is wrong."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)):
        raise ValueError(f"strength must be a number from 0 to 1, got {strength!r}")
    value = float(strength)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"strength must be from 0 (the input unchanged) to 1 (the full result), got {value}"
        )
    return value


def keep_strength(result: np.ndarray, noisy: np.ndarray, strength: float) -> np.ndarray:
    """``strength * result + (1 - strength) * noisy`` in `result`'s dtype (in place when
    `strength` is below 1; `result` itself, untouched, at full strength)."""
    if strength >= FULL_STRENGTH:
        return result
    result *= strength
    result += (1.0 - strength) * noisy.astype(result.dtype, copy=False)
    return result
