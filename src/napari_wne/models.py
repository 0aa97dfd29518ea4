"""Named denoising models: a backbone, whether WNE wraps it, and its trained weights.

A model is built once per (name, spatial dims, device) in each process and reused, so
dask tasks and widget calls never rebuild it or carry it through a task graph.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn

from .backbones import BACKBONES, build_backbone
from .wne import WNE

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelSpec",
    "UntrainedModelWarning",
    "get_model",
    "load_model",
    "warn_if_untrained",
]

DEFAULT_MODEL = "unet-wne"


class UntrainedModelWarning(UserWarning):
    """The model has no trained weights: its output is not a denoised image."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backbone: str
    wne: bool
    description: str
    #: File name of the trained weights inside ``napari_wne/weights``; None if not trained.
    weights: str | None = None

    @property
    def trained(self) -> bool:
        if self.weights is None:
            return False
        return resources.files("napari_wne").joinpath("weights", self.weights).is_file()

    @property
    def equivariant(self) -> bool:
        return self.wne or BACKBONES[self.backbone].equivariant


def _spec(backbone: str, wne: bool) -> ModelSpec:
    base = BACKBONES[backbone].description
    name = f"{backbone}-wne" if wne else backbone
    how = "wrapped with WNE (normalization-equivariant)" if wne else "plain, no normalization"
    if BACKBONES[backbone].equivariant:
        how = "equivariant by construction"
    return ModelSpec(name, backbone, wne, f"{base}; {how}")


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("unet", True),
        _spec("unet", False),
        _spec("dncnn", True),
        _spec("dncnn", False),
        _spec("restormer", True),
        _spec("restormer", False),
        _spec("ne-dncnn", False),
    )
}


def get_model(name: str) -> ModelSpec:
    """Look a model up by name, with the list of names in the error."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {name!r}; choose one of: {known}") from None


def warn_if_untrained(spec: ModelSpec, stacklevel: int = 3) -> None:
    """Say plainly that an untrained model's output is not a denoised image."""
    if not spec.trained:
        warnings.warn(
            f"model {spec.name!r} has no trained weights yet: it runs with random initial "
            "weights, so its output is NOT a denoised image (useful only for testing)",
            UntrainedModelWarning,
            stacklevel=stacklevel,
        )


@functools.lru_cache(maxsize=8)
def load_model(name: str, spatial_dims: int, device: str) -> nn.Module:
    """Build model `name` for `spatial_dims`-D instances on `device`, in eval mode.

    Untrained models start from fixed random weights (seed 0, so runs repeat); callers
    warn about them with `warn_if_untrained` every time, not only on the first build.
    """
    spec = get_model(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = build_backbone(spec.backbone, spatial_dims=spatial_dims)
    model = WNE(backbone) if spec.wne else backbone
    return model.to(device).eval()
