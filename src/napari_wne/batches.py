"""Training batches: drawn in the training process, or by worker processes ahead of it.

Drawing a batch (sampling patches, then synthesizing noise in float64, or masking for
Noise2Void) runs on one CPU core at about 1 ms per 128-px patch
(`benchmarks/bench_batches.py`). On a CPU that is a small part of a training step; on a
GPU, whose step takes a few milliseconds, it would leave the device waiting most of the
time (the H200 runs of docs/training.md drew with 12 workers). With `workers`, batches are
drawn by that many processes (a torch DataLoader) while the device trains.

Batch k of a run with workers is drawn from a seed made of the run's seed and k alone, so
the run is the same whatever the number of workers, and resumes exactly. Without workers
the batches come from the run's own random streams, as they always have (those streams
are in the checkpoint), so the two ways give different, equally random, batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .blind_spot import blind_spot_mask
from .datasets import PatchSampler, jitter_intensity, synthesize_noise

if TYPE_CHECKING:
    from .training import Pair, TrainConfig

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]
"""(inputs, targets, loss weights a, masked indices or None)."""


class Batches:
    """Draws training batches (inputs, targets, loss weights, masked indices) for a mode."""

    def __init__(
        self,
        config: TrainConfig,
        clean_images: Sequence[np.ndarray] | None,
        noisy_images: Sequence[np.ndarray] | None,
        pairs: Sequence[Pair] | None,
    ) -> None:
        source = {"supervised": clean_images, "n2v": noisy_images, "pairs": pairs}[config.mode]
        needed = {"supervised": "clean_images", "n2v": "noisy_images", "pairs": "pairs"}
        if not source:
            raise ValueError(f"mode {config.mode!r} needs {needed[config.mode]}")
        self.config = config
        self.sampler = PatchSampler(source, config.patch_size, spatial_dims=config.spatial_dims)

    def draw(self, rng: np.random.Generator, gen: torch.Generator) -> Batch:
        cfg = self.config
        patches = torch.from_numpy(self.sampler.sample(cfg.batch_size, rng))
        if cfg.mode == "supervised":
            noisy, clean, a = synthesize_noise(patches, cfg.noise, gen)
            return noisy, clean, a, None
        if cfg.mode == "pairs":
            (noisy, clean), a = jitter_intensity((patches[:, :1], patches[:, 1:]), cfg.noise, gen)
            return noisy, clean, a.float(), None
        (noisy,), a = jitter_intensity((patches,), cfg.noise, gen)
        masked, index = blind_spot_mask(
            noisy,
            cfg.mask_fraction,
            cfg.mask_window,
            gen,
            radius=cfg.mask_radius,
            replacement=cfg.mask_replacement,
        )
        return masked, noisy, a.float(), index

    def draw_step(self, step: int) -> Batch:
        """Batch `step` of a run with workers: a function of the seed and `step` alone."""
        seeds = np.random.SeedSequence([self.config.seed, step])
        torch_seed = int(seeds.generate_state(1, np.uint64)[0] >> np.uint64(1))
        return self.draw(np.random.default_rng(seeds), torch.Generator().manual_seed(torch_seed))


class _Steps(Dataset):
    """Batch k at index k (the DataLoader asks for the run's remaining steps in order)."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return self.batches.config.steps

    def __getitem__(self, step: int) -> tuple:
        inputs, targets, a, index = self.batches.draw_step(step)
        return inputs, targets, a, torch.empty(0, dtype=torch.long) if index is None else index


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # each worker is one core's worth of drawing


def worker_batches(batches: Batches, start: int, workers: int, pin: bool) -> Iterator[Batch]:
    """Batches `start`, `start` + 1, ... to the run's last, drawn ahead by `workers`
    processes; `pin`: in page-locked memory, for a fast copy to a CUDA device."""
    loader = DataLoader(
        _Steps(batches),
        batch_size=None,
        sampler=range(start, batches.config.steps),
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4,
        worker_init_fn=_one_thread,
    )
    for inputs, targets, a, index in loader:
        yield inputs, targets, a, index if index.numel() else None
