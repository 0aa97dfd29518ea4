"""napari-wne: normalization-equivariant deep denoising for microscopy, in napari and headless.

The public names below are imported on first use (PEP 562), so that importing a part of
the package that needs no torch (the command line's parser, `napari_wne.modes`) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import denoise
    from .backbones import BACKBONES, build_backbone
    from .devices import available_devices, resolve_device
    from .models import DEFAULT_MODEL, MODELS, UntrainedModelWarning, load_model
    from .wne import WNE

_HOMES = {
    "denoise": "api",
    "BACKBONES": "backbones",
    "build_backbone": "backbones",
    "available_devices": "devices",
    "resolve_device": "devices",
    "DEFAULT_MODEL": "modes",
    "MODELS": "models",
    "UntrainedModelWarning": "models",
    "load_model": "models",
    "WNE": "wne",
}

__all__ = [
    "BACKBONES",
    "DEFAULT_MODEL",
    "MODELS",
    "WNE",
    "UntrainedModelWarning",
    "__version__",
    "available_devices",
    "build_backbone",
    "denoise",
    "load_model",
    "resolve_device",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'napari_wne' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
