"""How far a model sees along each spatial axis: the halo (context) its tiles keep.

A tile needs context beyond the voxels it hands on, or its border voxels differ from
whole-image inference. How much is a property of the model *per axis*: a 3-D network that
never resamples Z (`ResUNet(downsample_z=False)`) sees a few planes in Z but tens of pixels
in Y and X, and giving Z the Y/X halo makes tiling deep stacks needlessly expensive. So
every halo here is a tuple, one entry per spatial axis in ZYX order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from .backbones import BACKBONES
from .models import get_model, load_model
from .wne import WNE

__all__ = [
    "EXACT_HALO_MAX",
    "compact",
    "default_halo",
    "effective_radius",
    "impulse_radii",
    "measure_radii",
    "probe_shapes",
]

EXACT_HALO_MAX = 32
"""Receptive-field radii up to this are used whole as the halo: exact tiling, at little cost."""

PROBE_SIDE = 257
"""The longest probe along an axis: the 1e-3 reach of the shipped UNet (about 70 px) fits
with room to spare, and a 257x257 plane costs a fraction of a second."""

PROBE_VOXELS = PROBE_SIDE**2
"""Most voxels in a probe with every side long: a whole 2-D probe, but not 257**3 = 17 M
voxels in 3-D (the backward pass through a 3-D UNet would hold tens of gigabytes)."""

PROBE_ACROSS = 31
"""The side across the long axis of a one-axis probe (`probe_shapes`). Odd, so the probe has
a centre voxel, and one less than a multiple of 16: the UNet pads its input to a multiple
of 16, so 31 costs what 17 would. A narrow probe is zero-padded closer to its centre, which
moves the 1e-3 reach by a few voxels at most (tests/test_halo.py)."""


def default_halo(model: str, spatial_dims: int) -> tuple[int, ...]:
    """The halo tiles keep by default, per spatial axis: the whole receptive field when it
    is small, else the measured effective radius along each axis.

    A small network (DnCNN: 17 px) is tiled exactly for a few percent more work; its
    effective radius would leave visible differences, since many weak far weights add up.
    A deep UNet's receptive field (about 100 px) would double the work in 2D, for changes
    below 1e-3 of its impulse response.
    """
    spec = get_model(model)
    if spec.halo is not None:  # declared by the model (a zoo package)
        return (spec.halo,) * spatial_dims
    known = BACKBONES.get(spec.backbone)  # None for a TorchScript module
    if known is not None and known.receptive_field <= EXACT_HALO_MAX:
        return (known.receptive_field,) * spatial_dims
    return effective_radius(model, spatial_dims)


@functools.lru_cache(maxsize=16)
def effective_radius(model: str, spatial_dims: int, threshold: float = 1e-3) -> tuple[int, ...]:
    """Per spatial axis, how far from a voxel its impulse response stays above `threshold`
    of its peak, in voxels.

    Measured on the backbone (the part that sees normalized data) as the gradient of the
    centre output voxel with respect to a noise input, on CPU, on the probes
    `probe_shapes` gives: one whole probe where that is affordable (2-D), else one per axis,
    long along it and narrower across (3-D). Cached: it is the same for every run.
    """
    network = load_model(model, spatial_dims, "cpu")  # the cached instance: only read here
    network = network.backbone if isinstance(network, WNE) else network
    known = BACKBONES.get(get_model(model).backbone)  # None for a TorchScript module
    return measure_radii(network, known.receptive_field if known else 64, spatial_dims, threshold)


def measure_radii(
    network: torch.nn.Module,
    receptive_field: int,
    spatial_dims: int,
    threshold: float = 1e-3,
    voxels: int = PROBE_VOXELS,
) -> tuple[int, ...]:
    """`network`'s reach per axis (`impulse_radii`), on the probes `probe_shapes` gives.

    A one-axis probe goes through as two noise draws in one batch. PyTorch runs a batch of
    one on a slow convolution fallback when the dimensions before the last are small (an
    X-long probe took 18 s instead of 2.5 s for the 3-D UNet); and the farther reach of two
    draws errs towards exact tiling (one draw's reach varies by several voxels).
    """
    shapes = probe_shapes(receptive_field, spatial_dims, voxels)
    if len(shapes) == 1:
        return impulse_radii(network, shapes[0], threshold)
    return tuple(
        impulse_radii(network, shape, threshold, draws=2)[axis] for axis, shape in enumerate(shapes)
    )


def probe_shapes(
    receptive_field: int, spatial_dims: int, voxels: int = PROBE_VOXELS
) -> list[tuple[int, ...]]:
    """The probes that measure a network of this theoretical receptive-field radius.

    Each axis needs a probe of ``2*receptive_field + 1`` voxels along it (at most
    `PROBE_SIDE`), so the response can fall off inside it. One probe of that side on every
    axis when it holds at most `voxels`; else one probe per axis, long along it and
    `PROBE_ACROSS` wide across.
    """
    side = min(2 * receptive_field + 1, PROBE_SIDE)
    if side**spatial_dims <= voxels:
        return [(side,) * spatial_dims]
    across = min(side, PROBE_ACROSS)
    return [
        tuple(side if a == axis else across for a in range(spatial_dims))
        for axis in range(spatial_dims)
    ]


def impulse_radii(
    network: torch.nn.Module, shape: Sequence[int], threshold: float = 1e-3, draws: int = 1
) -> tuple[int, ...]:
    """Per axis, the farthest offset from the centre of a noise probe of `shape` at which
    the centre output voxel's gradient is at least `threshold` of its largest value; with
    several `draws` (one batch), the farthest over them.

    The gradient is that of one output voxel, taken with `torch.autograd.grad` so the
    network's own parameters keep their `.grad` (the network may be a shared instance).
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((draws, 1, *shape), generator=generator)
    x.requires_grad_(True)
    centre = tuple(s // 2 for s in shape)
    (gradient,) = torch.autograd.grad(network(x)[(slice(None), 0, *centre)].sum(), x)
    reach = torch.zeros(len(shape), dtype=torch.long)
    for response in gradient.abs()[:, 0]:  # the draws are independent: one response each
        significant = torch.nonzero(response >= threshold * response.max())
        reach = torch.maximum(reach, (significant - torch.tensor(centre)).abs().max(dim=0).values)
    return tuple(int(v) for v in reach)


def compact(halo: Sequence[int]) -> int | list[int]:
    """One number when every axis has the same halo, else one per axis (a JSON list).

    Runs recorded one number before halos were per axis: a 2-D run written then still
    resumes, and messages stay short where the axes agree.
    """
    return halo[0] if len(set(halo)) == 1 else [int(h) for h in halo]
