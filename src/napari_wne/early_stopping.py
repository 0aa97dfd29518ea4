"""Early stopping on a held-out loss: keep the best weights, know when to stop.

Fine-tuning on a user's own noisy images can make a good model worse (too many steps,
too high a learning rate, a mask that does not fit the noise). Measuring a loss on data
kept out of training, and keeping only the weights that lowered it, bounds that harm:
the result is never worse, on that loss, than the model training started from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["BestWeights", "SignificantLoss"]


class BestWeights:
    """The weights with the lowest held-out loss so far, and how many measurements ago.

    Measures the starting weights first, so "best" is never worse than where training
    began: if no step improves on them, they are what comes out.
    """

    def __init__(self, measure: Callable[[nn.Module], float], model: nn.Module) -> None:
        self.measure, self.model = measure, model
        self.start = self.loss = float(measure(model))
        self.step, self.waited, self.history = 0, 0, [(0, self.start)]
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, step: int) -> None:
        loss = float(self.measure(self.model))
        self.history.append((step, loss))
        if loss < self.loss:
            self.loss, self.step, self.waited = loss, step, 0
            self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.waited += 1

    def state(self) -> dict[str, Any]:
        keys = ("start", "loss", "step", "waited", "history", "weights")
        return {k: getattr(self, k) for k in keys}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state` (a resumed run)."""
        self.__dict__.update(state)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.state().items() if k != "weights"}


class SignificantLoss:
    """The held-out loss as `train` ranks weights: the mean masked error, or the starting
    model's own wherever the improvement on it is within the measurement's noise.

    The paired difference (start minus now, per hidden pixel) cancels the noise both see;
    its mean over its standard error is the z-score kept in `z`.
    """

    def __init__(self, errors: Callable[[nn.Module], torch.Tensor], min_z: float) -> None:
        self.errors, self.min_z = errors, min_z
        self.start: torch.Tensor | None = None
        self.z: list[float] = []

    def __call__(self, model: nn.Module) -> float:
        errors = self.errors(model)
        if self.start is None:
            self.start = errors
            return float(errors.mean())
        diff = self.start - errors
        gain, spread = float(diff.mean()), float(diff.std())
        z = gain / spread * math.sqrt(diff.numel()) if spread > 0 else math.copysign(math.inf, gain)
        self.z.append(round(z, 2) if math.isfinite(z) else z)
        return float(errors.mean()) if z >= self.min_z else float(self.start.mean())
