"""The training losses: a patch's squared error, averaged as is or in decibels.

The MSE is taken in raw pixel space (as in the paper), divided by ``a**2`` when the
intensity jitter scaled a patch by ``a``, so every patch is judged on the 0-1 scale it was
drawn at. A plain mean over the batch (``"mse"``) is ruled by the noisiest patches (a patch
at 10 photons weighs a hundred times one at 1,000), so the network learns to smooth and
barely cares what it does to clean, detailed patches. ``"log-mse"`` averages each patch's
log MSE instead: every patch gets the same weight in decibels, as a PSNR averaged over
images does.
"""

from __future__ import annotations

import torch

from .modes import Loss

__all__ = ["LOG_MSE_FLOOR", "patch_loss"]

LOG_MSE_FLOOR = 1e-6
"""Added to each patch's MSE before the log: a patch past 60 dB (on the 0-1 scale before
the jitter) stops pulling, so a few flat, noiseless patches cannot dominate a batch."""


def patch_loss(
    out: torch.Tensor,
    target: torch.Tensor,
    a: torch.Tensor,
    index: torch.Tensor | None = None,
    kind: Loss = "mse",
) -> torch.Tensor:
    """The batch's loss: each patch's MSE (at the masked `index` pixels only, for blind-spot
    training), divided by its jitter scale `a` squared; their mean, or their logs' mean."""
    n, c = out.shape[:2]
    diff = (out - target).reshape(n, c, -1)
    if index is not None:
        diff = diff.gather(2, index[:, None].expand(n, c, index.shape[1]))
    per_patch = diff.square().mean(dim=(1, 2)) / a.to(out.device).square()
    if kind == "log-mse":
        return torch.log(per_patch + LOG_MSE_FLOOR).mean()
    return per_patch.mean()
