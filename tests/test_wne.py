"""The WNE wrapper: f(a*y + b) = a*f(y) + b for any backbone, and it still trains."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_wne import BACKBONES, WNE, build_backbone
from napari_wne.wne import instance_stats

PLAIN = [name for name, spec in BACKBONES.items() if not spec.equivariant]
SHAPES = {2: (2, 1, 20, 23), 3: (1, 1, 10, 12, 13)}


def _model(name: str, dims: int, dtype: torch.dtype, wrap: bool = True) -> torch.nn.Module:
    torch.manual_seed(7)
    backbone = build_backbone(name, spatial_dims=dims)
    model = WNE(backbone) if wrap else backbone
    return model.to(dtype).eval()


def _equivariance_error(model, y: torch.Tensor, a: float, b: float) -> float:
    """max |f(a*y + b) - (a*f(y) + b)| relative to a*std(y)."""
    with torch.no_grad():
        transformed = model(a * y + b)
        expected = a * model(y) + b
    return float((transformed - expected).abs().max() / (a * y.double().std(unbiased=False)))


affine = {
    "a": st.floats(1e-3, 1e3),
    "b": st.floats(-1e4, 1e4),
    "seed": st.integers(0, 2**31 - 1),
    "scale": st.floats(1e-2, 1e4),
}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(BACKBONES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**affine)
def test_wrapped_backbone_is_equivariant_float64(name, dims, a, b, seed, scale):
    """float64 holds 53 bits: |b| <= 1e5*a*std(y) keeps a*y + b exact to far below 1e-9."""
    model = _model(name, dims, torch.float64)
    g = torch.Generator().manual_seed(seed)
    scale = max(scale, abs(b) / (1e5 * a))
    y = scale * torch.randn(SHAPES[dims], generator=g, dtype=torch.float64) + 3.0 * scale
    assert _equivariance_error(model, y, a, b) <= 1e-9


@pytest.mark.parametrize("name", sorted(BACKBONES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**affine)
def test_wrapped_backbone_is_equivariant_float32(name, a, b, seed, scale):
    """float32 holds 24 bits: keep a*y + b representable by tying the image scale to |b|."""
    model = _model(name, 2, torch.float32)
    g = torch.Generator().manual_seed(seed)
    scale = max(scale, abs(b) / (10 * a))
    y = (scale * torch.randn(SHAPES[2], generator=g, dtype=torch.float64)).float()
    transformed = (a * y.double() + b).float()
    # Compare against the image that the float32 input really holds.
    y = ((transformed.double() - b) / a).float()
    with torch.no_grad():
        out = model(transformed).double()
        expected = a * model(y).double() + b
    err = (out - expected).abs().max() / (a * y.double().std(unbiased=False))
    assert err <= 1e-4


@pytest.mark.parametrize("name", PLAIN)
def test_plain_backbones_are_not_equivariant(name):
    model = _model(name, 2, torch.float64, wrap=False)
    y = torch.randn(SHAPES[2], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert _equivariance_error(model, y, a=3.7, b=120.0) > 1e-3


def test_ne_arch_baseline_is_equivariant_without_wrapper():
    """It computes on raw intensities, so its rounding error scales with |a*y + b|.

    (WNE removes the offset before the network: that is why it meets the tighter bound.)
    """
    model = _model("ne-dncnn", 2, torch.float64, wrap=False)
    y = torch.randn(SHAPES[2], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for a, b in [(1e-3, -1e4), (3.7, 120.0), (1e3, 1e4)]:
        with torch.no_grad():
            error = (model(a * y + b) - (a * model(y) + b)).abs().max()
        assert error <= 1e-9 * (a * y + b).abs().max()


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("value", [0.0, 1000.5, -3.0e4, 1e-30])
def test_constant_instance_returns_its_constant(name, value):
    model = _model(name, 2, torch.float32)
    y = torch.full(SHAPES[2], value)
    y[1] = torch.randn(SHAPES[2][1:])  # a non-constant neighbour in the batch is unaffected
    with torch.no_grad():
        out = model(y)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], y[0], rtol=1e-6, atol=0.0)
    assert out[1].std() > 0


@pytest.mark.parametrize("residual", [False, True])
def test_residual_form_is_equivariant_and_keeps_constants(residual):
    torch.manual_seed(0)
    model = WNE(build_backbone("unet", spatial_dims=2), residual=residual).double().eval()
    y = torch.randn(SHAPES[2], dtype=torch.float64)
    assert _equivariance_error(model, y, a=0.02, b=-900.0) <= 1e-9
    constant = torch.full(SHAPES[2], 42.0, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(constant), constant)


def test_statistics_are_pooled_over_channels_and_voxels():
    y = torch.tensor([[[1.0, 3.0]], [[5.0, 5.0]]]).reshape(2, 2, 1, 1)
    mean, std = instance_stats(y)
    assert mean.flatten().tolist() == [2.0, 5.0]
    assert std.flatten().tolist() == [1.0, 0.0]  # population std, not N-1


def test_paper_eps_guard_is_available_and_breaks_exactness_for_dim_images():
    torch.manual_seed(0)
    backbone = build_backbone("unet", spatial_dims=2)
    exact = WNE(backbone).double().eval()
    paper = WNE(backbone, eps=1e-5).double().eval()
    y = torch.randn(SHAPES[2], dtype=torch.float64)
    assert _equivariance_error(exact, y, a=1e-3, b=5.0) <= 1e-9
    assert _equivariance_error(paper, y, a=1e-3, b=5.0) > 1e-6
    with pytest.raises(ValueError, match="eps"):
        WNE(backbone, eps=-1.0)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_one_step_lowers_the_loss_through_the_wrapper(name):
    """A small gradient step (length 1e-3 in parameter space) must lower a fixed-batch loss."""
    torch.manual_seed(3)
    model = WNE(build_backbone(name, spatial_dims=2)).train()
    clean = torch.rand(4, 1, 24, 24) * 200 + 50
    noisy = clean + 20 * torch.randn_like(clean)
    loss = torch.nn.functional.mse_loss(model(noisy), clean)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    assert norm > 0
    torch.optim.SGD(model.parameters(), lr=1e-3 / float(norm)).step()
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(model(noisy), clean)
    assert after < loss.detach()


def test_statistics_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = WNE(build_backbone("unet", spatial_dims=2)).eval()
    y = torch.randn(SHAPES[2]) * 30 + 4000  # bright: bf16 would lose the mean entirely
    with torch.no_grad():
        reference = model(y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(y)
    assert mixed.dtype == torch.float32
    # bf16 carries ~3 significant digits in the normalized domain, not around the mean of 4000.
    assert float((mixed - reference).abs().max()) < 0.1 * float(y.std())


def test_wrapper_rejects_an_unbatched_tensor_and_a_shape_changing_backbone():
    with pytest.raises(ValueError, match="N, C"):
        WNE(torch.nn.Identity())(torch.zeros(5, 5))
    shrink = WNE(torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(RuntimeError, match="changed the shape"):
        shrink(torch.randn(1, 1, 8, 8))


@pytest.mark.parametrize(("offset", "scale"), [(0.0, 15.0), (1e9, 15.0), (-1e300, 1e294)])
def test_float64_input_to_a_float32_backbone_keeps_offsets_of_any_size(offset, scale):
    """The engine's path: statistics and normalization in float64, only the normalized
    values (of order one) cast to the float32 backbone, and the map back in float64.
    (float32 spaces values 64 apart at 1e9, and holds nothing near 1e300.)"""
    torch.manual_seed(0)
    model = WNE(build_backbone("dncnn", spatial_dims=2)).eval()
    y = scale * torch.randn(SHAPES[2], dtype=torch.float64) + offset
    held = y - offset  # exact (Sterbenz): the signal the float64 input really holds
    with torch.no_grad():
        shifted, near_zero = model(y), model(held)
    assert shifted.dtype == torch.float64 and torch.isfinite(shifted).all()
    error = ((shifted - offset) - near_zero).abs().max() / held.std(unbiased=False)
    assert error <= 1e-5
