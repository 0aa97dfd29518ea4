"""Inflating a 2-D network into 3-D: on day one, the 3-D network is the 2-D one per plane."""

import pytest
import torch

from napari_wne.backbones.unet import ResUNet
from napari_wne.inflation import inflate_to_3d


def _random_2d_unet() -> ResUNet:
    torch.manual_seed(0)
    net = ResUNet(spatial_dims=2, widths=(4, 8, 16), blocks=1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)  # far from zero: every layer must be mapped right
    return net.eval()


def test_an_inflated_network_denoises_each_plane_exactly_as_the_2d_one():
    flat = _random_2d_unet()
    volume = ResUNet(spatial_dims=3, widths=(4, 8, 16), blocks=1, downsample_z=False).eval()
    volume.load_state_dict(inflate_to_3d(flat.state_dict()))
    stack = torch.randn(1, 1, 5, 21, 30)  # odd sizes: YX padding, Z never padded
    with torch.no_grad():
        expected = torch.stack([flat(stack[:, :, z]) for z in range(5)], dim=2)
        got = volume(stack)
    assert got.shape == stack.shape
    scale = expected.abs().max()
    assert scale > 1  # random weights amplify: compare relative to the output's size
    assert (got - expected).abs().max() < 1e-5 * scale


def test_a_network_that_keeps_z_sees_neighbouring_planes_once_trained():
    volume = ResUNet(spatial_dims=3, widths=(4, 8), blocks=1, downsample_z=False).eval()
    stack = torch.zeros(1, 1, 7, 16, 16)
    stack[0, 0, 3] = torch.randn(16, 16)
    with torch.no_grad():
        out = volume(stack) - stack  # without the residual: what the layers add
    assert out[0, 0, 2].abs().max() > 0  # random 3x3x3 kernels reach the next plane
    assert out[0, 0, 3].abs().max() > 0


def test_keeping_z_is_for_3d_networks_only():
    with pytest.raises(ValueError, match="3-D network"):
        ResUNet(spatial_dims=2, downsample_z=False)


def test_inflation_keeps_non_kernel_tensors_and_puts_kernels_in_the_middle_plane():
    state = {"w": torch.randn(2, 3, 3, 3), "down": torch.randn(2, 2, 2, 2), "b": torch.randn(2)}
    out = inflate_to_3d(state)
    assert out["w"].shape == (2, 3, 3, 3, 3)
    assert torch.equal(out["w"][:, :, 1], state["w"])
    assert not out["w"][:, :, [0, 2]].any()
    assert out["down"].shape == (2, 2, 1, 2, 2)
    assert torch.equal(out["b"], state["b"])
