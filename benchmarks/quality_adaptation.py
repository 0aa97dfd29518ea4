"""A few minutes of self-supervised adaptation: what does it add on real data?

For each set of real noisy images (the 10 W2S widefield captures; the 2 FMD confocal
captures), Noise2Void-style training on those noisy images alone (no clean image is
used) either fine-tunes the shipped default model or trains the same network from
scratch; both are then scored against the clean references, next to the shipped model.

    python benchmarks/quality_adaptation.py                 # writes docs/results.md
    python benchmarks/quality_adaptation.py --quick --no-write
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from datetime import date
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from _data import VALIDATION_PAIR, microscopy_pairs
from _report import RESULTS, machine, write_section
from napari_wne import DEFAULT_MODEL, MODELS, denoise
from napari_wne.datasets import normalize_intensity
from napari_wne.metrics import scores
from napari_wne.training import TrainConfig, train


def adapt(noisy: list[np.ndarray], folder: Path, steps: int, init: bool, threads: int) -> Path:
    spec = MODELS[DEFAULT_MODEL]
    config = TrainConfig(
        output_dir=folder,
        backbone=spec.backbone,
        wne=spec.wne,
        mode="n2v",
        steps=steps,
        lr=2e-4 if init else 1e-3,
        lr_min=1e-5,
        checkpoint_every=steps,
        validate_every=steps,
        threads=threads,
        device="cpu",
        init_weights=str(resources.files("napari_wne").joinpath("weights", spec.weights))
        if init
        else None,
    )
    images = [normalize_intensity(n, "percentile", clip=False) for n in noisy]
    return train(config, noisy_images=images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps")
    parser.add_argument("--scratch-steps", type=int, default=600, help="from-scratch steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a few steps (CI smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.steps = args.scratch_steps = 2
    warnings.simplefilter("ignore", UserWarning)
    start = time.perf_counter()
    groups: dict[str, list] = {}
    for name, noisy, clean in microscopy_pairs():
        if name == VALIDATION_PAIR:
            continue
        group = "W2S widefield" if name.startswith("w2s") else "FMD confocal"
        groups.setdefault(group, []).append((noisy, clean))
    rows = [
        "| images | model | training on the noisy images | wall time | PSNR | SSIM |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    for group, pairs in groups.items():
        pairs = pairs[:1] if args.quick else pairs
        noisy = [n for n, _ in pairs]
        runs = {f"shipped `{DEFAULT_MODEL}`": (DEFAULT_MODEL, "none", 0.0)}
        with tempfile.TemporaryDirectory() as tmp:
            for label, steps, init in (
                (f"`{DEFAULT_MODEL}` fine-tuned", args.steps, True),
                ("same UNet-WNE from scratch", args.scratch_steps, False),
            ):
                began = time.perf_counter()
                folder = adapt(noisy, Path(tmp) / label.strip("`"), steps, init, args.threads)
                runs[label] = (str(folder), f"N2V, {steps} steps", time.perf_counter() - began)
            for label, (model, how, seconds) in runs.items():
                found = [
                    scores(denoise(n.astype(np.float32), model, verbose=False), c) for n, c in pairs
                ]
                rows.append(
                    f"| {group} ({len(pairs)}) | {label} | {how} | "
                    f"{seconds / 60:.1f} min | {statistics.fmean(f[0] for f in found):.2f} | "
                    f"{statistics.fmean(f[1] for f in found):.3f} |"
                )
                print(rows[-1], flush=True)
    if args.no_write or args.quick:
        return
    write_section(
        "quality_adaptation",
        [
            "## Self-supervised adaptation to the user's own images",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_adaptation.py` "
            f"({machine(torch.device('cpu'))}, {args.threads} torch thread(s); "
            f"{time.perf_counter() - start:.0f} s). Noise2Void-style training on the noisy "
            "images of each set alone (batches of 16 patches of 64 px); no clean image is "
            "used until scoring. Fine-tuning starts from the shipped weights (lr 2e-4, "
            "cosine); from scratch starts from random weights (lr 1e-3).",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
