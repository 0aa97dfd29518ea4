"""A `train_campaign.py` recipe on a CUDA GPU, sized to a wall-clock budget.

    python scripts/train_gpu.py runs/white-gpu --seconds 380 --workers 12 -- \
        --noise mixed --no-natural --fluorescence --phantoms 0 --w2s-rows 384 --select w2s \
        --patch 128 --batch 32 --lr 1e-4 --average 0.999

Why a second script: on a GPU the network step takes a few milliseconds, while drawing a
batch (patch sampling, then Poisson and Gaussian noise in float64) takes about 1 ms per
128-px patch on one CPU core: the campaign's in-process draws would leave the GPU idle most
of the time. Here the draws run in `--workers` processes (a torch DataLoader, each worker
with its own seed), and the number of steps is chosen so that the run, whose cosine
learning rate needs its length up front, ends within `--seconds`: a short probe run
measures the steps per second first. Everything after `--` is `train_campaign.py`'s own
options; the run folder is an ordinary one (`scripts/ship_model.py` takes it).

Resuming is not exact here, unlike the campaign: the workers' random streams are not in
the checkpoint. The device time these runs get is too short to need it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_campaign

from napari_wne import training
from napari_wne.run_folder import CARD_FILE

InProcess = training._Batches
"""The campaign's own batch drawer, run here inside each worker."""


class _Draws(IterableDataset):
    """An endless stream of batches from one `InProcess` drawer per worker."""

    def __init__(self, drawer: InProcess, seed: int) -> None:
        self.drawer, self.seed = drawer, seed

    def __iter__(self):
        worker = get_worker_info()
        seed = self.seed * 1000 + (0 if worker is None else worker.id)
        torch.set_num_threads(1)
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        while True:
            inputs, targets, a, index = self.drawer.draw(rng, gen)
            yield inputs, targets, a, torch.empty(0) if index is None else index


def worker_batches(workers: int):
    """A drop-in for `training._Batches` whose `draw` takes the next batch from `workers`
    processes (the in-process drawer where they cannot start)."""

    class WorkerBatches(InProcess):
        def __init__(self, config, clean_images, noisy_images, pairs) -> None:
            super().__init__(config, clean_images, noisy_images, pairs)
            self._stream = None
            if workers > 0:
                loader = DataLoader(
                    _Draws(InProcess(config, clean_images, noisy_images, pairs), config.seed),
                    batch_size=None,
                    num_workers=workers,
                    prefetch_factor=8,
                    pin_memory=torch.cuda.is_available(),
                    persistent_workers=True,
                )
                try:
                    self._stream = iter(loader)
                    self._first = next(self._stream)
                except Exception as err:  # e.g. too little shared memory for the workers
                    print(f"workers failed ({type(err).__name__}: {err}); drawing in-process")
                    self._stream = None

        def draw(self, rng, gen):
            if self._stream is None:
                return super().draw(rng, gen)
            if self._first is not None:
                batch, self._first = self._first, None
            else:
                batch = next(self._stream)
            inputs, targets, a, index = batch
            return inputs, targets, a, index if index.numel() else None

    return WorkerBatches


def run(output_dir: Path, steps: int, campaign_args: list[str]) -> float:
    """One campaign run of `steps`; returns its steps per second of training time."""
    train_campaign.main([str(output_dir), "--steps", str(steps), *campaign_args])
    card = json.loads((output_dir / CARD_FILE).read_text())
    return steps / max(card["wall_time_s"], 1e-3)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, campaign_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if ("--" in argv) else (argv, [])
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seconds", type=float, required=True, help="wall-clock budget")
    parser.add_argument("--workers", type=int, default=12, help="batch-drawing processes")
    parser.add_argument("--probe-steps", type=int, default=300)
    parser.add_argument(
        "--share", type=float, default=0.8,
        help="of the time left after the probe, the share the step estimate may fill "
        "(validation, checkpoints and the workers' start take the rest)",
    )  # fmt: skip
    args = parser.parse_args(ours)

    began = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    training._Batches = worker_batches(args.workers)
    with tempfile.TemporaryDirectory() as probe:  # beside nothing the user keeps
        rate = run(Path(probe), args.probe_steps, [*campaign_args, "--select", "last"])
    left = args.seconds - (time.perf_counter() - began)
    steps = max(args.probe_steps, int(rate * left * args.share) // 100 * 100)
    print(f"probe: {rate:.1f} steps/s; {left:.0f} s left: {steps} steps", flush=True)
    run(args.output_dir, steps, campaign_args)
    print(f"done in {time.perf_counter() - began:.0f} s of {args.seconds:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
