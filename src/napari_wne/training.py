"""Train any registered backbone, WNE-wrapped or plain, for `denoise` to use.

Three modes:

- ``"supervised"``: clean images plus synthetic noise (`napari_wne.datasets.NoiseConfig`);
- ``"pairs"``: registered (noisy, clean) image pairs;
- ``"n2v"``: self-supervised, from the user's noisy images only. A blind-spot method in
  the style of Noise2Void: a few pixels per patch (with their neighbourhood, for
  correlated noise) are replaced (`napari_wne.blind_spot`), and the loss is taken only
  there, against the original noisy values. For noise that is independent beyond the
  masked neighbourhood, its minimizer is the clean image. `train` can stop early on a
  held-out loss and keep the best weights (`napari_wne.adaptation` uses both).

The loss is the patch MSE in raw pixel space or its mean in decibels (`napari_wne.losses`).
With `average_decay`, a moving average of the weights is validated, selected and exported
(`napari_wne.weight_average`). A rerun with the same settings resumes from the run folder's
checkpoint (`napari_wne.run_folder`) and ends with the same weights as an uninterrupted run;
`denoise(model=FOLDER)` loads the model it exports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .backbones import build_backbone
from .batches import Batches, worker_batches
from .blind_spot import Replacement, blind_spot_mask
from .datasets import NoiseConfig
from .devices import resolve_device
from .early_stopping import BestWeights
from .losses import patch_loss
from .metrics import psnr
from .model_io import _load_into, load_weights
from .modes import LOSS, Loss
from .run_folder import (
    CHECKPOINT_FILE,
    check_same_settings,
    checkpoint_step,
    deferred_interrupt,
    export_model,
    read_checkpoint,
    save_checkpoint,
)
from .weight_average import check_decay, moving_average
from .wne import WNE

__all__ = [
    "CHECKPOINT_FILE",
    "TrainConfig",
    "TrainProgress",
    "blind_spot_mask",
    "build_model",
    "checkpoint_step",
    "psnr",
    "train",
]

Mode = Literal["supervised", "pairs", "n2v"]
Pair = tuple[np.ndarray, np.ndarray]

_RUNTIME_FIELDS = (
    "output_dir", "checkpoint_every", "validate_every", "threads", "device", "workers"
)  # fmt: skip
"""Settings that may change when a run resumes: they do not change what is computed (but
for `workers` from 0 to more, or back: see `napari_wne.batches`)."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (and so must match when it resumes)."""

    output_dir: str | Path
    backbone: str = "unet"
    wne: bool = True
    wne_eps: float = 0.0
    spatial_dims: int = 2
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    mode: Mode = "supervised"
    patch_size: int | tuple[int, ...] = 64
    batch_size: int = 16
    steps: int = 10_000
    lr: float = 1e-3
    lr_min: float = 1e-5
    schedule: Literal["cosine", "constant"] = "cosine"
    """Cosine decay from `lr` to `lr_min`, or constant `lr` (the paper: Adam, 1e-4)."""
    seed: int = 0
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    """Noise synthesis (supervised) and intensity jitter (every mode)."""
    mask_fraction: float = 0.003
    """n2v: share of each patch's pixels that are masked (N2V uses about 0.2%)."""
    mask_window: int = 5
    """n2v: side of the window (centre excluded) the replacement neighbour comes from."""
    mask_radius: int = 0
    """n2v: also hide the neighbours within this many pixels (structN2V, correlated noise)."""
    mask_replacement: Replacement = "uniform"
    """n2v: a random neighbour (N2V) or the neighbours' median (N2V2, no checkerboard)."""
    patience: int | None = None
    """With a `held_out` loss: stop after this many evaluations without improvement."""
    loss: Loss = LOSS.default
    """The batch's mean squared error, or the mean of each patch's log MSE (see above)."""
    checkpoint_every: int = 500
    validate_every: int = 500
    threads: int | None = None
    """CPU threads for torch; None: every core."""
    device: str = "auto"
    workers: int = 0
    """Processes that draw batches ahead of the training step (`napari_wne.batches`): for a
    GPU, which otherwise waits on one core's drawing. 0: drawn in the training process."""
    init_weights: str | None = None
    """Start from these backbone weights (fine-tuning) instead of a random initialization."""
    average_decay: float | None = None
    """Validate and export a moving average of the weights, updated with this decay after
    every step (`napari_wne.weight_average`), instead of the last weights."""
    data: tuple[str, ...] = ()
    """Where the training data came from (recorded, and checked on resume)."""

    def __post_init__(self) -> None:
        if self.mode not in ("supervised", "pairs", "n2v"):
            raise ValueError(f"mode must be 'supervised', 'pairs' or 'n2v', got {self.mode!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("steps", "batch_size", "checkpoint_every", "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(
                f"workers must be 0 (draw in this process) or more, got {self.workers}"
            )
        if not 0 < self.mask_fraction < 1:
            raise ValueError(f"mask_fraction must be in (0, 1), got {self.mask_fraction}")
        if self.mask_window < 3 or self.mask_window % 2 == 0:
            raise ValueError(f"mask_window must be odd and >= 3, got {self.mask_window}")
        if self.mask_radius < 0 or self.mask_replacement not in ("uniform", "median"):
            raise ValueError("mask_radius must be >= 0 and mask_replacement uniform or median")
        LOSS.check(self.loss)
        if self.average_decay is not None:
            check_decay(self.average_decay)
        if isinstance(self.noise, dict):
            self.noise = NoiseConfig(**_tuples(self.noise))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def _tuples(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}


@dataclass(frozen=True)
class TrainProgress:
    """What the `progress` callback of `train` receives after every step."""

    step: int
    steps: int
    start_step: int
    """The step this session started from (0, or where it resumed)."""
    loss: float
    lr: float
    seconds: float
    """Training time so far, over all sessions of the run."""
    val_psnr: float | None = None
    """Mean validation PSNR in dB, on the steps where it was measured."""
    checkpoint: bool = False
    """Whether a checkpoint was written after this step."""
    last_val_psnr: float | None = None
    """With `average_decay`: the last (not averaged) weights' validation PSNR."""


def build_model(config: TrainConfig) -> nn.Module:
    """The network a configuration trains: the backbone, wrapped with WNE if asked."""
    kwargs = _tuples(dict(config.backbone_kwargs))
    backbone = build_backbone(config.backbone, spatial_dims=config.spatial_dims, **kwargs)
    return WNE(backbone, eps=config.wne_eps) if config.wne else backbone


@torch.no_grad()
def _validate(
    model: nn.Module, pairs: Sequence[Pair], spatial_dims: int, device: torch.device
) -> float:
    """Mean PSNR of the model's output over (noisy, clean) pairs; leading axes are instances."""
    was_training = model.training
    model.eval()
    scores = []
    for noisy, clean in pairs:
        spatial = noisy.shape[-spatial_dims:]
        stack = np.ascontiguousarray(noisy, dtype=np.float32).reshape(-1, 1, *spatial)
        out = np.concatenate(
            [model(torch.from_numpy(s[None]).to(device)).float().cpu().numpy() for s in stack]
        )
        scores.append(psnr(out.reshape(clean.shape), clean))
    model.train(was_training)
    return float(np.mean(scores))


def _input_psnr(pairs: Sequence[Pair] | None) -> float | None:
    return float(np.mean([psnr(noisy, clean) for noisy, clean in pairs])) if pairs else None


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.steps, eta_min=config.lr_min
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def train(
    config: TrainConfig,
    *,
    clean_images: Sequence[np.ndarray] | None = None,
    noisy_images: Sequence[np.ndarray] | None = None,
    pairs: Sequence[Pair] | None = None,
    validation: Sequence[Pair] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    held_out: Callable[[nn.Module], float] | None = None,
) -> Path:
    """Train (or resume) the run in ``config.output_dir``; returns that folder.

    Images are float arrays in about [0, 1] (see `napari_wne.datasets`); each may have more
    axes than ``config.spatial_dims`` (extra leading axes are sampled at random).
    `validation` pairs (noisy, clean) are scored every ``validate_every`` steps. Ctrl-C
    (in the main thread) stops after the current step, writes a checkpoint and raises
    KeyboardInterrupt; so does a KeyboardInterrupt raised by `progress`. A second Ctrl-C
    stops at once, leaving the last periodic checkpoint.

    `held_out(model)`, a loss on data kept out of training (lower is better), is measured
    before the first step and every ``validate_every`` steps: the weights with the lowest
    one are exported (the starting weights, if no step improved on them), and training
    stops after ``config.patience`` measurements without improvement. The card records it.
    """
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    device, _ = resolve_device(config.device)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    ahead = None
    try:
        batches = Batches(config, clean_images, noisy_images, pairs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = build_model(config)
        backbone = model.backbone if isinstance(model, WNE) else model
        if config.init_weights:
            _load_into(backbone, load_weights(config.init_weights), config.init_weights)
        model.to(device).train()
        decay = config.average_decay
        averaged = None if decay is None else moving_average(model, decay)
        exported = model if averaged is None else averaged.module
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scheduler = _make_scheduler(config, optimizer)
        rng = np.random.default_rng(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        step, elapsed, val_psnr = 0, 0.0, None
        best = BestWeights(held_out, exported) if held_out is not None else None
        if checkpoint_path.is_file():
            saved = read_checkpoint(checkpoint_path)
            check_same_settings(
                json.loads(saved["config"]),
                config.to_dict(),
                TrainConfig(output_dir=".").to_dict(),
                _RUNTIME_FIELDS,
                out_dir,
            )
            model.load_state_dict(saved["model"])
            if averaged is not None:
                averaged.load_state_dict(saved["averaged"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            rng.bit_generator.state = json.loads(saved["numpy_rng"])
            gen.set_state(saved["torch_rng"])
            step, elapsed = int(saved["step"]), float(saved["seconds"])
            val_psnr = saved.get("val_psnr")
            if best is not None and saved.get("best") is not None:
                best.restore(saved["best"])
        start_step = step
        if config.workers and step < config.steps:
            ahead = worker_batches(batches, step, config.workers, pin=device.type == "cuda")

        def patience_left() -> bool:
            return best is None or config.patience is None or best.waited < config.patience

        def checkpoint() -> None:
            state = {
                "format": 1,
                "config": json.dumps(config.to_dict()),
                "step": step,
                "seconds": elapsed,
                "val_psnr": val_psnr,
                "model": model.state_dict(),
                "averaged": None if averaged is None else averaged.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "numpy_rng": json.dumps(rng.bit_generator.state),
                "torch_rng": gen.get_state(),
                "best": None if best is None else best.state(),
            }
            save_checkpoint(checkpoint_path, state)

        in_step = False
        with deferred_interrupt() as stop_requested:
            try:
                while step < config.steps and patience_left():
                    in_step, began = True, time.perf_counter()
                    drawn = batches.draw(rng, gen) if ahead is None else next(ahead)
                    inputs, targets, a, index = drawn
                    inputs, targets = inputs.to(device), targets.to(device)
                    index = None if index is None else index.to(device)
                    optimizer.zero_grad(set_to_none=True)
                    loss = patch_loss(model(inputs), targets, a, index, config.loss)
                    loss.backward()
                    optimizer.step()
                    if averaged is not None:
                        averaged.update_parameters(model)
                    lr = optimizer.param_groups[0]["lr"]
                    scheduler.step()
                    step += 1
                    loss_value = loss.item()  # waits for the GPU, so the time below is true
                    in_step = False
                    elapsed += time.perf_counter() - began
                    measured = last = None
                    if validation and (step % config.validate_every == 0 or step == config.steps):
                        measured = _validate(exported, validation, config.spatial_dims, device)
                        val_psnr = measured
                        if averaged is not None:
                            last = _validate(model, validation, config.spatial_dims, device)
                    if best is not None and (
                        step % config.validate_every == 0 or step == config.steps
                    ):
                        best.update(step)
                    saving = step % config.checkpoint_every == 0 or step == config.steps
                    saving = saving or not patience_left()
                    if saving:
                        checkpoint()
                    if progress is not None:
                        report = (step, config.steps, start_step, loss_value, lr, elapsed)
                        progress(TrainProgress(*report, measured, saving, last))
                    if stop_requested():
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                if not in_step:  # between steps the state is whole: resume from exactly here
                    checkpoint()
                raise
        if best is not None:
            exported.load_state_dict(best.weights)
        summary = None if best is None else best.summary()
        scores = {"final_val_psnr": val_psnr, "val_input_psnr": _input_psnr(validation)}
        kept = exported.backbone if isinstance(exported, WNE) else exported
        export_model(out_dir, exported, kept, config.to_dict(), elapsed, scores, device, summary)
        return out_dir
    finally:
        if ahead is not None:
            ahead.close()  # stops the workers now, not whenever the generator is collected
        torch.set_num_threads(threads_before)
