"""Scores against a clean reference, fair across intensity scales.

Averaged or clean acquisitions are often stored with another gain and offset than the noisy
capture (W2S, FMD), so a raw PSNR mostly measures that mismatch. `scores` first maps the
clean image to [0, 1] by its 0.1/99.9 percentiles, then fits the prediction to it by least
squares (``alpha * prediction + beta``), as the W2S and CARE evaluations do, and scores
the fitted prediction with data range 1. The same rule applies to every method compared.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fit_to", "fitted_psnr", "psnr", "scores"]


def psnr(prediction: np.ndarray, clean: np.ndarray) -> float:
    """PSNR in dB with the clean image's own range (max - min) as the peak.

    The peak follows the data, so scores compare across images stored in any units.
    """
    clean = clean.astype(np.float64)
    mse = float(np.mean((prediction.astype(np.float64) - clean) ** 2))
    peak = float(clean.max() - clean.min()) or 1.0
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def fit_to(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``alpha * prediction + beta`` closest to `target` in the least-squares sense."""
    x = prediction.astype(np.float64).ravel()
    y = target.astype(np.float64).ravel()
    if x.std() == 0:
        return np.full(prediction.shape, y.mean())
    alpha, beta = np.polyfit(x, y, 1)
    return alpha * prediction.astype(np.float64) + beta


def _fitted(prediction: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the fitted prediction, the clean image mapped to [0, 1]): the rule above."""
    clean = clean.astype(np.float64)
    low, high = np.percentile(clean, [0.1, 99.9])
    reference = (clean - low) / ((high - low) or 1.0)
    return fit_to(prediction, reference), reference


def _unit_psnr(fitted: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((fitted - reference) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def fitted_psnr(prediction: np.ndarray, clean: np.ndarray) -> float:
    """The PSNR of `scores` alone, without the SSIM: for searches that score many candidates."""
    return _unit_psnr(*_fitted(prediction, clean))


def scores(prediction: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(PSNR in dB, SSIM) of `prediction` against `clean` after the gain fit above."""
    from skimage.metrics import structural_similarity

    fitted, reference = _fitted(prediction, clean)
    ssim = structural_similarity(fitted, reference, data_range=1.0)
    return _unit_psnr(fitted, reference), float(ssim)
