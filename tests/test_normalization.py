"""Normalization: both statistics, and the rule that only WNE models take them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wne import denoise
from napari_wne.normalization import (
    NormalizationIgnoredWarning,
    global_statistics_apply,
    global_stats,
    instance_stats,
    takes_statistics,
)
from napari_wne.wne import WNE

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")
SMALL = {"device": "cpu", "tile": 64, "halo": 8, "blend": 8, "verbose": False}


@pytest.fixture(scope="module")
def ramp() -> np.ndarray:
    rng = np.random.default_rng(2)
    xx = np.mgrid[0:96, 0:96][1]
    return (50 + 2.0 * xx + rng.normal(0, 5, xx.shape)).astype(np.float32)  # tiles differ


def test_global_stats_of_a_subsample_match_numpy():
    image = np.random.default_rng(0).normal(7, 3, size=(64, 64))
    mean, std = global_stats(lambda step: image[::step, ::step], image.shape)
    assert mean == pytest.approx(image.mean()) and std == pytest.approx(image.std())


def test_instance_stats_are_per_batch_element():
    y = torch.stack([torch.full((1, 4, 4), 2.0), torch.arange(16.0).reshape(1, 4, 4)])
    mean, std = instance_stats(y)
    assert mean.shape == (2, 1, 1, 1) and mean[0].item() == 2.0 and std[0].item() == 0.0
    assert mean[1].item() == pytest.approx(7.5)


def test_only_wne_models_take_statistics():
    assert takes_statistics(WNE(torch.nn.Identity()))
    assert not takes_statistics(torch.nn.Conv2d(1, 1, 3))
    assert not global_statistics_apply("tile", WNE(torch.nn.Identity()), "x")
    with pytest.raises(ValueError, match="norm must be one of"):
        global_statistics_apply("image", WNE(torch.nn.Identity()), "x")


def test_global_norm_changes_a_wne_models_result(ramp):
    tile = denoise(ramp, "dncnn-wne", norm="tile", **SMALL)
    whole = denoise(ramp, "dncnn-wne", norm="global", **SMALL)
    assert np.abs(tile - whole).max() > 1e-3  # the statistics really reach the network


def test_global_norm_on_a_plain_model_says_it_does_nothing(ramp):
    tile = denoise(ramp, "dncnn", norm="tile", **SMALL)
    with pytest.warns(NormalizationIgnoredWarning, match="plain model"):
        whole = denoise(ramp, "dncnn", norm="global", **SMALL)
    np.testing.assert_array_equal(tile, whole)
