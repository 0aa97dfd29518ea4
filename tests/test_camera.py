"""The camera noise model: each part does what it says, at the rate and range it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wne.camera import CameraNoise, simulate_camera
from napari_wne.datasets import NoiseConfig, synthesize_noise

NOTHING = {
    "p_gaussian_only": 0.0,
    "p_scmos": 0.0,
    "p_hot": 0.0,
    "p_correlated": 0.0,
    "p_quantize": 0.0,
    "read_noise_range": (0.0, 0.0),
}


def camera(**parts) -> CameraNoise:
    return CameraNoise(**{**NOTHING, **parts})


def run(config: CameraNoise, value: float = 0.5, shape=(8, 1, 96, 96), seed: int = 0):
    clean = torch.full(shape, value)
    noisy, target = simulate_camera(clean, config, torch.Generator().manual_seed(seed))
    return noisy.numpy(), target.numpy()


def lag_correlation(noise: np.ndarray, lag: int) -> float:
    e = noise - noise.mean()
    return float((e[..., :-lag] * e[..., lag:]).mean() / e.var())


def test_photon_noise_has_the_poisson_variance():
    noisy, target = run(camera(photons_range=(40.0, 40.0)))
    # 0.5 * 40 = 20 photons: variance 20 photons^2, i.e. 20 / 40^2 in image units
    assert np.var(noisy - target) == pytest.approx(20 / 40**2, rel=0.05)
    assert np.mean(noisy) == pytest.approx(0.5, abs=0.01)


def test_read_noise_adds_its_variance_in_electrons():
    noisy, target = run(camera(photons_range=(40.0, 40.0), read_noise_range=(3.0, 3.0)))
    assert np.var(noisy - target) == pytest.approx((20 + 9) / 40**2, rel=0.05)


@pytest.mark.parametrize(("sigma", "low", "high"), [(0.3, -0.02, 0.05), (0.75, 0.55, 0.7)])
def test_kernel_correlation_spans_white_to_widefield(sigma, low, high):
    config = camera(
        photons_range=(100.0, 100.0),
        p_correlated=1.0,
        p_resample=0.0,
        p_anisotropic=0.0,
        kernel_sigma_range=(sigma, sigma),
    )
    noisy, target = run(config)
    assert low < lag_correlation(noisy - target, 1) < high
    white, clean = run(camera(photons_range=(100.0, 100.0)))
    # smoothing keeps the noise variance, so the noise level stays the one drawn
    assert np.var(noisy - target) == pytest.approx(np.var(white - clean), rel=0.1)


def test_resampling_moves_capture_and_target_together():
    ramp = torch.linspace(0, 1, 64).repeat(2, 1, 64, 1)
    config = camera(photons_range=(1e6, 1e6), p_correlated=1.0, p_resample=1.0)
    noisy, target = simulate_camera(ramp, config, torch.Generator().manual_seed(1))
    assert not torch.allclose(target, ramp.double())  # the target was resampled too ...
    assert float((noisy - target).abs().max()) < 0.01  # ... exactly as the capture was


def test_quantization_saturates_capture_and_target_alike():
    config = camera(photons_range=(1e4, 1e4), p_quantize=1.0, bit_depths=(8,), fill_range=(2, 2))
    noisy, target = run(config, value=1.0)  # intensity 1 lands at twice full scale ...
    assert np.allclose(noisy, target)  # ... so capture and target clip at one level
    assert noisy.max() < 0.55


def test_quantization_rounds_to_whole_adu():
    config = camera(
        photons_range=(1e4, 1e4), p_quantize=1.0, bit_depths=(8,), fill_range=(0.03, 0.03)
    )
    noisy, _ = run(config, value=0.5)  # a dim 8-bit export: 0.5 is about 4 ADU
    assert len(np.unique(noisy[0])) <= 4


def test_hot_pixels_are_rare_and_bright():
    config = camera(photons_range=(1e5, 1e5), p_hot=1.0, hot_fraction_range=(1e-3, 1e-3))
    noisy, target = run(config, shape=(4, 1, 256, 256))
    hot = noisy > target.max() * 1.5
    assert 0.0002 < hot.mean() < 0.002


def test_scmos_pixels_vary_in_gain():
    config = camera(photons_range=(1e6, 1e6), p_scmos=1.0, pixel_gain_sd_range=(0.05, 0.05))
    noisy, target = run(config)
    assert np.std(noisy / target) == pytest.approx(0.05, rel=0.1)


def test_the_full_model_is_finite_reproducible_and_on_by_its_kind():
    clean = torch.rand(16, 1, 48, 48)
    one = synthesize_noise(clean, NoiseConfig(kind="camera"), torch.Generator().manual_seed(3))
    two = synthesize_noise(clean, NoiseConfig(kind="camera"), torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    assert all(torch.isfinite(t).all() for t in one)


def test_noise_config_reads_its_camera_back_from_json():
    config = NoiseConfig(kind="camera", camera=CameraNoise(bit_depths=(12,)))
    again = NoiseConfig(**{**config.__dict__, "camera": {"bit_depths": [12]}})
    assert again.camera == config.camera


def test_white_noise_kinds_smooth_just_the_share_they_are_given():
    clean = torch.full((64, 1, 64, 64), 0.5)

    def noise(share: float) -> np.ndarray:
        config = NoiseConfig(
            kind="gaussian",
            sigma_range=(0.1, 0.1),
            jitter=False,
            p_smoothed=share,
            smoothed_sigma_range=(0.45, 0.45),
        )
        noisy, target, _ = synthesize_noise(clean, config, torch.Generator().manual_seed(0))
        return (noisy - target).numpy()

    white, smoothed, half = noise(0.0), noise(1.0), noise(0.5)
    assert abs(lag_correlation(white, 1)) < 0.01
    assert 0.1 < lag_correlation(smoothed, 1) < 0.35  # mild: well under widefield's 0.6
    assert np.var(smoothed) == pytest.approx(np.var(white), rel=0.05)  # variance kept
    correlated = [lag_correlation(patch, 1) > 0.07 for patch in half]
    assert 0.3 < np.mean(correlated) < 0.7


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="probability"):
        CameraNoise(p_hot=1.5)
    with pytest.raises(ValueError, match="probability"):
        NoiseConfig(p_smoothed=-0.1)
    with pytest.raises(ValueError, match="low <= high"):
        CameraNoise(photons_range=(10.0, 1.0))
