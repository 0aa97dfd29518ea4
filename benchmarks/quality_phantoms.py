"""Sharp structure against an exact clean image: held-out fluorescence phantoms.

The photon sweep (`quality_photons.py`) scores against averaged captures, which keep noise
of their own: at 3,000 photons its power is up to about 60 % of the simulated noise's, so a result
that removes both is scored as if it had lost detail, and the sweep cannot tell the two
apart. Procedural phantoms (`napari_wne.phantoms`) have an exact clean image. Their PSF
blur reaches down to 0.5 px, finer than Nyquist sampling asks: the thin, sharp lines of a
field imaged at a large pixel size, where a denoiser that blurs shows it at once.

Two sets, both held out: 8 phantoms of every kind (`GENERIC_SEED`) and 8 of filaments alone
(`FILAMENT_SEED`), 256 x 256. Training draws its phantoms from seed 0
(`scripts/train_campaign.py`, `scripts/train_3d.py`), and the model selection of
docs/training.md from seeds 778 and 779. Each image goes under the correlated-noise
benchmark's camera (`benchmarks/_data.py`), white or correlated, at 20, 300 and 3,000
photons at its 99.9th percentile; mean PSNR after the gain fit, float32.

    python benchmarks/quality_phantoms.py            # about 4 minutes; docs/results.md
    python benchmarks/quality_phantoms.py --no-write --models unet-wne runs/my-model
    python benchmarks/quality_phantoms.py --quick    # one image per set, one count
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from datetime import date

import numpy as np
import torch

from _baselines import best_blur
from _data import correlated_camera, under_camera, white_camera
from _report import RESULTS, machine, markdown_table, publish
from napari_wne import denoise
from napari_wne.metrics import fitted_psnr
from napari_wne.phantoms import phantom_set

GENERIC_SEED = 515151
FILAMENT_SEED = 777
IMAGES = 8
SHAPE = (256, 256)
PHOTONS = (20.0, 300.0, 3000.0)
NOISE = {"white": white_camera, "correlated": correlated_camera}
NOISE_SEED = 7
BLUR = "best-sigma blur (oracle)"


def phantom_sets(images: int) -> dict[str, list[np.ndarray]]:
    """The two held-out sets, float64 in [0, 1]."""
    return {
        "every kind": phantom_set(images, SHAPE, seed=GENERIC_SEED),
        "filaments": phantom_set(images, SHAPE, seed=FILAMENT_SEED, kinds=["filaments"]),
    }


def measure(
    models: list[str], images: int, photon_counts: tuple[float, ...]
) -> dict[tuple[str, str, str, float], float]:
    """Mean PSNR per (noise, method, set, photons)."""
    found: dict[tuple[str, str, str, float], list[float]] = {}
    for set_name, cleans in phantom_sets(images).items():
        for kind, camera in NOISE.items():
            for photons in photon_counts:
                for clean in cleans:
                    noisy, target = under_camera(clean, camera(photons), NOISE_SEED)
                    row = {
                        "noisy input": fitted_psnr(noisy.astype(np.float64), target),
                        BLUR: fitted_psnr(best_blur(noisy.astype(np.float64), target), target),
                    }
                    for model in models:
                        out = denoise(noisy, model, precision="float32", verbose=False)
                        row[f"`{model}`"] = fitted_psnr(out, target)
                    for method, value in row.items():
                        found.setdefault((kind, method, set_name, photons), []).append(value)
            print(set_name, flush=True)
    return {key: statistics.fmean(values) for key, values in found.items()}


def table(found: dict[tuple[str, str, str, float], float], kind: str) -> list[str]:
    columns = list(dict.fromkeys((s, p) for k, _, s, p in found if k == kind))
    methods = list(dict.fromkeys(m for k, m, _, _ in found if k == kind))
    header = [f"{kind} noise: set, photons", *(f"{s}, {p:,.0f}" for s, p in columns)]
    rows = [[m, *(f"{found[(kind, m, s, p)]:.2f}" for s, p in columns)] for m in methods]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["auto", "unet-wne", "unet-wne-corr"])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="one image per set; no write")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    images, counts = (1, PHOTONS[-1:]) if args.quick else (IMAGES, PHOTONS)
    found = measure(args.models[:1] if args.quick else args.models, images, counts)
    lines = [
        "## Sharp structure: phantoms with an exact clean image",
        "",
        f"Measured {date.today().isoformat()} with `python benchmarks/quality_phantoms.py` "
        f"({machine(torch.device('cpu'))}). Held-out procedural phantoms ({IMAGES} of every "
        f"kind, {IMAGES} of filaments alone; never trained on) under the correlated-noise "
        "benchmark's camera, white or correlated, at each photon count at the 99.9th "
        "percentile; mean PSNR after the gain fit, float32. Unlike the references of the "
        "real pairs, the clean image has no noise of its own, so at high photon counts "
        "these tables see detail lost where the photon sweep above cannot.",
        "",
    ]
    for kind in NOISE:
        lines += [*table(found, kind), ""]
    publish("quality_phantoms", lines[:-1], not (args.no_write or args.quick), RESULTS)


if __name__ == "__main__":
    main()
