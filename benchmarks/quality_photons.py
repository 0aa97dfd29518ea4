"""Does a model keep the detail when there is little noise? A sweep over photon counts.

A denoiser that smooths hard scores well on noisy benchmarks and spoils good data: at high
photon counts the right answer is close to the input. This puts the clean images of the
scored real pairs (10 W2S averages, 2 FMD averages; `benchmarks/_data.py`) under the
correlated-noise benchmark's camera, white and correlated, at 20 to 3,000 photons at their
99.9th percentile, and scores each model against the noisy input (mean PSNR after the gain
fit of `napari_wne.metrics`).

The clean references are averages of 400 (W2S) or 50 (FMD) captures and keep a little
noise of their own, which a perfect denoiser removes too and is scored for. The row
"perfect denoiser" bounds what it would score: the reference against itself without that
noise, whose level skimage's `estimate_sigma` reads off the reference (an overestimate
where fine detail leaks into it, so the true ceiling is at least this high).

The rows "`auto`, strength 0.7" run the first model again with 30 % of the input given
back (`napari_wne.strength`): what a user who sees detail lost in the preview can do, and
what it costs where the noise is strong.

    python benchmarks/quality_photons.py               # about 8 minutes; docs/results.md
    python benchmarks/quality_photons.py --sets fmd --no-write
    python benchmarks/quality_photons.py --quick   # one image, two counts; writes nothing
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from datetime import date

import numpy as np
import torch

from _baselines import perfect_denoiser
from _data import clean_references, correlated_camera, under_camera, white_camera
from _report import RESULTS, machine, markdown_table, publish
from napari_wne import denoise
from napari_wne.metrics import scores

PHOTONS = (20.0, 100.0, 300.0, 1000.0, 3000.0)
NOISE = {"white": white_camera, "correlated": correlated_camera}
SEED = 5
PERFECT = "perfect denoiser (at least; estimated)"
STRENGTHS = (0.7,)
"""`auto` again at these strengths (`napari_wne.strength`): part of the input given back."""


def sweep(
    models: list[str],
    sets: str,
    photon_counts: tuple[float, ...],
    images: int | None,
    strengths: tuple[float, ...] = STRENGTHS,
) -> dict[tuple[str, str, float], list[float]]:
    """PSNR per (noise, method, photons), one value per image."""
    found: dict[tuple[str, str, float], list[float]] = {}
    chosen = [(n, c) for n, c in clean_references() if sets == "all" or n.startswith(sets)]
    for name, clean in chosen[:images]:
        for kind, camera in NOISE.items():
            for photons in photon_counts:
                noisy, target = under_camera(clean, camera(photons), SEED)
                row = {
                    "noisy input": scores(noisy.astype(np.float64), target)[0],
                    PERFECT: perfect_denoiser(target),
                }
                for model in models:
                    out = denoise(noisy, model, precision="float32", verbose=False)
                    row[f"`{model}`"] = scores(out, target)[0]
                for strength in strengths:
                    out = denoise(
                        noisy, models[0], precision="float32", strength=strength, verbose=False
                    )
                    row[f"`{models[0]}`, strength {strength:g}"] = scores(out, target)[0]
                for method, value in row.items():
                    found.setdefault((kind, method, photons), []).append(value)
            print(name, kind, flush=True)
    return found


def table(found: dict[tuple[str, str, float], list[float]], kind: str) -> list[str]:
    methods = list(dict.fromkeys(m for k, m, _ in found if k == kind))
    counts = list(dict.fromkeys(p for k, _, p in found if k == kind))
    images = len(found[(kind, methods[0], counts[0])])
    header = [f"{kind} noise ({images} images), photons", *(f"{p:,.0f}" for p in counts)]
    rows = [[m, *(f"{statistics.fmean(found[(kind, m, p)]):.2f}" for p in counts)] for m in methods]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["auto", "unet-wne", "unet-wne-corr"])
    parser.add_argument("--sets", default="all", help="all, or a name prefix: w2s, fmd")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="one image, two counts; no write")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    quick = args.quick
    counts = (PHOTONS[1], PHOTONS[-1]) if quick else PHOTONS
    found = sweep(
        args.models[:1] if quick else args.models, args.sets, counts, 1 if quick else None
    )
    lines = [
        "## Little noise: does the detail survive?",
        "",
        f"Measured {date.today().isoformat()} with `python benchmarks/quality_photons.py` "
        f"({machine(torch.device('cpu'))}). The clean images of the scored real pairs "
        "under the correlated-noise benchmark's camera, its noise white or smoothed "
        "(lag-1 0.68), at each photon count at the 99.9th percentile (seed "
        f"{SEED}); mean PSNR after the gain fit, float32. The references keep some noise "
        "of their own; the perfect-denoiser row is what a result free of all noise would "
        "score against them, with the reference's noise as skimage's `estimate_sigma` reads "
        "it (an overestimate, so a lower bound). The strength rows give part of the input "
        "back: strength * result + (1 - strength) * input (`napari_wne.strength`).",
        "",
    ]
    for kind in NOISE:
        lines += [*table(found, kind), ""]
    publish("quality_photons", lines[:-1], not (args.no_write or quick), RESULTS)


if __name__ == "__main__":
    main()
