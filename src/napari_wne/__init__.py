"""napari-wne: normalization-equivariant deep denoising for microscopy, in napari and headless."""

from ._version import __version__
from .api import denoise
from .backbones import BACKBONES, build_backbone
from .devices import available_devices, resolve_device
from .models import DEFAULT_MODEL, MODELS, UntrainedModelWarning, load_model
from .wne import WNE

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
