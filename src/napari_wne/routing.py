"""Pick the shipped model that suits an image's noise, from the noisy image alone.

A model trained on white noise reads spatially correlated noise (data that was registered,
resampled, binned or processed on the camera) as texture and keeps it; a model trained on
correlated noise smooths the finest detail of white-noise images a little more than it
should (docs/results.md measures both). ``model="auto"`` therefore measures the noise
autocorrelation of one plane (`napari_wne.noise_stats.estimate_correlation`) and runs:

- `CORRELATED_NOISE_MODEL` when the lag-1 correlation is at least `LAG1_THRESHOLD` and
  the lag-2 one at most `LAG2_RATIO` times that: smoothed noise decays within a pixel or
  two (Gaussian smoothing to 0.68 at lag 1 leaves 0.21 at lag 2), while signal left in
  the measurement (smooth structure everywhere, no flat background) decays slowly
  (0.58 then 0.44 on a plane of the bundled clean 3-D sample) and must not switch models;
- `WHITE_NOISE_MODEL` otherwise, and for planes too small to measure.

The thresholds come from `benchmarks/routing.py`, which sweeps the noise kernel and finds
where the correlated-noise model starts to win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .noise_stats import estimate_correlation

__all__ = [
    "AUTO",
    "CORRELATED_NOISE_MODEL",
    "WHITE_NOISE_MODEL",
    "ModelChoice",
    "choose_model",
    "routing_sample",
]

AUTO = "auto"
"""The model name that asks for a choice by the image's noise."""
WHITE_NOISE_MODEL = "unet-wne"
CORRELATED_NOISE_MODEL = "unet-wne-corr"
LAG1_THRESHOLD = 0.3
LAG2_RATIO = 0.6
SAMPLE_SIDE = 1024
"""The central crop of one plane that is measured: enough flat patches, cheap to read."""
MIN_SIDE = 48
"""`estimate_correlation` needs at least 2x2 patches of 24 px."""


@dataclass(frozen=True)
class ModelChoice:
    """The model picked for an image, the correlation it was picked on, and why."""

    model: str
    correlation: tuple[float, ...] | None
    reason: str


def routing_sample(shape: Sequence[int]) -> tuple[int | slice, ...]:
    """The index of the plane to measure: the middle of every leading axis, the central
    `SAMPLE_SIDE` crop of the last two. Reading it costs at most a few MB."""
    leading = tuple(n // 2 for n in shape[:-2])
    crop = tuple(
        slice(max(0, (n - SAMPLE_SIDE) // 2), max(0, (n - SAMPLE_SIDE) // 2) + SAMPLE_SIDE)
        for n in shape[-2:]
    )
    return leading + crop


def choose_model(plane: np.ndarray) -> ModelChoice:
    """The shipped model for the noise of `plane` (a 2-D array), with the reason."""
    plane = np.asarray(plane, dtype=np.float64)
    if plane.ndim != 2:
        raise ValueError(f"choose_model measures one 2-D plane, got shape {plane.shape}")
    if min(plane.shape) < MIN_SIDE or not np.isfinite(plane).all():
        return ModelChoice(
            WHITE_NOISE_MODEL, None, f"plane {plane.shape} too small to measure its noise"
        )
    lags = tuple(round(float(c), 3) for c in estimate_correlation(plane))
    said = ", ".join(f"{c:.2f}" for c in lags)
    if lags[0] >= LAG1_THRESHOLD and lags[1] <= LAG2_RATIO * lags[0]:
        return ModelChoice(
            CORRELATED_NOISE_MODEL, lags, f"spatially correlated noise (lags 1-3: {said})"
        )
    return ModelChoice(WHITE_NOISE_MODEL, lags, f"near-white noise (lags 1-3: {said})")
