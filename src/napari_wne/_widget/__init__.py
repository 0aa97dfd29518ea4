"""The "WNE Denoise" dock widget (`DenoiseWidget`), in parts: see `widget`."""

from .layers import layer_axes
from .runner import LARGE_LAYER_BYTES
from .widget import DenoiseWidget

__all__ = ["LARGE_LAYER_BYTES", "DenoiseWidget", "layer_axes"]
