"""Where the correlated-noise model starts to win, and whether `model="auto"` finds it.

The clean images of the scored real pairs (`benchmarks/_data.py`) get Poisson-Gaussian noise
at the correlated benchmark's middle level, smoothed by a Gaussian of each sigma swept here
(none: white noise). For each sigma: the true lag-1 correlation, the PSNR of the white- and
correlated-noise models and of ``model="auto"``, and how often auto picked the correlated
model (`napari_wne.routing`). The real pairs (all near-white noise) are routed too.

    python benchmarks/quality_routing.py
    python benchmarks/quality_routing.py --correlated runs/unet-wne-corr --no-write
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings
from datetime import date

import numpy as np
import torch

from _data import (
    CORRELATED_LEVELS,
    VALIDATION_PAIR,
    clean_references,
    correlated_camera,
    microscopy_pairs,
    under_camera,
)
from _report import RESULTS, machine, write_section
from napari_wne import denoise
from napari_wne.metrics import scores
from napari_wne.noise_stats import autocorrelation
from napari_wne.routing import CORRELATED_NOISE_MODEL, WHITE_NOISE_MODEL, choose_model

SIGMAS = (None, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def noisy_copy(clean: np.ndarray, sigma: float | None, seed: int) -> tuple[np.ndarray, ...]:
    """(noisy, clean) in [0, 1] at the middle photon level, the noise smoothed by `sigma`."""
    camera = correlated_camera(CORRELATED_LEVELS["mid"])
    if sigma is None:
        camera = dataclasses.replace(camera, p_correlated=0.0)
    else:
        camera = dataclasses.replace(camera, kernel_sigma_range=(sigma, sigma))
    return under_camera(clean, camera, seed)


def lag1(noise: np.ndarray) -> float:
    """The noise's correlation with its neighbour along X."""
    return float(autocorrelation(noise, (1,))[-1, 0])


def sweep(white: str, correlated: str, images: int) -> list[str]:
    rows = [
        "| noise kernel sigma (px) | true lag-1 | auto picks correlated | "
        f"`{white}` | `{correlated}` | `auto` |",
        "|---|---|---|---|---|---|",
    ]
    references = clean_references()[:images]
    for sigma in SIGMAS:
        found: dict[str, list[float]] = {"white": [], "corr": [], "auto": [], "lag1": []}
        picked = 0
        for i, (_, clean) in enumerate(references):
            noisy, target = noisy_copy(clean, sigma, seed=100 + i)
            results = {
                "white": denoise(noisy, white, verbose=False),
                "corr": denoise(noisy, correlated, verbose=False),
            }
            choice = choose_model(noisy)
            chose_corr = choice.model == CORRELATED_NOISE_MODEL
            picked += chose_corr
            results["auto"] = results["corr" if chose_corr else "white"]
            for key, result in results.items():
                found[key].append(scores(result, target)[0])
            found["lag1"].append(lag1(noisy - target))
        mean = {k: statistics.fmean(v) for k, v in found.items()}
        rows.append(
            f"| {'none (white)' if sigma is None else sigma} | {mean['lag1']:.2f} | "
            f"{picked} of {len(references)} | {mean['white']:.2f} | {mean['corr']:.2f} | "
            f"{mean['auto']:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def real_pairs_routed() -> str:
    """How auto routes the real pairs (their noise is near-white: docs/noise.md)."""
    picks = [
        (name, choose_model(noisy.astype(np.float32)))
        for name, noisy, _ in microscopy_pairs()
        if name != VALIDATION_PAIR
    ]
    white = sum(c.model == WHITE_NOISE_MODEL for _, c in picks)
    worst = max(c.correlation[0] for _, c in picks)
    return (
        f"On the {len(picks)} scored real pairs auto picks `{WHITE_NOISE_MODEL}` {white} "
        f"times (highest measured lag-1 correlation {worst:.2f})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--white", default=WHITE_NOISE_MODEL)
    parser.add_argument("--correlated", default=CORRELATED_NOISE_MODEL)
    parser.add_argument("--images", type=int, default=11, help="clean references used")
    parser.add_argument("--quick", action="store_true", help="two images (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    start = time.perf_counter()
    rows = sweep(args.white, args.correlated, 2 if args.quick else args.images)
    routed = real_pairs_routed()
    print(routed)
    if args.no_write or args.quick:
        return
    write_section(
        "quality_routing",
        [
            '## Choosing the model by the noise (`model="auto"`)',
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_routing.py` "
            f"({machine(torch.device('cpu'))}; {time.perf_counter() - start:.0f} s). The "
            "clean references of the correlated-noise benchmark at its middle level "
            f"({CORRELATED_LEVELS['mid']:g} photons), the noise smoothed by a Gaussian of "
            "each sigma; PSNR means after the gain fit. `auto` measures one plane's noise "
            "autocorrelation and picks a model (`napari_wne.routing`).",
            "",
            *rows,
            "",
            routed,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
