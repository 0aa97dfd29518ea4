"""Start a 3-D network from a trained 2-D one, as an exact plane-by-plane copy of it.

Training a volumetric denoiser from scratch costs far more than a CPU can give it, and a
3-D network must at least match the 2-D model run plane by plane before it earns its
extra cost. "Inflating" each 2-D kernel into the middle Z slice of a 3-D kernel (zeros
elsewhere) gives a 3-D network whose every output plane depends only on its own input
plane: on day one it *is* the 2-D model (for a network that never resamples Z, see
`ResUNet(downsample_z=False)`). Fine-tuning then only has to learn what the neighbouring
planes add.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["inflate_to_3d"]


def inflate_to_3d(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The 3-D state dict whose convolutions act on each Z plane as `state`'s 2-D ones.

    Every 4-D tensor is a 2-D convolution kernel (out, in, ky, kx), or a transposed one
    (in, out, ky, kx): it becomes (.., kz, ky, kx) with kz = ky for odd kernels (a 3x3
    becomes a 3x3x3 whose outer Z slices are zero) and kz = 1 for even ones (the 2x2
    resampling kernels, which a network that keeps Z uses as 1x2x2). Other tensors (biases,
    norms) carry over unchanged.
    """
    inflated: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if tensor.ndim != 4:
            inflated[name] = tensor.clone()
            continue
        ky = tensor.shape[2]
        kz = ky if ky % 2 else 1
        kernel = tensor.new_zeros((*tensor.shape[:2], kz, *tensor.shape[2:]))
        kernel[:, :, kz // 2] = tensor
        inflated[name] = kernel
    return inflated
