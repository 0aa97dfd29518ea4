"""Dimension-generic helpers: pick the 2-D or 3-D layer once, so each network is written once.

Also holds the padding used by multi-scale networks (any input size must work) and a tiny
interval algebra that derives receptive fields from an architecture instead of guessing them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOW_PRECISION",
    "Interval",
    "autocast_off",
    "batch_norm",
    "check_spatial_dims",
    "conv",
    "conv_nd",
    "conv_transpose",
    "crop",
    "grow",
    "hull",
    "pad_same",
    "pad_to_multiple",
    "radius",
    "through_down",
    "through_up",
]

_CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T: dict[int, type[nn.Module]] = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH_NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_CONV_FN: dict[int, Callable[..., torch.Tensor]] = {2: F.conv2d, 3: F.conv3d}


#: Dtypes whose sums and statistics are done in float32 instead.
LOW_PRECISION = (torch.float16, torch.bfloat16)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager[None]:
    """Suspend autocast where a reduction must keep its float32 (or float64) inputs."""
    try:
        return torch.autocast(device_type, enabled=False)
    except RuntimeError:  # a device type autocast does not know (e.g. "meta")
        return contextlib.nullcontext()


def check_spatial_dims(spatial_dims: int) -> int:
    """Fail early, at construction, rather than with a shape error deep in a forward pass."""
    if spatial_dims not in _CONV:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, ...] = 3,
    *,
    stride: int | tuple[int, ...] = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """Convolution; stride 1 keeps the size ("same" zero padding), stride s divides it by s.

    Sizes and strides may differ per axis (a 3-D network that leaves Z alone uses 1 there).
    """
    if stride == 1:
        padding: int | tuple[int, ...] = (
            kernel_size // 2 if isinstance(kernel_size, int) else tuple(k // 2 for k in kernel_size)
        )
    else:
        padding = 0
    return _CONV[check_spatial_dims(spatial_dims)](
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        groups=groups,
        bias=bias,
    )


def conv_transpose(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    factor: int | tuple[int, ...] = 2,
    *,
    bias: bool = True,
) -> nn.Module:
    """Transposed convolution with kernel = stride = `factor` (one, or one per axis):
    multiplies the size exactly."""
    return _CONV_T[check_spatial_dims(spatial_dims)](
        in_channels, out_channels, factor, stride=factor, bias=bias
    )


def batch_norm(spatial_dims: int, channels: int) -> nn.Module:
    """BatchNorm over (N, *spatial) for each channel."""
    return _BATCH_NORM[check_spatial_dims(spatial_dims)](channels)


def conv_nd(spatial_dims: int) -> Callable[..., torch.Tensor]:
    """The functional convolution (for layers that compute their own weight)."""
    return _CONV_FN[check_spatial_dims(spatial_dims)]


def _pad_mode(x: torch.Tensor, pads: list[int], mode: str) -> str:
    # Reflection needs more pixels than it mirrors; a 1-pixel-thick stack can only be
    # replicated. Both keep borders free of the artificial dark frame zero padding adds.
    if mode == "reflect":
        sizes = x.shape[2:][::-1]  # F.pad lists the last dimension first
        if any(max(pads[2 * i], pads[2 * i + 1]) >= size for i, size in enumerate(sizes)):
            return "replicate"
    return mode


def pad_same(x: torch.Tensor, amount: int, mode: str = "reflect") -> torch.Tensor:
    """Pad every spatial side by `amount` (reflect, or replicate where too small to reflect)."""
    if amount == 0:
        return x
    pads = [amount] * (2 * (x.ndim - 2))
    return F.pad(x, pads, mode=_pad_mode(x, pads, mode))


def pad_to_multiple(
    x: torch.Tensor, multiple: int | Sequence[int], mode: str = "reflect"
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the spatial dims at their far end up to a multiple of `multiple` (one per axis,
    or one for all: a network that never downsamples Z needs no padding along it).

    Downsampling networks need sizes divisible by their total stride; padding (and cropping
    back with the returned slices) lets them take any tile the tiler hands over. Padding
    only at the end keeps the downsampling grid anchored at voxel 0, so a tile that starts
    on a multiple of the stride sees the same grid as the whole image would.
    """
    spatial_sizes = x.shape[2:]
    multiples = (
        [int(multiple)] * len(spatial_sizes) if isinstance(multiple, int) else list(multiple)
    )
    if len(multiples) != len(spatial_sizes):
        raise ValueError(f"{len(multiples)} multiples for {len(spatial_sizes)} spatial axes")
    if max(multiples) <= 1:
        return x, (slice(None),) * x.ndim
    befores = [0] * (x.ndim - 2)
    afters = [-size % m for size, m in zip(spatial_sizes, multiples, strict=True)]
    spatial = (slice(b, b + s) for b, s in zip(befores, x.shape[2:], strict=True))
    window = (slice(None), slice(None), *spatial)
    if not any(befores) and not any(afters):
        return x, window
    pads: list[int] = []
    for before, after in zip(reversed(befores), reversed(afters), strict=True):
        pads += [before, after]
    return F.pad(x, pads, mode=_pad_mode(x, pads, mode)), window


def crop(x: torch.Tensor, window: tuple[slice, ...]) -> torch.Tensor:
    """Undo `pad_to_multiple`."""
    return x[window]


# --- Receptive fields by interval arithmetic --------------------------------------------------
# Follow one output position backwards through the layers (along one axis; kernels are
# cubes, so every axis behaves alike) and track the interval of input positions it reads.
# Strided layers make that interval depend on the position modulo the total stride, so
# `radius` takes the worst case over one period.

Interval = tuple[int, int]


def grow(interval: Interval, amount: int) -> Interval:
    """Through `amount` stride-1 layers of kernel 3 (or one layer of radius `amount`)."""
    return interval[0] - amount, interval[1] + amount


def through_down(interval: Interval) -> Interval:
    """From the output of a kernel-2, stride-2 convolution back to its (finer) input."""
    return 2 * interval[0], 2 * interval[1] + 1


def through_up(interval: Interval) -> Interval:
    """From the output of a kernel-2, stride-2 transposed convolution back to its input."""
    return interval[0] // 2, interval[1] // 2


def hull(a: Interval, b: Interval) -> Interval:
    """Two branches summed or concatenated read the union of what each reads."""
    return min(a[0], b[0]), max(a[1], b[1])


def radius(backwards: Callable[[Interval], Interval], period: int = 1) -> int:
    """Largest distance between an output position and an input position it depends on."""
    worst = 0
    for position in range(period):
        low, high = backwards((position, position))
        worst = max(worst, position - low, high - position)
    return worst
