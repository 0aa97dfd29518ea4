"""An exponential moving average of the weights, for `train` to validate and export.

A late fine-tuning stage (a small learning rate from an already good model) moves the
weights by less than the step-to-step jitter of its small CPU batches, so the last weights
are one noisy draw around where training has settled; their validation score wobbles by up
to 0.15 dB from one check to the next (docs/training.md, the sixth 3-D stage). Averaging the
recent weights takes the centre of that wobble instead, and its score climbs steadily.
The average starts at the starting weights, so after ``k`` steps of decay ``d`` they still
weigh ``d**k``: a fine-tune is averaged with where it began, never with a random
initialization.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["check_decay", "moving_average"]


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
