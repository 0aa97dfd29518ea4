"""DnCNN (Zhang et al., IEEE TIP 2017): the classic residual denoising CNN.

A plain stack of 3x3 convolutions with BatchNorm that predicts the noise; the module returns
y - noise so it maps image to image like every other backbone. It is the paper's main CNN
backbone, and with ``batchnorm=False`` the plain twin of the architectural NE baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from ._nd import batch_norm, check_spatial_dims, conv

__all__ = ["DnCNN"]

DEFAULT_DEPTH = 17
DEFAULT_FEATURES = 64


class DnCNN(nn.Module):
    """DnCNN: conv+ReLU, (depth - 2) x (conv + BatchNorm + ReLU), conv; residual output.

    Parameters
    ----------
    spatial_dims:
        2 for images, 3 for volumes (3x3x3 kernels).
    channels:
        Image channels in and out.
    depth:
        Number of convolution layers (17 in the paper for a fixed noise level).
    features:
        Feature maps per hidden layer.
    batchnorm:
        ``False`` drops BatchNorm and gives every convolution a bias: the plain network the
        NE-arch baseline is compared with, at equal depth and width.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        channels: int = 1,
        depth: int = DEFAULT_DEPTH,
        features: int = DEFAULT_FEATURES,
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        layers: list[nn.Module] = [conv(spatial_dims, channels, features), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            # BatchNorm's shift makes a bias before it redundant.
            layers.append(conv(spatial_dims, features, features, bias=not batchnorm))
            if batchnorm:
                layers.append(batch_norm(spatial_dims, features))
            layers.append(nn.ReLU(inplace=True))
        layers.append(conv(spatial_dims, features, channels))
        self.body = nn.Sequential(*layers)
        self.spatial_dims = spatial_dims
        self.depth = depth
        self.batchnorm = batchnorm
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialization keeps the signal alive through 17 ReLU layers; PyTorch's default
        # shrinks it ~2.5x per layer, which the BatchNorm-free twin could not undo.
        convs = [m for m in self.body if isinstance(m, nn.Conv2d | nn.Conv3d)]
        for layer in convs[:-1]:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        # Residual learning: the body estimates the noise, which is easier to learn.
        return y - self.body(y)

    @staticmethod
    def receptive_field(*, depth: int = DEFAULT_DEPTH) -> int:
        """Radius in pixels: every 3x3 convolution reaches one pixel further."""
        return depth

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}, depth={self.depth}, batchnorm={self.batchnorm}"
