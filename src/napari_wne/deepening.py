"""Start a deeper `ResUNet` from a trained one, as an exact copy of it.

Fine-tuning the shipped 1.06 M-parameter UNet from its own weights stopped moving its
validation score (five recipes, docs/training.md), which points at capacity. Training a
larger network from scratch costs more CPU time than a working day gives it; growing the
trained one does not. Each new residual block computes ``x + conv2(relu(conv1(x)))``:
with ``conv2`` zero it is the identity, so the deeper network starts as the trained one,
output for output, and fine-tuning only has to learn what the extra blocks add. ``conv1``
keeps its random initialization, so ``conv2`` gets a gradient from the first step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .backbones.unet import ResUNet

__all__ = ["deepen_into"]

_BLOCK = re.compile(r"^(encoders\.\d+|decoders\.\d+|body)\.(\d+)\.(conv1|conv2)\.weight$")


def deepen_into(network: ResUNet, state: Mapping[str, torch.Tensor]) -> None:
    """Load `state`, the weights of a `ResUNet` with fewer blocks per stage, into `network`.

    Every tensor of `state` must fit `network` (same widths, dimensions and channels);
    the blocks that `state` lacks become identities (their ``conv2`` zero). Raises
    ValueError naming the tensor when the two networks differ in anything but depth.
    """
    target = network.state_dict()
    unknown = sorted(set(state) - set(target))
    if unknown:
        raise ValueError(
            f"these weights are not a shallower copy of {network.extra_repr()}: "
            f"{', '.join(unknown[:5])} has no place in it"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ValueError(
                f"{name} is {tuple(tensor.shape)} in the weights and "
                f"{tuple(target[name].shape)} in the network: only the depth may differ"
            )
    for name in sorted(set(target) - set(state)):
        match = _BLOCK.match(name)
        if match is None:
            raise ValueError(f"the weights lack {name}, which is not part of a new block")
        if match.group(3) == "conv2":
            target[name] = torch.zeros_like(target[name])
    target.update({name: tensor.detach().clone() for name, tensor in state.items()})
    network.load_state_dict(target, strict=True)
