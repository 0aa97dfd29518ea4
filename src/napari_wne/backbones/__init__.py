"""Backbones: the networks g that the WNE wrapper turns normalization-equivariant.

Every builder returns an ``nn.Module`` mapping (N, C, *spatial) to the same shape, for any
spatial size (networks that downsample pad internally and crop back).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BACKBONES", "BackboneSpec", "build_backbone"]


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is, how to build it, and how far it sees.

    The registry names each network's class by module and name, and imports it (and
    torch) only when it is built or measured: listing the models needs neither.
    """

    name: str
    network: str
    """``"module:Class"`` inside this package."""
    description: str
    spatial_dims: tuple[int, ...]
    equivariant: bool = False
    """True when the architecture is normalization-equivariant on its own (no wrapper)."""

    @property
    def build(self) -> Any:
        """The network's class: called with ``spatial_dims``, ``channels`` and options."""
        module, _, name = self.network.partition(":")
        return getattr(import_module(f".{module}", __name__), name)

    @property
    def receptive_field(self) -> int:
        """Theoretical receptive-field radius in pixels at default settings (the measured,
        effective one of a trained model is far smaller)."""
        return self.build.receptive_field()


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "dncnn",
            "dncnn:DnCNN",
            "DnCNN: 17 conv layers with BatchNorm, residual (Zhang et al. 2017)",
            (2, 3),
        ),
        BackboneSpec(
            "unet",
            "unet:ResUNet",
            "Fast multi-scale residual UNet (DRUNet-style), the microscopy default",
            (2, 3),
        ),
        BackboneSpec(
            "restormer",
            "restormer:Restormer",
            "Transformer with softmax (transposed) attention and LayerNorm (Restormer-style)",
            (2, 3),
        ),
        BackboneSpec(
            "ne-dncnn",
            "ne_arch:NEDnCNN",
            "Architectural NE baseline: affine convs, sort pooling, affine residual "
            "(Herbreteau et al. 2023)",
            (2, 3),
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
