"""Adapt a trained denoiser to a user's own noisy images, without any clean image.

A shipped model has seen many cameras, but not this one: its noise may be correlated
(registered, resampled or binned widefield data), or its structures unlike the training
data. `adapt` fine-tunes the model on the user's images alone, self-supervised
(Noise2Void-style, through `napari_wne.training.train`), with four guards that make the
result safe to use unattended:

- the hidden neighbourhood of the blind-spot mask is as wide as the noise correlation
  measured on the images (`napari_wne.noise_stats.estimate_correlation`, structN2V), so
  correlated noise is not learned as signal;
- hidden pixels are replaced by the median of the pixels around them (N2V2), which
  avoids checkerboard artefacts;
- a small, constant learning rate, so a few hundred steps nudge the model rather than
  retrain it;
- a band of rows of every image is kept out of training; the masked loss on it, with
  fixed masks, is measured before the first step and every few steps. The weights with
  the lowest held-out loss are kept, and training stops when it no longer falls. A lower
  loss counts only when it is *significantly* lower than the starting model's, pixel by
  pixel on the same hidden pixels (`AdaptSettings.min_z`): one image's held-out band holds
  about a thousand hidden pixels, whose loss cannot tell a 0.1 dB change from chance. If
  no step beat the starting model so, the starting model is what is written ("kept the
  original"). The check hides at least a 3x3 neighbourhood around each hidden pixel
  (`AdaptSettings.held_out_radius`), even where training hides single pixels: noise
  correlation that the estimate misses would otherwise let a model that learned to copy
  the noise from the neighbours pass as improved (it did on FMD, losing 0.2 dB).

While it runs, `progress` hears of every step and `on_check` of every held-out
measurement (with a way to write the weights measured, for a preview); `cancel` stops it
after the current step, writing nothing.

The result is a model folder (``model.safetensors`` + ``model.json``) that
``denoise(model=FOLDER)`` loads; its card says whether it was adapted, from which model,
on which images, and the held-out loss before and after. The CLI (``napari-wne adapt``)
and the napari widget both call `adapt`.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .adaptation_checks import AdaptationCancelled, CheckReporter, HeldOutCheck
from .blind_spot import blind_spot_mask, mask_radius, masked_errors
from .datasets import NoiseConfig, normalize_intensity
from .early_stopping import SignificantLoss
from .model_io import CARD_FILE, WEIGHTS_FILE, atomic_write, read_model_card
from .models import DEFAULT_MODEL, get_model, trained_weights
from .noise_stats import estimate_correlation
from .routing import choose_model, routing_sample
from .training import TrainConfig, TrainProgress, train

__all__ = [
    "KEPT_CORRELATED",
    "KEPT_ORIGINAL",
    "AdaptSettings",
    "Adaptation",
    "AdaptationCancelled",
    "HeldOutCheck",
    "adapt",
]

KEPT_ORIGINAL = "kept the original: adaptation did not improve the held-out loss significantly"
KEPT_CORRELATED = (
    "kept the original without adapting: the noise is spatially correlated, where the "
    "held-out check let through losses of up to 3 dB on the correlated-noise benchmark "
    "(docs/results.md); allow_correlated (CLI: --allow-correlated) adapts anyway"
)


@dataclass(frozen=True)
class AdaptSettings:
    """How `adapt` fine-tunes; the defaults fit about 5 minutes of one CPU core."""

    steps: int = 400
    """At most this many steps (early stopping usually ends sooner)."""
    lr: float = 5e-5
    """Constant Adam learning rate: small, so the model is nudged, not retrained."""
    batch_size: int = 16
    patch_size: int = 64
    check_every: int = 25
    """Steps between measurements of the held-out loss."""
    patience: int = 4
    """Stop after this many measurements without a lower held-out loss."""
    held_out_rows: int = 64
    """Rows at the bottom of every image (plane) kept out of training, for the held-out loss."""
    held_out_masks: int = 4
    """Fixed masks drawn per held-out patch (more masked pixels, a steadier loss)."""
    mask_radius: int | None = None
    """Hidden neighbourhood around each masked pixel; None: from the measured correlation."""
    allow_correlated: bool = False
    """Adapt also where the measured noise is correlated (a mask radius above 0). Off by
    default: there the blind-spot loss, measured with the neighbourhood hidden, does not
    follow what the model does when it sees it, and adapting `unet-wne-corr` lost up to
    3.08 dB on images whose held-out loss it had improved (docs/results.md)."""
    min_z: float = 2.0
    """A held-out loss below the start's counts only this many standard errors below it
    (pixel-by-pixel differences on the same hidden pixels). On the full W2S set, adapting
    with any improvement counted lost up to 0.17 dB on 3 of 10 images
    (docs/results.md)."""
    held_out_radius: int = 1
    """The held-out check hides at least this wide a neighbourhood, whatever the mask
    radius trained with. Noise correlation that the estimate from the noisy image misses
    (FMD confocal: 0.26 along X, measured 0.04) lets the blind-spot loss fall because the
    model learns to copy the noise from its neighbours; with the neighbours hidden in the
    check too, that gain disappears and the original is kept."""
    correlation_threshold: float = 0.1
    """The mask reaches every lag whose measured noise correlation exceeds this."""
    mask_fraction: float | None = None
    """Share of pixels whose neighbourhood is hidden; None: about 5% of pixels hidden."""
    seed: int = 0
    threads: int | None = 1
    device: str = "auto"


@dataclass(frozen=True)
class Adaptation:
    """What `adapt` did: where the model is, whether it changed, and the evidence."""

    folder: Path
    adapted: bool
    start_loss: float
    """Held-out masked loss of the starting model."""
    best_loss: float
    """Held-out masked loss of the model written (equal to `start_loss` if kept)."""
    best_step: int
    steps_run: int
    correlation: tuple[float, ...]
    """Noise correlation measured at lags 1, 2, 3 (mean over the images)."""
    mask_radius: int
    seconds: float
    kept_because: str = KEPT_ORIGINAL
    """Why the original was kept (when `adapted` is false)."""

    @property
    def message(self) -> str:
        """One line for the user."""
        if not self.adapted:
            return self.kept_because
        change = 100 * (self.start_loss - self.best_loss) / self.start_loss
        return (
            f"adapted: held-out loss {self.start_loss:.4g} -> {self.best_loss:.4g} "
            f"({change:.2f}% lower, best at step {self.best_step} of {self.steps_run})"
        )


def start_model(init: str) -> tuple[Path, dict[str, Any]]:
    """The weights file and model card of a shipped model name or a trained model folder."""
    weights = trained_weights(init)
    card = read_model_card(weights)
    if card["spatial_dims"] != 2:
        raise ValueError(f"{init} is a {card['spatial_dims']}-D model; adapt works on 2-D models")
    return weights, card


def _split(image: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(training part, held-out band): the last `rows` rows of every plane are held out."""
    return image[..., :-rows, :], image[..., -rows:, :]


def _held_out_patches(bands: Sequence[np.ndarray], side: int, limit: int = 48) -> torch.Tensor:
    """Square patches tiled along the held-out bands (every plane), at most `limit`, spread."""
    tiles = []
    for band in bands:
        planes = band.reshape(-1, *band.shape[-2:])
        for plane in planes:
            for x in range(0, plane.shape[-1] - side + 1, side):
                tiles.append(plane[:side, x : x + side])
    chosen = np.linspace(0, len(tiles) - 1, min(limit, len(tiles))).round().astype(int)
    stack = np.stack([tiles[i] for i in np.unique(chosen)]).astype(np.float32)
    return torch.from_numpy(stack)[:, None]


def _measure_correlation(images: Sequence[np.ndarray]) -> np.ndarray:
    """Mean noise correlation at lags 1-3 over the images; zeros where too small to tell."""
    found = []
    for image in images:
        for patch in (24, 16):  # smaller patches only where the image is too small
            try:
                found.append(estimate_correlation(image, patch=patch))
                break
            except ValueError:  # too small to measure: assume white noise
                continue
    return np.mean(found, axis=0) if found else np.zeros(3)


def _keep_start(
    out: Path,
    weights: Path,
    card: dict[str, Any],
    init: str,
    sources: Sequence[str],
    correlation: np.ndarray,
    radius: int,
    began: float,
) -> Adaptation:
    """Write the starting model unchanged, with a card that says why (correlated noise)."""
    result = Adaptation(
        folder=out, adapted=False, start_loss=math.nan, best_loss=math.nan, best_step=0,
        steps_run=0, correlation=tuple(float(c) for c in correlation), mask_radius=radius,
        seconds=time.perf_counter() - began, kept_because=KEPT_CORRELATED,
    )  # fmt: skip
    kept = {k: v for k, v in card.items() if k != "name"}
    kept["adaptation"] = {
        "result": KEPT_CORRELATED,
        "from_model": init,
        "from_weights": str(weights),
        "images": list(sources),
        "noise_correlation_lags_1_3": list(result.correlation),
        "mask_radius": radius,
    }
    _write_model(out, weights, kept)
    return result


def _write_model(out: Path, weights: Path, card: dict[str, Any]) -> None:
    """The model folder `denoise` loads: a copy of `weights` and `card`, each written whole."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS_FILE, lambda t: shutil.copyfile(weights, t))
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(out / CARD_FILE, lambda t: Path(t).write_text(text))


def adapt(
    images: Sequence[np.ndarray],
    output_dir: str | Path,
    *,
    init: str = DEFAULT_MODEL,
    settings: AdaptSettings | None = None,
    sources: Sequence[str] = (),
    overwrite: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    on_check: Callable[[HeldOutCheck], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Adaptation:
    """Fine-tune model `init` on noisy `images` (2-D, or stacks of 2-D planes) and write
    the result, or the unchanged starting model if adapting did not help, to `output_dir`.

    Images may be in any units (each is scaled by its own percentiles). `sources` names
    where they came from, for the card. Raises FileExistsError if `output_dir` already
    holds a model, unless `overwrite`; AdaptationCancelled once `cancel()` is true (checked
    after every step and held-out check), with nothing written.
    """
    settings = settings or AdaptSettings()
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; give a folder for the adapted model")
    if not overwrite and any((out / f).exists() for f in (CARD_FILE, WEIGHTS_FILE)):
        raise FileExistsError(f"{out} already holds a model; choose another folder or overwrite")
    if not images:
        raise ValueError("adapt needs at least one noisy image")
    if get_model(init).routed:  # "auto": start from the model the first image's noise picks
        planes = np.asarray(images[0]).reshape(-1, *np.shape(images[0])[-2:])
        plane = planes[len(planes) // 2]
        init = choose_model(plane[routing_sample("YX", plane.shape)]).model
    weights, card = start_model(init)
    began = time.perf_counter()
    units = [normalize_intensity(np.asarray(i), "percentile", clip=False) for i in images]
    for k, image in enumerate(units):
        if image.ndim < 2 or min(image.shape[-2:]) < 32:
            name = sources[k] if k < len(sources) else f"image {k}"
            raise ValueError(f"{name}: shape {image.shape} is too small to adapt on (need 32 px)")
    side = min(settings.held_out_rows, *(min(i.shape[-2] // 4, i.shape[-1]) for i in units))
    side = max(side, 8)
    parts = [_split(image, side) for image in units]
    correlation = _measure_correlation([train_part for train_part, _ in parts])
    radius = settings.mask_radius
    if radius is None:
        radius = mask_radius(correlation, settings.correlation_threshold)
    if radius > 0 and not settings.allow_correlated:
        return _keep_start(out, weights, card, init, sources, correlation, radius, began)
    fraction = settings.mask_fraction or min(0.01, 0.05 / (2 * radius + 1) ** 2)
    patch = min(settings.patch_size, *(min(p.shape[-2:]) for p, _ in parts))

    check_radius = max(radius, settings.held_out_radius)
    held_out = _held_out_patches([band for _, band in parts], side)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    draws = [
        blind_spot_mask(held_out, fraction, 3, gen, radius=check_radius, replacement="median")
        for _ in range(settings.held_out_masks)
    ]
    unmasked = held_out.repeat(settings.held_out_masks, 1, 1, 1)
    masked = torch.cat([m for m, _ in draws])
    indices = torch.cat([i for _, i in draws])

    checks = CheckReporter(card, on_check, cancel)
    errors = functools.partial(masked_errors, clean_inputs=unmasked, masked_inputs=masked,
                               indices=indices)  # fmt: skip
    measure = SignificantLoss(errors, settings.min_z)

    def step_done(report: TrainProgress) -> None:
        checks.after_step(report.step)
        if progress is not None:
            progress(report)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".adapt-", dir=out.parent) as tmp:
        config = TrainConfig(
            output_dir=tmp,
            backbone=card["backbone"],
            wne=card["wne"],
            wne_eps=card.get("wne_eps", 0.0),
            backbone_kwargs=card.get("backbone_kwargs", {}),
            mode="n2v",
            patch_size=patch,
            batch_size=settings.batch_size,
            steps=settings.steps,
            lr=settings.lr,
            lr_min=settings.lr,
            schedule="constant",
            seed=settings.seed,
            noise=NoiseConfig(),
            mask_fraction=fraction,
            mask_window=3,
            mask_radius=radius,
            mask_replacement="median",
            patience=settings.patience,
            checkpoint_every=settings.steps,
            validate_every=settings.check_every,
            threads=settings.threads,
            device=settings.device,
            init_weights=str(weights),
            data=tuple(sources),
        )
        train(
            config,
            noisy_images=[p for p, _ in parts],
            progress=step_done,
            held_out=lambda model: checks.measured(model, measure(model)),
        )
        trained = json.loads((Path(tmp) / CARD_FILE).read_text())
        record = trained["held_out_loss"]
        adapted = record["step"] > 0
        result = Adaptation(
            folder=out,
            adapted=adapted,
            start_loss=record["start"],
            best_loss=record["loss"],
            best_step=record["step"],
            steps_run=record["history"][-1][0],
            correlation=tuple(float(c) for c in correlation),
            mask_radius=radius,
            seconds=time.perf_counter() - began,
        )
        trained["adaptation"] = {
            "result": "adapted" if adapted else KEPT_ORIGINAL,
            "from_model": init,
            "from_weights": str(weights),
            "images": list(sources) or [f"{len(images)} array(s)"],
            "held_out": f"the last {side} rows of every image plane, {len(held_out)} patches, "
            f"{settings.held_out_masks} fixed masks each",
            "held_out_loss_before": result.start_loss,
            "held_out_loss_after": result.best_loss,
            "held_out_radius": check_radius,
            "held_out_history": record["history"],
            "held_out_z": measure.z,
            "noise_correlation_lags_1_3": list(result.correlation),
            "settings": asdict(settings),
            "seconds": round(result.seconds, 1),
        }
        trained.pop("held_out_loss")
        _write_model(out, Path(tmp) / WEIGHTS_FILE, trained)
    return result
