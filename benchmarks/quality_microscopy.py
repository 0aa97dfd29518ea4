"""Real microscopy: trained models against classical baselines, in PSNR and SSIM.

On the real noisy/clean pairs (W2S widefield single captures vs 400-frame averages, FMD
confocal raw vs averaged), it scores the noisy input, a Gaussian blur of 1 pixel and one
whose sigma is chosen per image with the clean image's help (an upper bound for any
blur), scikit-image's non-local
means (noise sigma estimated from the image, the usual h = 0.8 sigma), and every model
named (default: the shipped default model). Scores after the gain fit of
`napari_wne.metrics`; the W2S pair the default model validated on is left out.

    python benchmarks/quality_microscopy.py                      # writes docs/results.md
    python benchmarks/quality_microscopy.py --models unet-wne runs/unet --no-write
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.restoration import denoise_nl_means, estimate_sigma

from _data import VALIDATION_PAIR, microscopy_pairs
from _report import RESULTS, machine, write_section
from napari_wne import DEFAULT_MODEL, denoise
from napari_wne.metrics import scores

BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def unit(image: np.ndarray) -> np.ndarray:
    """0.1..99.9 percentiles to 0..1: baselines with absolute parameters see one scale."""
    low, high = np.percentile(image, [0.1, 99.9])
    return (image - low) / ((high - low) or 1.0)


def best_blur(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    return max((gaussian_filter(noisy, s) for s in BLUR_SIGMAS), key=lambda b: scores(b, clean)[0])


def non_local_means(noisy: np.ndarray) -> np.ndarray:
    image = unit(noisy)
    sigma = float(estimate_sigma(image))
    return denoise_nl_means(
        image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True
    )


def evaluate(models: list[str], quick: bool) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Scores per method per dataset ("W2S" or each FMD image)."""
    pairs = [p for p in microscopy_pairs() if p[0] != VALIDATION_PAIR]
    pairs = pairs[:1] + pairs[-1:] if quick else pairs
    found: dict[str, dict[str, list]] = {}
    for name, noisy, clean in pairs:
        group = "W2S widefield" if name.startswith("w2s") else name
        results = {
            "noisy input": noisy,
            "Gaussian blur (sigma 1)": gaussian_filter(noisy, 1.0),
            "Gaussian blur (best sigma)": best_blur(noisy, clean),
            "non-local means (skimage)": non_local_means(noisy),
        }
        for model in models:
            results[f"`{model}`"] = denoise(noisy.astype(np.float32), model, verbose=False)
        for method, result in results.items():
            found.setdefault(method, {}).setdefault(group, []).append(scores(result, clean))
        print(name, {m: round(v[group][-1][0], 2) for m, v in found.items()}, flush=True)
    return found


def table(found: dict[str, dict[str, list[tuple[float, float]]]]) -> list[str]:
    groups = list(next(iter(found.values())))
    rows = [
        "| method | "
        + " | ".join(f"{g} ({len(found['noisy input'][g])}): PSNR / SSIM" for g in groups)
        + " |",
        "|---|" + "---|" * len(groups),
    ]
    for method, by_group in found.items():
        cells = [
            f"{statistics.fmean(s[0] for s in by_group[g]):.2f} / "
            f"{statistics.fmean(s[1] for s in by_group[g]):.3f}"
            for g in groups
        ]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--quick", action="store_true", help="two images only (CI smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    start = time.perf_counter()
    rows = table(evaluate(args.models, args.quick))
    print("\n".join(rows))
    if args.no_write or args.quick:
        return
    write_section(
        "quality_microscopy",
        [
            "## Real microscopy: models against classical baselines",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_microscopy.py"
            f"{'' if args.models == [DEFAULT_MODEL] else ' --models ' + ' '.join(args.models)}`"
            f" ({machine(torch.device('cpu'))}; {time.perf_counter() - start:.0f} s). Means "
            "over the images of each set, after the gain fit of `napari_wne.metrics`; the "
            "W2S pair the default model validated on (010_0) is left out. The blur's sigma "
            "is picked per image with the clean image's help (an upper bound for a blur).",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
