"""Scores against a clean reference: fair across the intensity scales of stored images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_wne.metrics import fitted_psnr, scores


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clean = np.cumsum(rng.random((64, 64)), axis=1)  # a ramp with texture
    return clean + rng.normal(0, 0.5, clean.shape), clean


def test_a_gain_and_offset_on_either_image_change_no_score(pair):
    noisy, clean = pair
    psnr, ssim = scores(noisy, clean)
    assert scores(3.0 * noisy - 7.0, clean) == pytest.approx((psnr, ssim), abs=1e-9)
    assert scores(noisy, 0.01 * clean + 100.0) == pytest.approx((psnr, ssim), abs=1e-6)


def test_the_psnr_is_on_the_references_percentile_range(pair):
    _, clean = pair
    low, high = np.percentile(clean, [0.1, 99.9])
    sigma = 0.01 * (high - low)
    noisy = clean + np.random.default_rng(1).normal(0, sigma, clean.shape)
    # the least-squares fit takes a little of the noise away, so slightly above 40 dB
    assert scores(noisy, clean)[0] == pytest.approx(10 * math.log10(1 / 0.01**2), abs=0.1)
    assert scores(clean, clean)[0] > 200  # the image itself: error at rounding level


def test_fitted_psnr_is_the_psnr_of_scores_without_the_ssim(pair):
    noisy, clean = pair
    assert fitted_psnr(noisy, clean) == scores(noisy, clean)[0]
