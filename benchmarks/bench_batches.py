"""How long does drawing one training batch take on one core? (Why `--workers` exists.)

    python benchmarks/bench_batches.py            # writes its section of docs/performance.md
    python benchmarks/bench_batches.py --no-write

It draws the batches of `unet-wne`'s fluorescence recipe (scripts/train_campaign.py:
`--noise mixed --no-natural --fluorescence --phantoms 0 --w2s-rows 384`) in the training
process, one torch thread, as `napari-wne train` without workers does: patch sampling,
then the noise synthesis, separately timed. A GPU's training step for the same batch
takes a few milliseconds (docs/training.md), so this is what workers take off it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import train_campaign  # the recipe's training images

from _report import machine, write_section
from napari_wne.batches import Batches
from napari_wne.datasets import NoiseConfig, load_clean_images, synthesize_noise
from napari_wne.training import TrainConfig

SHAPES = ((4, 128), (32, 128), (16, 256))
"""(batch, patch side): the CPU stages' batches and the GPU runs' 32 x 128 px."""


def recipe_pool() -> list[np.ndarray]:
    files = train_campaign.TRAIN_FILES[1:] + train_campaign.FLUORESCENCE_EXTRA
    return load_clean_images(files) + train_campaign.w2s_content(384, 20)


def time_draws(pool: list[np.ndarray], batch: int, patch: int, rounds: int) -> tuple[float, float]:
    """Median seconds per batch: patch sampling, noise synthesis."""
    config = TrainConfig(output_dir=".", patch_size=patch, batch_size=batch, noise=NoiseConfig())
    batches = Batches(config, pool, None, None)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    sampling, noise = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        patches = torch.from_numpy(batches.sampler.sample(batch, rng))
        sampling.append(time.perf_counter() - start)
        start = time.perf_counter()
        synthesize_noise(patches, config.noise, gen)
        noise.append(time.perf_counter() - start)
    return statistics.median(sampling), statistics.median(noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    pool = recipe_pool()
    rows = [
        "| batch | sampling (ms) | noise (ms) | whole batch (ms) | per patch (ms) |",
        "|---|---|---|---|---|",
    ]
    for batch, patch in SHAPES:
        sampling, noise = time_draws(pool, batch, patch, args.rounds)
        whole = (sampling + noise) * 1000
        rows.append(
            f"| {batch} x {patch} px | {sampling * 1000:.1f} | {noise * 1000:.1f} | "
            f"{whole:.1f} | {whole / batch * (128 / patch) ** 2:.2f} (per 128 px) |"
        )
        print(rows[-1], flush=True)
    if args.no_write:
        return
    write_section(
        "bench_batches",
        [
            "## Drawing a training batch on one core",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/bench_batches.py` "
            f"({machine(torch.device('cpu'))}; median of {args.rounds} batches each, "
            f"{time.perf_counter() - began:.0f} s in all). The fluorescence recipe of "
            "`unet-wne` (mixed Gaussian / Poisson-Gaussian noise with intensity jitter), "
            "drawn in the training process as `napari-wne train` does without `--workers`.",
            "",
            *rows,
            "",
        ],
    )


if __name__ == "__main__":
    main()
