"""The training losses (`napari_wne.losses`): what each rewards."""

from __future__ import annotations

import pytest
import torch

from napari_wne.losses import LOG_MSE_FLOOR, patch_loss


def test_log_mse_weighs_a_clean_patch_like_a_noisy_one_where_mse_ignores_it():
    """Halving a patch's error is worth the same to log-MSE whether the patch is noisy or
    nearly clean (the same gain in dB); to MSE the clean patch's half barely counts."""
    target = torch.zeros(2, 1, 8, 8)  # errors of 20 and 34 dB: well above the 60-dB floor
    error = torch.tensor([0.1, 0.02]).reshape(2, 1, 1, 1) * torch.ones(2, 1, 8, 8)
    a = torch.ones(2)

    def gain(kind: str, patch: int) -> float:
        halved = error.clone()
        halved[patch] /= 2
        return float(
            patch_loss(error, target, a, None, kind) - patch_loss(halved, target, a, None, kind)
        )

    assert gain("log-mse", 0) == pytest.approx(gain("log-mse", 1), rel=0.01)
    assert gain("mse", 1) < gain("mse", 0) / 20


def test_the_jitter_scale_is_divided_out():
    """A patch whose intensities the jitter scaled by 3 has 9 times the squared error; the
    loss sees the same error as at scale 1."""
    target = torch.zeros(1, 1, 4, 4)
    out = torch.full((1, 1, 4, 4), 0.1)
    at_one = patch_loss(out, target, torch.ones(1))
    assert float(patch_loss(3 * out, target, torch.full((1,), 3.0))) == pytest.approx(float(at_one))


def test_blind_spot_loss_counts_only_the_masked_pixels():
    target = torch.zeros(1, 1, 4, 4)
    out = torch.zeros(1, 1, 4, 4)
    out[0, 0, 0, 0] = 1.0  # wrong, but not masked
    out[0, 0, 1, 1] = 0.5  # flat index 5
    loss = patch_loss(out, target, torch.ones(1), torch.tensor([[5, 6]]))
    assert float(loss) == pytest.approx(0.25 / 2)


def test_a_perfect_patch_stops_pulling_at_the_floor():
    zero = torch.zeros(1, 1, 4, 4)
    loss = patch_loss(zero, zero, torch.ones(1), kind="log-mse")
    assert float(loss) == pytest.approx(float(torch.log(torch.tensor(LOG_MSE_FLOOR))))
