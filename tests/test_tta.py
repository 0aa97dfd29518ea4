"""Test-time augmentation: the 8 symmetries averaged, equivariance kept, tiling still exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wne import denoise
from napari_wne.backbones import build_backbone
from napari_wne.tta import DihedralMean, with_tta
from napari_wne.wne import WNE


def small_wne() -> WNE:
    torch.manual_seed(0)
    return WNE(build_backbone("dncnn", spatial_dims=2, depth=3, features=8)).eval()


@torch.no_grad()
def test_the_average_is_invariant_to_every_symmetry_of_the_input():
    model = with_tta(small_wne())
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64)
    model = model.double()
    out = model(x)
    for turns in range(4):
        turned = torch.rot90(x, turns, dims=(-2, -1)).flip(-1)
        back = torch.rot90(model(turned).flip(-1), -turns, dims=(-2, -1))
        torch.testing.assert_close(back, out)


@torch.no_grad()
def test_it_is_the_mean_of_the_eight_transformed_outputs():
    inner = small_wne().double()
    x = torch.rand(2, 1, 16, 20, dtype=torch.float64)
    outputs = []
    for turns in range(4):
        for flip in (False, True):
            t = torch.rot90(x, turns, dims=(-2, -1))
            t = t.flip(-1) if flip else t
            y = inner(t)
            y = y.flip(-1) if flip else y
            outputs.append(torch.rot90(y, -turns, dims=(-2, -1)))
    torch.testing.assert_close(with_tta(inner)(x), torch.stack(outputs).mean(0))


@torch.no_grad()
@pytest.mark.parametrize(("a", "b"), [(3.0, -7.0), (0.01, 1e4)])
def test_wne_stays_exactly_equivariant(a, b):
    model = with_tta(small_wne()).double()
    assert isinstance(model, WNE) and isinstance(model.backbone, DihedralMean)
    x = torch.rand(1, 1, 20, 20, dtype=torch.float64)
    torch.testing.assert_close(model(a * x + b), a * model(x) + b, rtol=1e-9, atol=1e-9 * abs(b))


def test_denoise_with_tta_tiles_exactly_and_differs_from_without(rng):
    image = rng.normal(100, 10, (128, 96)).astype(np.float32)
    # one normalization per image, so tiling is exact (per-tile statistics differ by design)
    whole = denoise(image, "dncnn-wne", tta=True, norm="global", verbose=False)
    tiled = denoise(image, "dncnn-wne", tta=True, norm="global", tile=80, verbose=False)
    plain = denoise(image, "dncnn-wne", norm="global", verbose=False)
    np.testing.assert_allclose(tiled, whole, atol=1e-3 * image.std())
    assert np.abs(whole - plain).max() > 1e-3 * image.std()
