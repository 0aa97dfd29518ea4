"""Backbones: shapes for any size, dtypes, determinism, receptive fields, architectural NE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_wne.backbones import BACKBONES, build_backbone
from napari_wne.backbones._nd import crop, pad_to_multiple
from napari_wne.backbones.dncnn import DnCNN
from napari_wne.backbones.ne_arch import AffineConv, NEDnCNN, SortPool
from napari_wne.backbones.restormer import DEFAULT_BLOCKS, MDTA, Restormer
from napari_wne.backbones.unet import DEFAULT_WIDTHS, ResUNet

NAMES = sorted(BACKBONES)
ODD_SHAPES = {2: (1, 1, 37, 45), 3: (1, 1, 9, 21, 19)}

# Small but structurally complete variants, for tests where the width is not the point.
SMALL = {
    "dncnn": {"features": 16},
    "ne-dncnn": {"features": 8},
    "unet": {"widths": (4, 8, 8, 8)},
    "restormer": {"width": 4, "heads": (1, 1, 1)},
}
# Total stride of the multi-scale networks at default depth: outputs repeat their
# receptive-field pattern with this period.
PERIOD = {"unet": 2 ** (len(DEFAULT_WIDTHS) - 1), "restormer": 2 ** (len(DEFAULT_BLOCKS) - 1)}


def _build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return build_backbone(name, **kwargs).eval()


def test_registry_lists_the_four_backbones_with_their_receptive_fields():
    assert set(BACKBONES) == {"dncnn", "unet", "restormer", "ne-dncnn"}
    for spec in BACKBONES.values():
        assert spec.receptive_field == spec.build.receptive_field() > 0
        assert spec.spatial_dims == (2, 3)
    assert [n for n, s in BACKBONES.items() if s.equivariant] == ["ne-dncnn"]
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("nope")
    with pytest.raises(ValueError, match="spatial_dims"):
        DnCNN(spatial_dims=1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_default_backbone_keeps_odd_shapes(name: str, spatial_dims: int):
    model = _build(name, spatial_dims=spatial_dims)
    torch.manual_seed(1)
    y = torch.randn(ODD_SHAPES[spatial_dims])
    with torch.inference_mode():
        out = model(y)
    assert out.shape == y.shape
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Not the identity (nor a near-identity a wrong residual sign could produce).
    assert (out - y).abs().mean() > 1e-2 * y.abs().mean()


@pytest.mark.parametrize("name", NAMES)
def test_batches_channels_and_tiny_sizes(name: str):
    """Several instances and channels at once; sizes down to 1 pixel along an axis."""
    model = _build(name, spatial_dims=3, channels=2, **SMALL[name])
    y = torch.randn(3, 2, 1, 6, 5)
    with torch.inference_mode():
        out = model(y)
        single = model(y[1:2])
    assert out.shape == y.shape
    assert torch.isfinite(out).all()
    # Instances do not leak into each other (eval mode: BatchNorm uses running stats).
    torch.testing.assert_close(out[1:2], single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_float64_and_bfloat16_autocast(name: str):
    model = _build(name)
    y = torch.randn(2, 1, 15, 22)
    with torch.inference_mode():
        out32 = model(y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(y)
        out64 = model.double()(y.double())
    assert out64.dtype == torch.float64
    scale = out32.abs().max().item()
    assert (out64 - out32.double()).abs().max() < 1e-4 * scale
    assert torch.isfinite(out_bf16).all()
    assert (out_bf16.float() - out32).abs().max() < 5e-2 * scale


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_the_seed(name: str):
    a, b = _build(name, seed=3, **SMALL[name]), _build(name, seed=3, **SMALL[name])
    c = _build(name, seed=4, **SMALL[name])
    for (key, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), key
    y = torch.randn(1, 1, 19, 26)
    with torch.inference_mode():
        assert torch.equal(a(y), b(y))
        assert not torch.equal(a(y), c(y))


@pytest.mark.parametrize("device", ["meta"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("name", NAMES)
def test_runs_on_other_devices(name: str, device: str):
    """No tensor is created on a fixed device inside the forward pass."""
    model = _build(name, **SMALL[name]).to(device)
    y = torch.randn(2, 1, 13, 18).to(device)
    with torch.no_grad():
        out = model(y)
    assert out.shape == y.shape
    assert out.device == y.device


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_pad_to_multiple_round_trips(spatial_dims: int):
    y = torch.randn(1, 2, *(1, 5, 9)[-spatial_dims:])
    padded, window = pad_to_multiple(y, 8)
    assert all(s % 8 == 0 for s in padded.shape[2:])
    assert torch.equal(crop(padded, window), y)


# --- Receptive fields ------------------------------------------------------------------------


def _freeze_attention(model: nn.Module) -> None:
    """Replay each MDTA's first attention map.

    Transposed attention pools over the whole image, so every output depends (weakly) on
    every pixel; with the maps frozen, what is left is the convolutional path that
    ``receptive_field`` describes.
    """
    for module in model.modules():
        if isinstance(module, MDTA):
            cache: list[torch.Tensor] = []

            def frozen(qk: torch.Tensor, _compute=module.attention, _cache=cache) -> torch.Tensor:
                if not _cache:
                    _cache.append(_compute(qk))
                return _cache[0]

            module.attention = frozen


def _measured_radius(model: nn.Module, spatial_dims: int, radius: int, period: int) -> int:
    """Farthest output that changes when one pixel of a zero image changes, over all axes.

    Each axis is probed on a long thin input (cheap; kernels are cubes, so the thin axes
    do not change what the long one sees), from `period` neighbouring pixels, since
    strided layers make the reach depend on the position modulo the total stride.
    """
    model = model.double().eval()
    length = 2 * radius + 2 * period + 2
    length += -length % period
    width = max(period, 4)
    worst = 0
    for axis in range(spatial_dims):
        shape = [width] * spatial_dims
        shape[axis] = length
        for offset in range(period):
            where = [width // 2] * spatial_dims
            where[axis] = length // 2 + offset
            x = torch.zeros(1, 1, *shape, dtype=torch.float64)
            with torch.no_grad():
                base = model(x)
                x[(0, 0, *where)] = 1.0
                changed = (model(x) != base)[0, 0].nonzero()
            assert len(changed) > 0
            worst = max(worst, (changed[:, axis] - where[axis]).abs().max().item())
    return worst


@pytest.mark.parametrize("name", NAMES)
def test_receptive_field_at_default_depth_matches_measurement(name: str):
    model = _build(name, **SMALL[name])
    _freeze_attention(model)
    radius = BACKBONES[name].receptive_field
    assert _measured_radius(model, 2, radius, PERIOD.get(name, 1)) == radius


@pytest.mark.parametrize(
    ("model", "radius", "period"),
    [
        (DnCNN(spatial_dims=3, depth=5, features=16), DnCNN.receptive_field(depth=5), 1),
        (NEDnCNN(spatial_dims=3, depth=4, features=8), NEDnCNN.receptive_field(depth=4), 1),
        (
            ResUNet(spatial_dims=3, widths=(4, 8), blocks=1),
            ResUNet.receptive_field(levels=2, blocks=1),
            2,
        ),
        (
            Restormer(spatial_dims=3, width=4, blocks=(1, 1), heads=(1, 1)),
            Restormer.receptive_field(blocks=(1, 1)),
            2,
        ),
    ],
    ids=["dncnn", "ne-dncnn", "unet", "restormer"],
)
def test_receptive_field_in_3d_and_other_depths(model: nn.Module, radius: int, period: int):
    _freeze_attention(model)
    assert _measured_radius(model, 3, radius, period) == radius


def test_restormer_attention_is_softmax_of_normalized_channels():
    """The fused Gram-matrix attention equals the textbook formula."""
    torch.manual_seed(0)
    mdta = MDTA(2, 8, heads=2).double()
    nn.init.uniform_(mdta.temperature, 0.5, 2.0)
    x = torch.randn(2, 8, 13, 11, dtype=torch.float64)
    q, k, v = mdta.qkv_dw(mdta.qkv(x)).reshape(2, 3, 2, 4, -1).unbind(1)
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    reference = mdta.project(((logits * mdta.temperature).softmax(-1) @ v).reshape(x.shape))
    torch.testing.assert_close(mdta(x), reference, rtol=1e-12, atol=1e-12)


# --- Architectural normalization equivariance -----------------------------------------------


def _equivariance_errors(model: nn.Module, y: torch.Tensor, trials: int = 8) -> list[float]:
    """max |f(a*y + b) - (a*f(y) + b)| in units of the allowed error, for random (a, b).

    Allowed: 1e-9 of the signal a*std(y), plus float64 rounding of the offset itself
    (1e-12*|b|, ~4500 ulps: outputs near |b| = 1e4 cannot be closer than ~1e-12 apart,
    whatever the network).
    """
    gen = torch.Generator().manual_seed(7)
    pairs = [(1e-3, 1e4), (1e3, -1e4)]
    for _ in range(trials - len(pairs)):
        a = 10 ** (6 * torch.rand((), generator=gen).item() - 3)
        b = 2e4 * torch.rand((), generator=gen).item() - 1e4
        pairs.append((a, b))
    std = y.std(unbiased=False).item()
    with torch.no_grad():
        fy = model(y)
        return [
            (model(a * y + b) - (a * fy + b)).abs().max().item() / (1e-9 * a * std + 1e-12 * abs(b))
            for a, b in pairs
        ]


def test_ne_dncnn_is_equivariant_on_its_own_in_float64():
    model = _build("ne-dncnn").double()
    nn.init.constant_(model.skip_weight, 0.3)
    y = torch.randn(2, 1, 37, 45, dtype=torch.float64)
    assert max(_equivariance_errors(model, y)) < 1.0


def test_ne_dncnn_is_equivariant_in_3d_and_with_several_channels():
    model = _build("ne-dncnn", spatial_dims=3, channels=2, depth=6, features=8).double()
    nn.init.constant_(model.skip_weight, -0.7)
    y = torch.randn(2, 2, 7, 12, 9, dtype=torch.float64)
    assert max(_equivariance_errors(model, y, trials=4)) < 1.0


@pytest.mark.parametrize("batchnorm", [True, False])
def test_plain_dncnn_is_not_equivariant(batchnorm: bool):
    model = _build("dncnn", batchnorm=batchnorm, features=16).double()
    y = torch.randn(2, 1, 37, 45, dtype=torch.float64)
    assert min(_equivariance_errors(model, y)) > 1e3


def test_ne_dncnn_keeps_constant_images_constant_up_to_the_borders():
    """f(c) = c is forced by NE; zero padding would darken the border."""
    model = _build("ne-dncnn", depth=6, features=8).double()
    y = torch.full((1, 1, 11, 14), 123.25, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(y), y, rtol=0, atol=1e-10)


def _randomize(model: nn.Module) -> None:
    """Move every parameter far from its initialization (an unconstrained 'training')."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(3.0 + 2.0 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def test_ne_dncnn_kernels_sum_to_one_and_stay_so_after_training():
    model = _build("ne-dncnn", depth=5, features=8).double()
    affine = [m for m in model.modules() if isinstance(m, AffineConv)]
    assert len(affine) == 5
    assert not any(isinstance(m, nn.ReLU | nn.Conv2d | nn.Conv3d) for m in model.modules())
    assert sum(isinstance(m, SortPool) for m in model.modules()) == 4
    assert all("bias" not in name for name, _ in model.named_parameters())

    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        y = torch.randn(2, 1, 12, 12, dtype=torch.float64)
        loss = (model(y) - y.roll(1, -1)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _randomize(model)
    for conv in affine:
        w = conv.affine_weight()
        sums = w.sum(dim=tuple(range(1, w.ndim)))
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-12)
        # The raw parameter itself is unconstrained.
        raw = conv.weight.sum(dim=tuple(range(1, w.ndim)))
        assert (raw - 1).abs().min() > 1e-3


def test_sort_pool_sorts_channel_pairs():
    x = torch.tensor([3.0, -1.0, 0.5, 2.0, 7.0, 7.0]).reshape(1, 6, 1, 1)
    out = SortPool()(x).flatten().tolist()
    assert out == [-1.0, 3.0, 0.5, 2.0, 7.0, 7.0]
    assert math.isclose(sum(out), x.sum().item())


def test_unet_adds_in_place_only_where_nothing_is_rounded():
    """The UNet writes its residual sums into fresh layer outputs, to save a pass; a
    float16 output plus a float32 input must still come back in float32, unrounded."""
    from napari_wne.backbones.unet import _add_into

    half = torch.full((3,), 1.0, dtype=torch.float16)
    fine = torch.full((3,), 1e-4, dtype=torch.float32)
    assert _add_into(half.clone(), fine).dtype == torch.float32
    assert torch.all(_add_into(half.clone(), fine) == 1.0 + fine)
    fresh = torch.ones(3)
    assert _add_into(fresh, fine) is fresh  # same dtype: written into the fresh output


def test_unet_gradients_are_those_of_out_of_place_sums():
    torch.manual_seed(0)
    model = ResUNet(widths=(4, 8), blocks=1)
    x = torch.randn(2, 1, 16, 16)
    model(x).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]

    def reference(net: ResUNet, y: torch.Tensor) -> torch.Tensor:
        h = net.head(y)
        h = h + net.encoders[0][0].conv2(net.encoders[0][0].act(net.encoders[0][0].conv1(h)))
        skip, h = h, net.downs[0](h)
        h = h + net.body[0].conv2(net.body[0].act(net.body[0].conv1(h)))
        h = net.ups[0](h) + skip
        h = h + net.decoders[0][0].conv2(net.decoders[0][0].act(net.decoders[0][0].conv1(h)))
        return net.tail(h) + y

    model.zero_grad()
    reference(model, x).square().sum().backward()
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want)
