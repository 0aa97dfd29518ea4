"""Speed-ups that change how the backbone runs, never what it computes: memory layout and
compilation, each used only where a benchmark measured a gain.

- channels_last: oneDNN (CPU) and cuDNN pick other convolution kernels for NHWC tensors;
  on this project's CPUs that was faster for some architecture and precision pairs and
  slower for others (`python benchmarks/bench_devices.py --layout`, docs/performance.md),
  so it is a table (`CHANNELS_LAST`), not a switch.
- `torch.compile` (opt-in, `TileSettings.compile`): fuses the backbone's small
  operations; it costs minutes of compilation per tile shape on a CPU, so it pays only on
  long runs, and is never the default.

Both act on the backbone only: WNE's statistics and normalization stay eager, in float64.
The shared model (one per process, `napari_wne.models.load_model`) is never changed:
channels_last works on a copy of the backbone's weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .wne import WNE

__all__ = ["CHANNELS_LAST", "ChannelsLast", "accelerate", "uses_channels_last"]

CHANNELS_LAST: frozenset[tuple[str, str, str]] = frozenset(
    (("cpu", "unet", "float32"), ("cpu", "unet", "float16"),
     ("cpu", "dncnn", "float32"), ("cpu", "dncnn", "float16"))
)  # fmt: skip
"""(device type, backbone architecture, precision) where channels_last was measured faster,
2D only (`benchmarks/bench_devices.py --layout`, weights and input converted): on the CPU
1.57x (float32) and 2.85x (float16) for the UNet, 1.60x and 2.73x for DnCNN; the
Restormer gained nothing in float32 and lost in float16 (0.80x), so it keeps its layout.
bfloat16 and CUDA were not measured, so they keep the default layout."""


class ChannelsLast(nn.Module):
    """The backbone with weights in channels_last, and its input converted to it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.contiguous(memory_format=torch.channels_last))
        return y.contiguous()  # the blend reads rows: hand back the usual layout


def uses_channels_last(device: torch.device, architecture: str, precision: str, dims: int) -> bool:
    """Whether the measured table says channels_last is faster here."""
    return dims == 2 and (device.type, architecture, precision) in CHANNELS_LAST


def accelerate(
    model: nn.Module,
    device: torch.device,
    architecture: str,
    precision: str,
    dims: int,
    *,
    compile: bool = False,
) -> nn.Module:
    """`model` (already in its precision) with the measured layout, and compiled if asked.

    A WNE model keeps its wrapper eager and gets a new shell around the changed backbone.
    """
    inner = model.backbone if isinstance(model, WNE) else model
    changed = inner
    if uses_channels_last(device, architecture, precision, dims):
        changed = ChannelsLast(changed)
    if compile:
        # dynamic=False: tiles repeat one shape, and a specialized graph is the fast one.
        changed = torch.compile(changed, dynamic=False)
    if changed is inner:
        return model
    if isinstance(model, WNE):
        return WNE(changed, residual=model.residual, eps=model.eps)
    return changed
