"""Recorrupted-to-recorrupted fine-tuning on one noisy image: adaptation without a blind spot.

`napari-wne adapt` (Noise2Void-style) cannot adapt on correlated noise: a blind spot as
wide as the correlation hides what the model needs, and adapting `unet-wne-corr` so lost
up to 3 dB (docs/results.md). Recorrupted-to-recorrupted training (R2R, Pang et al.,
CVPR 2021) needs no blind spot: from the noisy image y and fresh noise z of the same
covariance as y's, the network learns to map y + alpha z to y - z / alpha. The two noises
are uncorrelated, so the expected loss is the loss against the clean image plus a
constant, whatever the noise's spatial correlation; the price is that the noise's
covariance (level against signal, and spectrum) must be known.

This experiment asks how much R2R gains on the correlated-noise benchmark, and how much
of that survives when the noise is estimated from the noisy image instead of taken from
the clean one:

- *noise from the clean image*: gain and read noise from `variance_vs_mean` against the
  clean reference, lag-1 correlation of the true noise (an oracle, an upper bound);
- *noise estimated*: gain and read noise from 16-px patches where the starting model's
  result is flattest, lag-1 correlation from `estimate_correlation` (what a user has);
- *camera known* (`--noise camera`): the variance-vs-mean line measured against the clean
  image, as a photon-transfer curve from flat fields would give it, read at the starting
  model's result; lag-1 correlation from `estimate_correlation` (what a user who has
  calibrated the camera has).

Each draws z as white noise through a Gaussian kernel of that lag-1 correlation, scaled
pixel by pixel by the noise's standard deviation at the expected intensity. It is not a
feature: the estimated noise can cost dB, and even a known camera let one image lose
0.1-0.2 dB for a mean gain of about 0.3 (docs/results.md).

    python benchmarks/quality_recorrupted.py                  # writes docs/results.md
    python benchmarks/quality_recorrupted.py --images 2 --levels mid --no-write
    python benchmarks/quality_recorrupted.py --quick              # smoke run, no docs
    python benchmarks/quality_recorrupted.py --noise camera --alpha 1 --lr 5e-5 \
        --steps 600 --levels low --no-write     # the twenty-fifth session's setting
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from datetime import date

import numpy as np
import torch

from _data import correlated_benchmark
from _report import RESULTS, machine, write_section
from napari_wne.metrics import fitted_psnr
from napari_wne.models import load_model
from napari_wne.noise_stats import autocorrelation, estimate_correlation, variance_vs_mean
from quality_adaptation import spread

FLAT_PATCH = 16
FLAT_SHARE = 0.3
"""Share of the patches of each intensity bin, the flattest in the model's result, whose
noisy variance is measured."""


@dataclass(frozen=True)
class Noise:
    """What R2R must know of the noise: its level per pixel and its spectrum."""

    std: np.ndarray
    """Standard deviation at each pixel (from the expected intensity)."""
    lag1: float
    """Lag-1 correlation; the spectrum is that of a Gaussian kernel with this correlation."""

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        white = rng.standard_normal(self.std.shape)
        if self.lag1 <= 0.01:
            return white * self.std
        sigma = math.sqrt(-1.0 / (4.0 * math.log(min(self.lag1, 0.95))))
        fy = np.fft.fftfreq(self.std.shape[0])[:, None]
        fx = np.fft.rfftfreq(self.std.shape[1])[None, :]
        response = np.exp(-2 * math.pi**2 * sigma**2 * (fy**2 + fx**2))
        shaped = np.fft.irfft2(np.fft.rfft2(white) * response, s=self.std.shape)
        return shaped / shaped.std() * self.std


def noise_from_reference(noisy: np.ndarray, clean: np.ndarray) -> Noise:
    """The oracle: the noise measured against the clean image."""
    gain, read, noise = variance_vs_mean(noisy, clean)
    expected = noisy - noise
    lag1 = float(autocorrelation(noise)[:, 0].mean())
    return Noise(np.sqrt(np.clip(gain * expected + read, 0, None)), lag1)


def _tiles(image: np.ndarray) -> np.ndarray:
    p = FLAT_PATCH
    ny, nx = image.shape[0] // p, image.shape[1] // p
    return image[: ny * p, : nx * p].reshape(ny, p, nx, p).swapaxes(1, 2).reshape(-1, p, p)


def _detrended_variance(tiles: np.ndarray) -> np.ndarray:
    """Variance of each tile about its best-fitting plane, corrected for the plane's 3 terms."""
    p = tiles.shape[-1]
    yy, xx = np.mgrid[:p, :p]
    design = np.stack([np.ones(p * p), yy.ravel(), xx.ravel()], axis=1)
    flat = tiles.reshape(len(tiles), -1).T
    coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return ((flat - design @ coef) ** 2).sum(axis=0) / (p * p - 3)


def noise_estimated(noisy: np.ndarray, start: np.ndarray) -> Noise:
    """The noise from the noisy image and the starting model's result alone.

    Patches where the result is flattest hold little signal, so the noisy image's variance
    there is mostly noise; its median per intensity bin, against the bin's mean intensity,
    gives gain and read noise. Choosing patches by the result, not by the noisy variance
    itself, keeps the choice from favouring patches whose noise happens to be low.
    """
    ty, tx = _tiles(noisy), _tiles(start)
    structure = _detrended_variance(tx)
    level = tx.mean(axis=(1, 2))
    variance = _detrended_variance(ty)
    means, variances = [], []
    for group in np.array_split(np.argsort(level), 8):
        chosen = group[np.argsort(structure[group])[: max(3, int(FLAT_SHARE * len(group)))]]
        means.append(level[chosen].mean())
        variances.append(np.median(variance[chosen]))
    gain, read = np.polyfit(means, variances, 1)
    lag1 = float(estimate_correlation(noisy)[0])
    return Noise(np.sqrt(np.clip(gain * start + read, 0, None)), max(lag1, 0.0))


def noise_camera_known(noisy: np.ndarray, clean: np.ndarray, start: np.ndarray) -> Noise:
    """The camera's line known (a flat-field calibration), the correlation estimated."""
    gain, read, _ = variance_vs_mean(noisy, clean)
    lag1 = float(estimate_correlation(noisy)[0])
    return Noise(np.sqrt(np.clip(gain * start + read, 0, None)), max(lag1, 0.0))


GUESSES = {
    "estimated": ("noise estimated", "estimated from the noisy one",
                  lambda y, c, first: noise_estimated(y, first)),
    "camera": ("camera known", "from the camera's line and the noisy image",
               noise_camera_known),
}  # fmt: skip
"""--noise -> (column title, how the docs say it, maker from the noisy image, the clean
image and the start's result). The oracle, from the clean image, always runs beside it."""


def denoised(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(image[None, None].astype(np.float32))
        return model(x)[0, 0].numpy().astype(np.float64)


def recorrupted_fine_tune(
    start: torch.nn.Module, noisy: np.ndarray, noise: Noise, args: argparse.Namespace
) -> torch.nn.Module:
    """`args.steps` Adam steps of R2R on random patches of one image (quarter turns too)."""
    model = copy.deepcopy(start).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    side = min(args.patch, *noisy.shape)
    for _ in range(args.steps):
        z = noise.draw(rng)
        inputs, targets = noisy + args.alpha * z, noisy - z / args.alpha
        batch = []
        for _ in range(args.batch):
            y0 = int(rng.integers(noisy.shape[0] - side + 1))
            x0 = int(rng.integers(noisy.shape[1] - side + 1))
            turns = int(rng.integers(4))
            crop = (slice(y0, y0 + side), slice(x0, x0 + side))
            batch.append([np.rot90(a[crop], turns) for a in (inputs, targets)])
        pair = torch.from_numpy(np.asarray(batch, dtype=np.float32))
        loss = torch.mean((model(pair[:, :1]) - pair[:, 1:]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet-wne-corr")
    parser.add_argument("--levels", nargs="+", default=["low", "mid"])
    parser.add_argument("--images", type=int, default=4, help="images per level, spread")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", choices=sorted(GUESSES), default="estimated",
                        help="the noise R2R is given, beside the oracle's")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 image, 3 steps, no docs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.images, args.levels, args.steps, args.no_write = 1, ["mid"], 3, True
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    start = load_model(args.model, 2, "cpu").eval()
    title, said, make_guess = GUESSES[args.noise]
    rows = [
        f"| level | image | noisy | start | R2R, noise from the clean image | R2R, {title} "
        f"| {title}: variance against true, lag-1 | s per fine-tune |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    found: dict[str, list[tuple[float, float, float]]] = {}
    for level in args.levels:
        cases = [(n, y, c) for lv, n, y, c in correlated_benchmark() if lv == level]
        for name, noisy, clean in spread(cases, args.images):
            y = noisy.astype(np.float64)
            first = denoised(start, y)
            oracle, guess = noise_from_reference(y, clean), make_guess(y, clean, first)
            scores, seconds = [], []
            for noise in (oracle, guess):
                t = time.perf_counter()
                tuned = recorrupted_fine_tune(start, y, noise, args)
                seconds.append(time.perf_counter() - t)
                scores.append(fitted_psnr(denoised(tuned, y), clean))
            base = fitted_psnr(first, clean)
            found.setdefault(level, []).append((base, *scores))
            ratio = float(np.median(guess.std**2 / np.maximum(oracle.std**2, 1e-12)))
            rows.append(
                f"| {level} | {name} | {fitted_psnr(y, clean):.2f} | {base:.2f} | "
                f"{scores[0]:.2f} ({scores[0] - base:+.2f}) | {scores[1]:.2f} "
                f"({scores[1] - base:+.2f}) | variance x{ratio:.2f}, lag-1 {guess.lag1:.2f} "
                f"against {oracle.lag1:.2f} | {statistics.fmean(seconds):.0f} |"
            )
            print(rows[-1], flush=True)
    for level, results in found.items():
        mean = [statistics.fmean(r[k] for r in results) for k in range(3)]
        rows.append(
            f"| {level}, mean | {len(results)} images | | {mean[0]:.2f} | {mean[1]:.2f} "
            f"({mean[1] - mean[0]:+.2f}) | {mean[2]:.2f} ({mean[2] - mean[0]:+.2f}) | | |"
        )
        print(rows[-1], flush=True)
    if args.no_write:
        return
    write_section(
        "quality_recorrupted",
        [
            "## Adapting without a blind spot: recorrupted-to-recorrupted (an experiment)",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_recorrupted.py"
            f" --images {args.images} --levels {' '.join(args.levels)}"
            f"{'' if args.noise == 'estimated' else ' --noise ' + args.noise}` "
            f"({machine(torch.device('cpu'))}; {time.perf_counter() - began:.0f} s). "
            f"`{args.model}` fine-tuned on each noisy image of the correlated-noise benchmark "
            f"alone, {args.steps} steps of {args.batch} patches of {args.patch} px at lr "
            f"{args.lr:g}, alpha {args.alpha:g}: the input y + alpha z, the target "
            "y - z / alpha, z fresh noise of the noise's level and spectrum, taken from the "
            f"clean image (an oracle) or {said} (the script's "
            "docstring). PSNR in dB after the gain fit; the start is the model unchanged.",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
