"""Real microscopy: trained models against classical baselines, in PSNR and SSIM.

On the real noisy/clean pairs (W2S widefield single captures vs 400-frame averages, FMD
confocal raw vs averaged), it scores the noisy input, a Gaussian blur of 1 pixel and one
whose sigma is chosen per image with the clean image's help, refined to 0.01 px (an upper
bound for any Gaussian blur), scikit-image's non-local means (noise sigma estimated from
the image, the usual h = 0.8 sigma), BM3D blind and as an oracle (`_baselines.py`; with
the `bench` extra), every model named (default: every shipped model), and the default with
test-time augmentation, each with its seconds per image. Scores after the gain fit of
`napari_wne.metrics`; the W2S pair the models validated on is left out. It also draws
centre crops of each result (docs/images/microscopy_crops.png).

    python benchmarks/quality_microscopy.py                      # writes docs/results.md
    python benchmarks/quality_microscopy.py --models unet-wne runs/unet --no-write
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import torch

from _baselines import bm3d_package, classical_methods, scored_methods, unit
from _data import VALIDATION_PAIR, microscopy_pairs, shipped_2d_models
from _report import DOCS, RESULTS, machine, write_section
from napari_wne import DEFAULT_MODEL, denoise
from napari_wne.metrics import fit_to

CROP = 128
FIGURE = DOCS / "images" / "microscopy_crops.png"


def methods(
    noisy: np.ndarray, clean: np.ndarray, models: list[str], bm3d: bool
) -> dict[str, Callable[[], np.ndarray]]:
    """Each method's name and a call that returns its result (timed by the caller)."""
    image = noisy.astype(np.float32)
    found = classical_methods(noisy, clean, "" if bm3d else None)
    for model in models:
        found[f"`{model}`"] = lambda m=model: denoise(image, m, verbose=False)
    found[f"`{DEFAULT_MODEL}`, TTA"] = lambda: denoise(
        image, DEFAULT_MODEL, tta=True, verbose=False
    )
    return found


def evaluate(
    models: list[str],
    quick: bool,
    crops: dict[str, dict[str, np.ndarray]] | None = None,
    refresh: bool = False,
) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
    """(PSNR, SSIM, seconds) per method per dataset ("W2S" or each FMD image).

    BM3D runs when its package is installed, except in the quick run (tests/ checks it);
    its scores are reused from `baseline_scores.json` when the images hash as before.
    `crops`, when given, receives a centre crop of every method's result on the first
    image of each dataset, fitted to the clean image (for the figure).
    """
    pairs = [p for p in microscopy_pairs() if p[0] != VALIDATION_PAIR]
    pairs = pairs[:1] + pairs[-1:] if quick else pairs
    bm3d = bm3d_package() is not None and not quick
    here = machine(torch.device("cpu"))
    found: dict[str, dict[str, list]] = {}
    for name, noisy, clean in pairs:
        group = "W2S widefield" if name.startswith("w2s") else name
        shown = {} if crops is not None and group not in crops else None
        run = methods(noisy, clean, models, bm3d)
        for method, row in scored_methods(run, noisy, clean, here, shown, refresh).items():
            found.setdefault(method, {}).setdefault(group, []).append(row)
        if shown is not None:
            crops[group] = crop_all(shown, clean)
        print(name, {m: round(v[group][-1][0], 2) for m, v in found.items()}, flush=True)
    return found


def crop_all(results: dict[str, np.ndarray], clean: np.ndarray) -> dict[str, np.ndarray]:
    """A 128-px centre crop of each result after the gain fit, and of the clean image."""
    reference = unit(clean)
    y, x = (n // 2 - CROP // 2 for n in clean.shape)
    window = (slice(y, y + CROP), slice(x, x + CROP))
    shown = {method: fit_to(result, reference)[window] for method, result in results.items()}
    shown["clean (reference)"] = reference[window]
    return shown


def short_title(method: str) -> str:
    """A figure column's title: the method's name, its details wrapped under it."""
    name, _, details = method.replace("`", "").partition(" (")
    return "\n".join([name, *textwrap.wrap(f"({details}" if details else "", 26)])


def figure(crops: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """One row per dataset, one column per method, all on the clean image's scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(next(iter(crops.values())))
    fig, axes = plt.subplots(
        len(crops), len(methods), figsize=(1.9 * len(methods), 2.4 * len(crops)), squeeze=False
    )
    for row, (group, shown) in zip(axes, crops.items(), strict=True):
        for ax, method in zip(row, methods, strict=True):
            ax.imshow(shown[method], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(short_title(method), fontsize=7)
        row[0].set_ylabel(group, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(found: dict[str, dict[str, list[tuple[float, float, float]]]]) -> list[str]:
    """One row per method: PSNR / SSIM per set, and the median seconds per image."""
    groups = list(next(iter(found.values())))
    rows = [
        "| method | "
        + " | ".join(f"{g} ({len(found['noisy input'][g])}): PSNR / SSIM" for g in groups)
        + " | s per image |",
        "|---|" + "---|" * (len(groups) + 1),
    ]
    for method, by_group in found.items():
        cells = [
            f"{statistics.fmean(s[0] for s in by_group[g]):.2f} / "
            f"{statistics.fmean(s[1] for s in by_group[g]):.3f}"
            for g in groups
        ]
        seconds = statistics.median(s[2] for g in groups for s in by_group[g])
        rows.append(f"| {method} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shipped = shipped_2d_models()
    parser.add_argument("--models", nargs="+", default=shipped, help="default: every shipped")
    parser.add_argument("--quick", action="store_true", help="two images only (CI smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--refresh", action="store_true", help="recompute BM3D's stored scores (_cache.py)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    start = time.perf_counter()
    crops: dict[str, dict[str, np.ndarray]] = {}
    rows = table(evaluate(args.models, args.quick, crops, args.refresh))
    print("\n".join(rows))
    if args.no_write or args.quick:
        with tempfile.TemporaryDirectory() as scratch:
            figure(crops, Path(scratch) / "crops.png")  # drawn, so the quick run checks it
        return
    figure(crops, FIGURE)
    write_section(
        "quality_microscopy",
        [
            "## Real microscopy: models against classical baselines",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_microscopy.py"
            f"{'' if args.models == shipped else ' --models ' + ' '.join(args.models)}`"
            f" ({machine(torch.device('cpu'))}; {time.perf_counter() - start:.0f} s). Means "
            "over the images of each set, after the gain fit of `napari_wne.metrics`; the "
            "W2S pair the default model validated on (010_0) is left out. The blur's sigma "
            "is picked per image with the clean image's help, refined to 0.01 px (an upper "
            "bound for a Gaussian blur); "
            "the BM3D oracle is told the noise's variance-vs-mean line (stabilized by the "
            "generalized Anscombe transform) and its spectrum by the clean image, another "
            "upper bound (`benchmarks/_baselines.py`). TTA: the 8 flips and quarter turns, "
            "averaged. Seconds: the median per image on this machine, beside other jobs; "
            "BM3D's scores and seconds on all but the first image of each set (whose "
            "results the figure shows) are those stored in `benchmarks/baseline_scores.json`"
            " by the run that computed them, reused while the images hash the same "
            "(`--refresh` recomputes).",
            "",
            *rows,
            "",
            "Centre crops of the first image of each set, every result fitted to the clean "
            "image and shown on its scale:",
            "",
            "![Crops of each method's result](images/microscopy_crops.png)",
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
