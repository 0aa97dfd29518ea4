"""Normalization, in one place: the modes, both statistics, and which models take them.

A WNE model normalizes each instance by a mean and a standard deviation before its backbone
and undoes it after (`napari_wne.wne.WNE`). Where those come from is the `norm` mode
(`napari_wne.modes.NORM`):

- "tile": each tile's own statistics, with its overlap (`instance_stats`, inside WNE);
- "global": one mean and std per plane or volume, from a strided subsample of the whole
  instance (`global_stats`), passed to every tile of it.

Plain models (no WNE) compute on raw intensities and take no statistics at all
(`takes_statistics`): for them "global" changes nothing, and `global_statistics_apply` warns
so rather than ignore it silently.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .modes import NORM, Norm

__all__ = [
    "NORM",
    "TILE_STATISTICS",
    "Norm",
    "NormalizationIgnoredWarning",
    "check_finite",
    "global_statistics_apply",
    "global_stats",
    "instance_stats",
    "takes_statistics",
]


class NormalizationIgnoredWarning(UserWarning):
    """norm="global" was asked of a model that takes no statistics (a plain model)."""


def takes_statistics(model: nn.Module) -> bool:
    """Whether `model` normalizes by statistics it can be given (a WNE model does)."""
    return bool(getattr(model, "takes_statistics", False))


def global_statistics_apply(norm: str, model: nn.Module, name: str) -> bool:
    """Whether to compute global statistics for a run of `model` (named `name`).

    Only for norm="global" and a model that takes statistics; a plain model asked for
    "global" gets a `NormalizationIgnoredWarning`, since it computes on raw intensities.
    """
    NORM.check(norm)
    if norm != "global":
        return False
    if takes_statistics(model):
        return True
    warnings.warn(
        f"norm='global' has no effect with model {name!r}: it is a plain model, which "
        "computes on raw intensities and takes no normalization statistics; use a WNE model "
        "(e.g. 'unet-wne') for global normalization, or leave norm at 'tile'",
        NormalizationIgnoredWarning,
        stacklevel=3,
    )
    return False


def instance_stats(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of each instance, shaped (N, 1, 1, ...) for broadcasting.

    Computed in float64 for float64 input and in float32 otherwise, whatever autocast
    says: half-precision sums over a megavoxel tile would lose the equivariance. float64
    input (what the engine passes) whose squares would overflow or vanish (intensities
    near 1e160 or 1e-160) is scaled by a power of two first, which is exact.
    """
    stat_dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
    flat = y.to(stat_dtype).reshape(y.shape[0], -1)
    mean, std = _mean_std(flat)
    # One check, and only on float64: a float32 training step never waits for it.
    if stat_dtype == torch.float64 and not bool(torch.all(torch.isfinite(std) & (std > 2**-450))):
        _, exponent = torch.frexp(flat.abs().amax(dim=1, keepdim=True))
        # 2**1024 is inf: intensities above 2**1023 get 2**1023, so |flat / scale| < 2.
        scale = torch.ldexp(torch.ones_like(exponent, dtype=stat_dtype), exponent.clamp(max=1023))
        mean, std = _mean_std(flat / scale)
        mean, std = mean * scale[:, 0], std * scale[:, 0]
    view = (y.shape[0],) + (1,) * (y.ndim - 1)
    return mean.reshape(view), std.reshape(view)


def _mean_std(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the mean, and the population std about it."""
    mean = flat.mean(dim=1)
    # Centre first: the one-pass E[y^2] - E[y]^2 cancels catastrophically for bright, flat data.
    return mean, (flat - mean[:, None]).square().mean(dim=1).sqrt()


TILE_STATISTICS = (instance_stats, _mean_std)
"""What a WNE network computes its own statistics with: exported architectures (a
BioImage Model Zoo package, `napari_wne.bioimageio_export`) carry these functions' source."""


def global_stats(read_strided: Callable[[int], np.ndarray], shape: Sequence[int]) -> tuple:
    """Mean and population std of one instance from a strided subsample (<= ~4M voxels).

    Computed by `instance_stats` in float64, like the statistics of a tile.
    """
    step = max(1, math.ceil((math.prod(shape) / 4_000_000) ** (1 / len(shape))))
    sample = read_strided(step)
    check_finite(sample)
    flat = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float64).reshape(1, -1))
    mean, std = instance_stats(flat)
    return float(mean), float(std)


def check_finite(block: np.ndarray) -> None:
    """Refuse NaN or infinite pixels: no statistics, and no network, can use them."""
    if block.dtype.kind != "f":
        return
    finite = np.isfinite(block)
    if finite.all():
        return
    n_nan = int(np.isnan(block).sum())
    n_inf = int((~finite).sum()) - n_nan
    raise ValueError(
        f"the image has NaN or infinite pixels ({n_nan} NaN and {n_inf} infinite in one "
        "block); replace them first, e.g. with numpy.nan_to_num or by filling from the "
        "neighbours"
    )
