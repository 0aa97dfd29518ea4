"""Blind-spot masks for self-supervised (Noise2Void-style) training and its held-out loss.

A blind-spot network learns to predict a pixel from its surroundings only: a few pixels
per patch are hidden (their value replaced), and the loss is taken there, against the
original noisy value. If the noise is independent from pixel to pixel, the surroundings
say nothing about the hidden pixel's noise, and the best prediction is the clean value.

Two refinements from the literature, both optional here:

- **Correlated noise** (structN2V): when the noise of neighbours is correlated, the
  neighbours give the hidden pixel's noise away, and the network learns to keep it. So a
  whole block of radius `radius` around the centre is replaced (every pixel of it), and
  the loss is still taken at the centre only. Choose the radius as wide as the noise
  correlation reaches (`napari_wne.noise_stats.mask_radius`).
- **No checkerboard** (N2V2): replacing the pixel by a random neighbour lets the network
  learn a faint copy of that neighbour, which shows as a checkerboard in flat regions.
  ``replacement="median"`` uses the median of the pixels around instead, never the
  hidden ones themselves.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

__all__ = ["Replacement", "blind_spot_mask", "mask_radius", "masked_errors", "masked_loss"]

Replacement = Literal["uniform", "median"]


def mask_radius(correlation: Sequence[float], threshold: float = 0.1) -> int:
    """How far the hidden neighbourhood must reach: the largest lag (1, 2, ...) at which the
    noise correlation (`correlation[lag - 1]`) still exceeds `threshold`; 0 for white noise.
    """
    above = [lag for lag, value in enumerate(correlation, start=1) if value > threshold]
    return max(above, default=0)


def _offsets(radius: int, dims: int) -> torch.Tensor:
    """Every offset in a cube of side 2*radius+1, shape (count, dims), centre in the middle."""
    side = range(-radius, radius + 1)
    return torch.tensor(list(itertools.product(side, repeat=dims)), dtype=torch.long)


def _sources(radius: int, window: int, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel of the hidden block may take its replacement from.

    Returns the block offsets (B, dims) and, per block pixel, the offsets relative to the
    centre of the pixels in a `window`-wide cube around it that lie outside the block,
    shape (B, S, dims), with a mask (B, S) of which are valid (outside the block).
    """
    block = _offsets(radius, dims)
    around = _offsets(max(window // 2, radius + 1), dims)  # reaches past the block's centre
    candidates = block[:, None, :] + around[None, :, :]  # (B, S, dims), relative to centre
    outside = candidates.abs().amax(dim=2) > radius
    return block, candidates, outside


def _reflect(where: torch.Tensor, length: int) -> torch.Tensor:
    where = where.abs()  # reflect below 0 ...
    where = torch.where(where > length - 1, 2 * (length - 1) - where, where)  # ... and above
    return where.clamp(0, length - 1)


def _flat_index(coords: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """Flat positions of coordinates (..., dims), reflected at the patch borders."""
    flat = torch.zeros(coords.shape[:-1], dtype=torch.long)
    for axis, length in enumerate(spatial):
        flat = flat * length + _reflect(coords[..., axis], length)
    return flat


def blind_spot_mask(
    y: torch.Tensor,
    fraction: float,
    window: int,
    generator: torch.Generator,
    *,
    radius: int = 0,
    replacement: Replacement = "uniform",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide random pixels of each patch (and their `radius` neighbourhood); return
    (masked, indices).

    `y` is (N, C, *spatial); indices are the flat spatial positions of the hidden centres,
    shape (N, k), the same for every channel: the loss belongs there. Every pixel of the
    block of side ``2 * radius + 1`` around a centre is replaced by a value taken from a
    `window`-wide cube around that pixel (at least ``2 * radius + 3`` wide) outside the
    block (so the network never sees a hidden pixel): a random one (``"uniform"``, as in
    N2V) or their median (``"median"``, as in N2V2). Centres keep a margin from the patch
    borders, so no source reflected at a border can be a hidden pixel.
    """
    if radius < 0:
        raise ValueError(f"the mask radius must be >= 0, got {radius}")
    if window < 3 or window % 2 == 0:
        raise ValueError(f"the mask window must be odd and >= 3, got {window}")
    if replacement not in ("uniform", "median"):
        raise ValueError(f"replacement must be 'uniform' or 'median', got {replacement!r}")
    n, c, *spatial = y.shape
    dims, size = len(spatial), math.prod(spatial)
    k = max(1, round(fraction * size))
    block, candidates, outside = _sources(radius, window, dims)
    # Centres far enough from the borders that no source reflects back into their block
    # (in patches too small for that, as close as they allow).
    reach = int(candidates.abs().max())
    centre = torch.stack(
        [
            torch.randint(
                min(reach, (length - 1) // 2),
                length - min(reach, (length - 1) // 2),
                (n, k),
                generator=generator,
            )
            for length in spatial
        ],
        dim=-1,
    )  # (n, k, dims)
    index = _flat_index(centre, tuple(spatial))
    targets = _flat_index(centre[:, :, None, :] + block, tuple(spatial))  # (n, k, B)
    flat = y.reshape(n, c, size)
    # Sources inside any hidden block (blocks may overlap) count as missing, so no hidden
    # value is ever shown, not even in another block.
    hidden = torch.zeros((n, size), dtype=torch.bool)
    hidden.scatter_(1, targets.reshape(n, -1), True)
    shown = flat.masked_fill(hidden[:, None], float("nan"))
    source = _flat_index(centre[:, :, None, None, :] + candidates, tuple(spatial))
    around = shown.gather(2, source.reshape(n, 1, -1).expand(n, c, -1))
    around = around.reshape(n, c, k, len(block), -1).masked_fill(~outside, float("nan"))
    values = around.nanmedian(dim=-1).values  # (n, c, k, B)
    if replacement == "uniform":
        # per block pixel, its sources outside the block first; draw one of them uniformly
        order = torch.argsort((~outside).to(torch.int8), dim=1, stable=True)  # (B, S)
        pick = (torch.rand((n, k, len(block)), generator=generator) * outside.sum(dim=1)).long()
        chosen = order[torch.arange(len(block)), pick]  # (n, k, B): index into the sources
        drawn = around.gather(-1, chosen[:, None, ..., None].expand(n, c, -1, -1, 1))[..., 0]
        values = torch.where(drawn.isnan(), values, drawn)  # a hidden draw: the median
    fallback = shown.nanmean(dim=2, keepdim=True).nan_to_num(0.0)  # nothing around is shown
    values = torch.where(values.isnan(), fallback[..., None], values).reshape(n, c, -1)
    masked = flat.clone()
    masked.scatter_(2, targets.reshape(n, 1, -1).expand(n, c, -1), values)
    return masked.reshape(y.shape), index


@torch.no_grad()
def masked_errors(
    model: nn.Module,
    clean_inputs: torch.Tensor,
    masked_inputs: torch.Tensor,
    indices: torch.Tensor,
    batch_size: int = 16,
) -> torch.Tensor:
    """Squared error of `model` at every hidden centre, against the unmasked value (float64,
    one entry per hidden pixel and channel, in a fixed order).

    Per pixel, so that two sets of weights can be compared pixel by pixel on the same
    noise (`masked_loss` is their mean).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(masked_inputs), batch_size):
        part = slice(start, start + batch_size)
        out = model(masked_inputs[part].to(device)).float().cpu()
        n, c = out.shape[:2]
        where = indices[part][:, None].expand(n, c, -1)
        shown = clean_inputs[part].reshape(n, c, -1).gather(2, where)
        parts.append((out.reshape(n, c, -1).gather(2, where) - shown).double().square().reshape(-1))
    model.train(was_training)
    return torch.cat(parts)


def masked_loss(
    model: nn.Module,
    clean_inputs: torch.Tensor,
    masked_inputs: torch.Tensor,
    indices: torch.Tensor,
    batch_size: int = 16,
) -> float:
    """Mean squared error of `model` at the hidden centres, against the unmasked values.

    The held-out score of self-supervised training: on fixed patches with fixed masks it
    compares one set of weights with another, without any clean image (its floor is the
    noise variance, the same for every model).
    """
    return float(masked_errors(model, clean_inputs, masked_inputs, indices, batch_size).mean())
