"""Backbones: the networks g that the WNE wrapper turns normalization-equivariant.

Every builder returns an ``nn.Module`` mapping (N, C, *spatial) to the same shape, for any
spatial size (networks that downsample pad internally and crop back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .dncnn import DnCNN
from .ne_arch import NEDnCNN
from .restormer import Restormer
from .unet import ResUNet

__all__ = ["BACKBONES", "BackboneSpec", "build_backbone"]


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is, how to build it, and how far it sees."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    spatial_dims: tuple[int, ...]
    receptive_field: int
    """Theoretical receptive-field radius in pixels at default settings (the measured,
    effective one of a trained model is far smaller)."""
    equivariant: bool = False
    """True when the architecture is normalization-equivariant on its own (no wrapper)."""


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "dncnn",
            DnCNN,
            "DnCNN: 17 conv layers with BatchNorm, residual (Zhang et al. 2017)",
            (2, 3),
            DnCNN.receptive_field(),
        ),
        BackboneSpec(
            "unet",
            ResUNet,
            "Fast multi-scale residual UNet (DRUNet-style), the microscopy default",
            (2, 3),
            ResUNet.receptive_field(),
        ),
        BackboneSpec(
            "restormer",
            Restormer,
            "Transformer with softmax (transposed) attention and LayerNorm (Restormer-style)",
            (2, 3),
            Restormer.receptive_field(),
        ),
        BackboneSpec(
            "ne-dncnn",
            NEDnCNN,
            "Architectural NE baseline: affine convs, sort pooling, affine residual "
            "(Herbreteau et al. 2023)",
            (2, 3),
            NEDnCNN.receptive_field(),
            equivariant=True,
        ),
    )
}
"""Every backbone by name."""


def build_backbone(name: str, *, spatial_dims: int = 2, channels: int = 1, **kwargs) -> nn.Module:
    """Build a registered backbone for `spatial_dims`-D images with `channels` channels."""
    try:
        spec = BACKBONES[name]
    except KeyError:
        known = ", ".join(sorted(BACKBONES))
        raise ValueError(f"unknown backbone {name!r}; choose one of: {known}") from None
    if spatial_dims not in spec.spatial_dims:
        raise ValueError(
            f"backbone {name!r} supports {spec.spatial_dims}-D images, not {spatial_dims}-D"
        )
    return spec.build(spatial_dims=spatial_dims, channels=channels, **kwargs)
