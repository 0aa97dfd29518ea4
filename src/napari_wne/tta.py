"""Test-time augmentation: average a denoiser over the 8 flips and quarter turns of YX.

Each transformed copy of an image makes the network's errors differ while the signal stays
the same, so their mean is cleaner (at 8 times the cost). It keeps WNE exact: mean and std
do not change when an image is flipped or turned, so the statistics, and the equivariance
f(a*y + b) = a*f(y) + b, are those of the plain model. Tiling stays exact too: a flip or
turn moves no pixel farther than the network's radius from the ones it sees.
"""

from __future__ import annotations

import torch
from torch import nn

from .wne import WNE

__all__ = ["DihedralMean", "with_tta"]


class DihedralMean(nn.Module):
    """The mean of ``g⁻¹(model(g(x)))`` over the 8 symmetries g of the square (last 2 axes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for turns in range(4):
            for flip in (False, True):
                t = torch.rot90(x, turns, dims=(-2, -1))
                if flip:
                    t = t.flip(-1)
                y = self.model(t)
                if flip:
                    y = y.flip(-1)
                y = torch.rot90(y, -turns, dims=(-2, -1))
                total = y if total is None else total + y
        return total / 8


def with_tta(model: nn.Module) -> nn.Module:
    """`model` averaged over the 8 symmetries; a WNE model keeps its wrapper outermost.

    The backbone inside WNE is what gets averaged, so callers that pass WNE its statistics
    (one normalization per image) still can; the model given is not changed.
    """
    if isinstance(model, WNE):
        return WNE(DihedralMean(model.backbone), residual=model.residual, eps=model.eps)
    return DihedralMean(model)
