"""Early stopping on a held-out loss: keep the best weights, know when to stop.

Fine-tuning on a user's own noisy images can make a good model worse (too many steps,
too high a learning rate, a mask that does not fit the noise). Measuring a loss on data
kept out of training, and keeping only the weights that lowered it, bounds that harm:
the result is never worse, on that loss, than the model training started from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["BestWeights"]


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
