"""The 3-D campaign: a volumetric UNet-WNE, started as an exact plane-by-plane copy of the
2-D `unet-wne` (`napari_wne.inflation`) and fine-tuned on 3-D camera noise.

    python scripts/train_3d.py runs/unet-wne-3d --steps 1600 --threads 1

Rerunning the same command resumes from the run's checkpoint. The split (docs/training.md):

- **train**: 3-D fluorescence phantoms (`napari_wne.phantoms`, seed 0, with an axial
  PSF 1.5 to 4 times the lateral one), with the noise mix the 2-D model trained on
  (Gaussian, or Poisson-Gaussian; `--noise camera`: the camera model, white); with
  `--layered N`, also N volumes layered from the 2-D campaign's real fluorescence images
  (`napari_wne.layered_volumes`, seed 0; W2S 010_0's top 384 rows only);
- **validation** (model selection): phantoms from another seed (1) with Poisson-Gaussian
  noise;
- **test** (never seen by this run): cells3d's `nuclei.tif` (source of the bundled 3-D
  sample) with synthetic noise at three levels, and phantoms from seed 2
  (`benchmarks/quality_3d.py`). The 2-D `unet-wne` it starts from was trained on
  `nuclei.tif` plane by plane (docs/training.md), so both sides of that comparison have
  seen its planes in 2-D; neither has seen it as a volume.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from train_campaign import (
    FLUORESCENCE_EXTRA,
    TRAIN_FILES,
    W2S_CLEAN,
    add_average_option,
    log_every,
    w2s_content,
)

from napari_wne.camera import CameraNoise
from napari_wne.datasets import NoiseConfig, load_clean_images
from napari_wne.inflation import inflate_to_3d
from napari_wne.layered_volumes import layered_volume_set
from napari_wne.model_io import load_weights, save_weights
from napari_wne.models import MODELS, trained_weights
from napari_wne.modes import LOSS
from napari_wne.phantoms import phantom_set
from napari_wne.training import TrainConfig, train

PHANTOMS = 240
PHANTOM_SHAPE = (32, 128, 128)
AXIAL_RATIO = (1.5, 4.0)
"""Axial PSF sigma over lateral: confocal and widefield Z resolution is 2-4x worse."""
BACKBONE_KWARGS = {"downsample_z": False}
W2S_ROWS = 384
"""The W2S validation field's top rows, which the 2-D campaign trains on too; the rows
below them stay for validation."""


def real_images() -> tuple[list[np.ndarray], list[str]]:
    """The real clean 2-D fluorescence images layered volumes are cut from, and their
    sources: those the 2-D campaign trains on (natural images left out)."""
    files = [*TRAIN_FILES[1:], *FLUORESCENCE_EXTRA]
    images = load_clean_images(files) + w2s_content(W2S_ROWS, 1)
    return images, [*(str(f) for f in files), f"{W2S_CLEAN}[:{W2S_ROWS}]"]


def poisson_gaussian(clean: np.ndarray, photons: float, read: float, seed: int) -> np.ndarray:
    """`clean` (peak about 1) seen with `photons` at intensity 1, `read` photons read noise."""
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(np.clip(clean, 0, None) * photons) + rng.normal(0, read, clean.shape)
    return (noisy / photons).astype(np.float32)


def validation_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two held-out phantoms (seed 1), at about 10 and 40 photons at their peak."""
    clean = phantom_set(2, (24, 96, 96), seed=1, axial_ratio=AXIAL_RATIO)
    return [
        (poisson_gaussian(c, photons, 1.0, seed=i), c)
        for i, (c, photons) in enumerate(zip(clean, (10.0, 40.0), strict=True))
    ]


def start_weights(run: Path, model: str) -> Path:
    """The 2-D model's weights as a 3-D plane-by-plane network, saved in the run folder; a
    3-D model's own weights as they are."""
    if 2 not in MODELS[model].dims:
        return trained_weights(model)
    path = run / f"init-{model}-3d.safetensors"
    if not path.is_file():
        run.mkdir(parents=True, exist_ok=True)
        save_weights(inflate_to_3d(load_weights(trained_weights(model))), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of patch and noise sampling: a new one gives a later stage fresh batches",
    )  # fmt: skip
    parser.add_argument(
        "--noise", choices=("mixed", "camera"), default="mixed",
        help="mixed: the Gaussian / Poisson-Gaussian mix the 2-D model trained on; camera: "
        "the camera model with white noise",
    )  # fmt: skip
    parser.add_argument(
        "--init", default="unet-wne",
        help="shipped model to start from: a 2-D one is inflated, a 3-D one fine-tuned",
    )  # fmt: skip
    parser.add_argument(
        LOSS.option, choices=LOSS.values, default=LOSS.default, help=LOSS.help,
    )  # fmt: skip
    add_average_option(parser)
    parser.add_argument("--patch", type=int, nargs=3, default=(12, 48, 48))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--phantoms", type=int, default=PHANTOMS)
    parser.add_argument(
        "--layered", type=int, default=0,
        help="volumes layered from real 2-D fluorescence images (napari_wne.layered_volumes) "
        "added to the phantoms",
    )  # fmt: skip
    args = parser.parse_args(argv)

    print(f"making {args.phantoms} phantoms of {PHANTOM_SHAPE}", flush=True)
    clean = phantom_set(args.phantoms, PHANTOM_SHAPE, seed=0, axial_ratio=AXIAL_RATIO)
    data = [f"phantoms:{args.phantoms}x{PHANTOM_SHAPE} axial {AXIAL_RATIO}"]
    if args.layered:
        images, sources = real_images()
        clean += layered_volume_set(images, args.layered, PHANTOM_SHAPE, seed=0)
        data.append(f"layered:{args.layered}x{PHANTOM_SHAPE} from " + ", ".join(sources))
    config = TrainConfig(
        output_dir=args.output_dir,
        backbone="unet",
        wne=True,
        spatial_dims=3,
        backbone_kwargs=BACKBONE_KWARGS,
        mode="supervised",
        patch_size=tuple(args.patch),
        batch_size=args.batch,
        steps=args.steps,
        lr=args.lr,
        lr_min=args.lr / 10,
        seed=args.seed,
        loss=args.loss,
        noise=NoiseConfig(kind="camera", camera=CameraNoise(p_correlated=0.0))
        if args.noise == "camera"
        else NoiseConfig(),
        checkpoint_every=250,
        validate_every=250,
        threads=args.threads,
        init_weights=str(start_weights(args.output_dir, args.init)),
        average_decay=args.average,
        data=tuple(data),
    )

    train(config, clean_images=clean, validation=validation_pairs(), progress=log_every(50))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
