"""What `adapt` tells its caller while it runs: each held-out measurement, and cancellation.

The napari widget previews the weights behind each measurement (`HeldOutCheck.save`) and
lets the user cancel; the CLI and scripts pass neither hook. `CheckReporter` sits between
the hooks of `napari_wne.training.train` and the caller, so the training loop knows nothing
of previews or of the widget.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .model_io import CARD_FILE, WEIGHTS_FILE, save_weights
from .wne import WNE

__all__ = ["AdaptationCancelled", "CheckReporter", "HeldOutCheck", "save_snapshot"]


class AdaptationCancelled(RuntimeError):
    """`adapt` was cancelled; nothing was written."""


@dataclass(frozen=True)
class HeldOutCheck:
    """One measurement of the held-out loss, as `adapt`'s `on_check` callback gets it."""

    step: int
    """Steps trained when it was measured (0: the starting model)."""
    loss: float
    best_loss: float
    """The lowest held-out loss so far, this one included."""
    improved: bool
    """Whether this is the lowest so far (always true at step 0): these weights would be kept."""
    save: Callable[[Path], Path]
    """Writes the weights measured as a model folder that `denoise` loads (for a preview);
    valid only during the callback."""


def save_snapshot(model: torch.nn.Module, card: dict[str, Any], folder: Path) -> Path:
    """Write `model`'s weights as they are now, with the starting model's card."""
    folder.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone if isinstance(model, WNE) else model
    save_weights(backbone.state_dict(), folder / WEIGHTS_FILE)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return folder


class CheckReporter:
    """Tells `on_check` of each held-out measurement and raises when `cancel()` says so.

    `train` measures before the first step and after some steps, each time before it
    reports that step, so a measurement waits for its step number in `after_step`.
    """

    def __init__(
        self,
        card: dict[str, Any],
        on_check: Callable[[HeldOutCheck], None] | None,
        cancel: Callable[[], bool] | None,
    ) -> None:
        self.card, self.on_check, self.cancel = card, on_check, cancel
        self.best = float("inf")
        self.started = False
        self.waiting: tuple[torch.nn.Module, float] | None = None

    def measured(self, model: torch.nn.Module, loss: float) -> float:
        self.waiting = (model, loss)
        if not self.started:  # the starting model, before any step
            self.started = True
            self.after_step(0)
        return loss

    def after_step(self, step: int) -> None:
        if self.waiting is not None:
            model, loss = self.waiting
            self.waiting = None
            improved = loss < self.best
            self.best = min(self.best, loss)
            if self.on_check is not None:
                save = functools.partial(save_snapshot, model, self.card)
                self.on_check(HeldOutCheck(step, loss, self.best, improved, save))
        if self.cancel is not None and self.cancel():
            raise AdaptationCancelled("adaptation cancelled; no model was saved")
