"""Architectural normalization equivariance (Herbreteau, Moebel & Kervrann, NeurIPS 2023).

The older way to get f(a*y + b) = a*f(y) + b: constrain every layer so that it commutes
with a*y + b on its own. Here applied to a bias-free DnCNN (FDnCNN) as the baseline that
the WNE wrapper is compared with:

- affine convolutions: no bias, each output channel's kernel sums to one, so a constant
  shift passes through unchanged, and borders are padded by reflection (zero padding
  would pull the border towards 0, which does not move with b);
- sort pooling instead of ReLU: channel pairs sorted into (min, max), which commutes with
  any increasing affine map;
- an affine residual connection a*y + (1 - a)*net(y), whose weights also sum to one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._nd import check_spatial_dims, conv_nd, pad_same

__all__ = ["AffineConv", "NEDnCNN", "SortPool"]

DEFAULT_DEPTH = 17
DEFAULT_FEATURES = 64


class AffineConv(nn.Module):
    """Bias-free convolution whose kernel sums to 1 over (in_channels, kernel) per output.

    The constraint is a reparametrization of an unconstrained weight w:
    w - mean(w) + 1/fan_in, so any optimizer can train it and it holds exactly after
    every step.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        if padding_mode not in ("reflect", "replicate"):
            # Zero (or circular) padding would break equivariance to shifts at the borders.
            raise ValueError(f"padding_mode must be 'reflect' or 'replicate', got {padding_mode!r}")
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *(kernel_size,) * spatial_dims)
        )
        self.fan_in = in_channels * kernel_size**spatial_dims
        # Unit gain on the zero-mean part: sort pooling only permutes values, so it neither
        # halves the energy like ReLU does nor needs He's factor 2.
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.fan_in))
        self.spatial_dims = spatial_dims
        self.padding = kernel_size // 2
        self.padding_mode = padding_mode

    def affine_weight(self) -> torch.Tensor:
        """The kernel actually applied: each output channel's entries sum to one."""
        w = self.weight
        dims = tuple(range(1, w.ndim))
        return w - w.mean(dim=dims, keepdim=True) + 1.0 / self.fan_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.padding, self.padding_mode)
        return conv_nd(self.spatial_dims)(x, self.affine_weight())

    def extra_repr(self) -> str:
        out_channels, in_channels, *kernel = self.weight.shape
        return (
            f"{in_channels}, {out_channels}, kernel_size={tuple(kernel)}, "
            f"padding_mode={self.padding_mode!r}"
        )


class SortPool(nn.Module):
    """Sort each pair of channels (2i, 2i+1) into (min, max): an NE nonlinearity.

    min and max commute with y -> a*y + b for a > 0, and the channel count is kept.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if c % 2:
            raise ValueError(f"sort pooling needs an even number of channels, got {c}")
        first, second = x.reshape(n, c // 2, 2, *x.shape[2:]).unbind(dim=2)
        return torch.stack(
            (torch.minimum(first, second), torch.maximum(first, second)), dim=2
        ).reshape(x.shape)


class NEDnCNN(nn.Module):
    """FDnCNN made NE by construction: f(a*y + b) = a*f(y) + b for a > 0, with no wrapper.

    Parameters
    ----------
    spatial_dims:
        2 for images, 3 for volumes.
    channels:
        Image channels in and out.
    depth:
        Number of affine convolution layers.
    features:
        Feature maps per hidden layer (even, for sort pooling).
    padding_mode:
        ``"reflect"`` (falls back to replicate where a dimension is too thin) or
        ``"replicate"``.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        channels: int = 1,
        depth: int = DEFAULT_DEPTH,
        features: int = DEFAULT_FEATURES,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if features % 2:
            raise ValueError(f"features must be even for sort pooling, got {features}")
        sd = spatial_dims
        layers: list[nn.Module] = [
            AffineConv(sd, channels, features, padding_mode=padding_mode),
            SortPool(),
        ]
        for _ in range(depth - 2):
            layers += [AffineConv(sd, features, features, padding_mode=padding_mode), SortPool()]
        layers.append(AffineConv(sd, features, channels, padding_mode=padding_mode))
        self.body = nn.Sequential(*layers)
        # The weight of the input in the affine residual a*y + (1 - a)*net(y).
        self.skip_weight = nn.Parameter(torch.tensor(0.5))
        self.spatial_dims = sd
        self.depth = depth

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        a = self.skip_weight
        return a * y + (1 - a) * self.body(y)

    @staticmethod
    def receptive_field(*, depth: int = DEFAULT_DEPTH) -> int:
        """Radius in pixels: every 3x3 convolution reaches one pixel further."""
        return depth

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}, depth={self.depth}"
