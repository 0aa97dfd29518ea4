"""An exponential moving average of the weights, for `train` to validate and export.

A late fine-tuning stage (a small learning rate from an already good model) moves the
weights by less than the step-to-step jitter of its small CPU batches, so the last weights
are one noisy draw around where training has settled; their validation score wobbles by up
to 0.15 dB from one check to the next (docs/training.md, the sixth 3-D stage). Averaging the
recent weights takes the centre of that wobble instead, and its score climbs steadily.
The average starts at the starting weights, so after ``k`` steps of decay ``d`` they still
weigh ``d**k``: a fine-tune is averaged with where it began, never with a random
initialization.

`interpolate_weights` is the same idea across runs: a point on the straight line between a
model and its own fine-tune (what `scripts/interpolate_model.py` writes as a candidate).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["check_decay", "interpolate_weights", "moving_average"]


def check_decay(decay: float) -> None:
    """Refuse a decay no average can use (`TrainConfig` checks it before a run starts)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"average_decay must be in [0, 1), got {decay}")


def moving_average(model: nn.Module, decay: float) -> AveragedModel:
    """A copy of `model` whose `update_parameters(model)`, after each step, moves every
    weight and buffer ``1 - decay`` of the way to the model's; `.module` is the average."""
    check_decay(decay)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    averaged.update_parameters(model)  # the first update copies: start from these weights
    return averaged


def interpolate_weights(
    first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * first + alpha * second``, weight by weight, computed in float64.

    Why: a fine-tune on new content gains there and can lose what its starting weights did
    well elsewhere; points between the two often keep most of both (weight-space ensembles,
    "WiSE-FT", Wortsman et al., CVPR 2022). That holds only along one training lineage:
    unrelated networks of the same shape do not average into a network. Integer buffers
    (counters) are taken from `first`. Raises ValueError when the two do not match.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 gives the first weights), got {alpha}")
    if first.keys() != second.keys():
        odd = sorted(first.keys() ^ second.keys())
        raise ValueError(
            f"the two state dicts hold different weights ({', '.join(odd[:5])}): interpolate "
            "only a model and a fine-tune of it, with the same architecture"
        )
    out = {}
    for key, a in first.items():
        b = second[key]
        if a.shape != b.shape:
            raise ValueError(
                f"weight {key} has shape {tuple(a.shape)} in the first state dict and "
                f"{tuple(b.shape)} in the second: not the same architecture"
            )
        if not a.is_floating_point():
            out[key] = a.clone()
            continue
        mixed = (1.0 - alpha) * a.double() + alpha * b.double()
        out[key] = mixed.to(a.dtype)
    return out
