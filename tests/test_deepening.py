"""Deepening a trained UNet: on day one, the deeper network is the trained one."""

import pytest
import torch

from napari_wne.backbones.unet import ResUNet
from napari_wne.deepening import deepen_into


def _random_unet(spatial_dims: int = 2, blocks: int = 1, widths=(4, 8, 16)) -> ResUNet:
    torch.manual_seed(0)
    net = ResUNet(spatial_dims=spatial_dims, widths=widths, blocks=blocks)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)  # far from zero: every layer must be carried over
    return net.eval()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_deepened_network_gives_exactly_the_trained_networks_output(spatial_dims):
    shallow = _random_unet(spatial_dims)
    deep = ResUNet(spatial_dims=spatial_dims, widths=(4, 8, 16), blocks=3).eval()
    deep_before = {k: v.clone() for k, v in deep.state_dict().items()}
    deepen_into(deep, shallow.state_dict())
    x = torch.randn(1, 1, *([9] * (spatial_dims - 2)), 21, 30)
    with torch.no_grad():
        expected, got = shallow(x), deep(x)
    assert expected.abs().max() > 1  # random weights amplify: a real comparison
    assert torch.equal(got, expected)
    # the new blocks are real layers: conv1 keeps its random start, conv2 starts at zero
    new_conv1 = deep.state_dict()["encoders.0.2.conv1.weight"]
    assert torch.equal(new_conv1, deep_before["encoders.0.2.conv1.weight"])
    assert new_conv1.abs().max() > 0
    assert deep.state_dict()["body.1.conv2.weight"].abs().max() == 0


def test_the_new_blocks_learn_from_the_first_step():
    deep = ResUNet(widths=(4, 8), blocks=2)
    deepen_into(deep, _random_unet(widths=(4, 8)).state_dict())
    deep.train()
    loss = (deep(torch.randn(2, 1, 16, 16)) - torch.randn(2, 1, 16, 16)).pow(2).mean()
    loss.backward()
    grad = deep.decoders[0][1].conv2.weight.grad
    assert grad is not None and grad.abs().max() > 0


def test_weights_of_another_width_are_refused_with_the_tensor_named():
    deep = ResUNet(widths=(8, 16, 32), blocks=2)
    with pytest.raises(ValueError, match=r"head\.weight .* only the depth may differ"):
        deepen_into(deep, _random_unet().state_dict())


def test_weights_with_more_blocks_than_the_network_are_refused():
    shallow = ResUNet(widths=(4, 8, 16), blocks=1)
    with pytest.raises(ValueError, match="not a shallower copy"):
        deepen_into(shallow, _random_unet(blocks=2).state_dict())


def test_weights_missing_a_layer_outside_the_new_blocks_are_refused():
    state = _random_unet().state_dict()
    del state["tail.weight"]
    with pytest.raises(ValueError, match=r"lack tail\.weight"):
        deepen_into(ResUNet(widths=(4, 8, 16), blocks=2), state)
