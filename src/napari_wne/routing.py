"""Pick the shipped model that suits an image's noise, from the noisy image alone.

A model trained on white noise reads spatially correlated noise (data that was registered,
resampled, binned or processed on the camera) as texture and keeps it; a model trained on
correlated noise smooths the finest detail of white-noise images a little more than it
should (docs/results.md measures both). ``model="auto"`` therefore measures the noise
autocorrelation of one plane (`napari_wne.noise_stats.estimate_correlation`) and runs:

- `CORRELATED_NOISE_MODEL` when the correlation falls from lag 1 to lag 2 faster than
  from lag 2 to lag 3, by at least `DROP_THRESHOLD` (`drop_excess`). Smoothed noise
  decays within a pixel or two: it drops steeply from lag 1 and hardly at all after
  lag 2. Signal left in the measurement (smooth structure everywhere, fine detail at high
  photon counts) decays about as fast between each pair of lags and must not switch
  models. White noise on the real pairs' clean images measures at most 0.02 at any count
  from 20 to 3,000 photons, where the lag-1 excess over lag 2 alone reached 0.16 and sent
  detailed images to the wrong model. The threshold sits where the two models' scores
  cross on the validation field (`benchmarks/routing_threshold.py`, W2S 010_0 at the
  correlated benchmark's middle level);
- `VOLUME_MODEL` otherwise, for a Z-stack of at least `MIN_PLANES` planes that is to be
  denoised in 3-D: the 3-D model sees the neighbouring planes, which a confocal or
  widefield stack samples finer than its axial resolution, so they repeat the structure
  under independent noise (`benchmarks/quality_3d.py` measures the gain);
- `WHITE_NOISE_MODEL` otherwise, and for planes too small to measure.

The figures come from `benchmarks/quality_routing.py`, which sweeps the noise kernel and
shows where the correlated-noise model starts to win (docs/results.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .noise_stats import estimate_correlation

__all__ = [
    "AUTO",
    "CORRELATED_NOISE_MODEL",
    "VOLUME_MODEL",
    "WHITE_NOISE_MODEL",
    "ModelChoice",
    "choose_model",
    "drop_excess",
    "routing_sample",
]

AUTO = "auto"
"""The model name that asks for a choice by the image's noise."""
WHITE_NOISE_MODEL = "unet-wne"
CORRELATED_NOISE_MODEL = "unet-wne-corr"
VOLUME_MODEL = "unet-wne-3d"
MIN_PLANES = 8
"""Fewer Z planes than this are denoised plane by plane: the 3-D model has little to add."""
DROP_THRESHOLD = 0.09
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


def drop_excess(lags: Sequence[float]) -> float:
    """How much faster the noise correlation falls from lag 1 to 2 than from lag 2 to 3.

    The second difference of the correlation at lags 1-3: a constant or slowly decaying
    part (signal, or the bias of `estimate_correlation`) cancels in it, while noise
    smoothed by a small kernel, which is gone by lag 2, keeps nearly all its lag-1 value.
    """
    first, second, third = lags[:3]
    return float((first - second) - (second - third))


def routing_sample(axes: str, shape: Sequence[int]) -> tuple[int | slice, ...]:
    """The index of the plane to measure in an image with these `axes` (letters of "TCZYX"):
    the middle of every other axis, the central `SAMPLE_SIDE` crop of Y and X. Reading it
    costs at most a few MB."""
    if len(axes) != len(shape) or not {"Y", "X"} <= set(axes.upper()):
        raise ValueError(f"axes {axes!r} must name Y and X and fit the shape {tuple(shape)}")
    return tuple(
        slice(max(0, (n - SAMPLE_SIDE) // 2), max(0, (n - SAMPLE_SIDE) // 2) + SAMPLE_SIDE)
        if a in "YX"
        else n // 2
        for a, n in zip(axes.upper(), shape, strict=True)
    )


def choose_model(plane: np.ndarray, planes: int = 1) -> ModelChoice:
    """The shipped model for the noise of `plane` (a 2-D array), with the reason.

    `planes`: the Z planes of each volume when the image is to be denoised in 3-D (1 when
    it has no Z, or is to be denoised plane by plane).
    """
    plane = np.asarray(plane, dtype=np.float64)
    if plane.ndim != 2:
        raise ValueError(f"choose_model measures one 2-D plane, got shape {plane.shape}")
    volume = planes >= MIN_PLANES
    white = VOLUME_MODEL if volume else WHITE_NOISE_MODEL
    stack = f", a stack of {planes} Z planes" if volume else ""
    if min(plane.shape) < MIN_SIDE or not np.isfinite(plane).all():
        return ModelChoice(white, None, f"plane {plane.shape} too small to measure its noise")
    lags = tuple(round(float(c), 3) for c in estimate_correlation(plane))
    said = ", ".join(f"{c:.2f}" for c in lags)
    if drop_excess(lags) >= DROP_THRESHOLD:
        return ModelChoice(
            CORRELATED_NOISE_MODEL, lags, f"spatially correlated noise (lags 1-3: {said})"
        )
    return ModelChoice(white, lags, f"near-white noise (lags 1-3: {said}){stack}")
