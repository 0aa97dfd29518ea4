"""The correlated-noise benchmark: real structure, spatially correlated camera noise.

The clean image of every scored real pair (10 W2S averages, 2 FMD averages; W2S 010_0 is
kept for validation) gets Poisson-Gaussian noise smoothed by a Gaussian kernel of sigma
0.8 px (lag-1 correlation about 0.68, as on widefield data that was registered or
resampled), at three photon levels (`benchmarks/_data.py`, seeded). Scored like the real
pairs: the noisy input, a 1-px blur, the best-sigma blur oracle (the sigma picked per image
with the clean image's help), non-local means, BM3D blind and as an oracle told the
noise's spectrum (the `bm3d` package, when installed: `pip install ".[bench]"`;
`_baselines.py`), and every model named (default: every shipped model).

    python benchmarks/quality_correlated.py                     # writes docs/results.md
    python benchmarks/quality_correlated.py --models unet-wne runs/unet-wne-camera --no-write
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date

import numpy as np
import torch

from _baselines import bm3d_package, classical_methods, scored_methods
from _data import CORRELATED_LEVELS, correlated_benchmark, shipped_2d_models
from _report import RESULTS, machine, write_section
from napari_wne import denoise


def evaluate(
    models: list[str], quick: bool, bm3d_images: int, refresh: bool = False
) -> dict[str, dict[str, list]]:
    """(PSNR, SSIM, seconds) per method per level; BM3D on the first `bm3d_images` images
    (none in the quick run: tests/test_benchmarks.py checks the BM3D oracle by itself),
    its scores reused from `baseline_scores.json` when the images hash as before."""
    cases = correlated_benchmark()
    if quick:
        cases = [c for c in cases if c[1] == cases[0][1]]
    names = list(dict.fromkeys(c[1] for c in cases))
    suffix = f", first {bm3d_images} image(s) only" if bm3d_images < len(names) else ""
    here = machine(torch.device("cpu"))
    found: dict[str, dict[str, list]] = {}
    for level, name, noisy, clean in cases:
        use_bm3d = bm3d_package() is not None and names.index(name) < bm3d_images and not quick
        noisy64 = noisy.astype(np.float64)
        methods = classical_methods(
            noisy64, clean, suffix if use_bm3d else None,
            blur_oracle_label="Gaussian blur (best sigma, oracle)",
        )  # fmt: skip
        for model in models:
            methods[f"`{model}`"] = lambda m=model, y=noisy: denoise(y, m, verbose=False)
        for method, row in scored_methods(methods, noisy64, clean, here, refresh=refresh).items():
            found.setdefault(method, {}).setdefault(level, []).append(row)
        print(level, name, {m: round(v[level][-1][0], 2) for m, v in found.items()}, flush=True)
    return found


def table(found: dict[str, dict[str, list]]) -> list[str]:
    levels = [lv for lv in CORRELATED_LEVELS if lv in next(iter(found.values()))]
    count = len(found["noisy input"][levels[0]])
    rows = [
        "| method | "
        + " | ".join(
            f"{lv} ({CORRELATED_LEVELS[lv]:g} photons, {count}): PSNR / SSIM" for lv in levels
        )
        + " | s per image |",
        "|---|" + "---|" * (len(levels) + 1),
    ]
    for method, by_level in found.items():
        if any(lv not in by_level for lv in levels):
            continue
        cells = [
            f"{statistics.fmean(s[0] for s in by_level[lv]):.2f} / "
            f"{statistics.fmean(s[1] for s in by_level[lv]):.3f}"
            for lv in levels
        ]
        seconds = statistics.median(s[2] for lv in levels for s in by_level[lv])
        rows.append(f"| {method} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shipped = shipped_2d_models()
    parser.add_argument("--models", nargs="+", default=shipped, help="default: every shipped")
    parser.add_argument("--quick", action="store_true", help="one image only (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--bm3d-images", type=int, default=100, help="run BM3D (slow) on this many images"
    )
    parser.add_argument(
        "--refresh", action="store_true", help="recompute BM3D's stored scores (_cache.py)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    start = time.perf_counter()
    rows = table(evaluate(args.models, args.quick, args.bm3d_images, args.refresh))
    print("\n".join(rows))
    if args.no_write or args.quick:
        return
    write_section(
        "quality_correlated",
        [
            "## Correlated noise on real structure",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_correlated.py"
            f"{'' if args.models == shipped else ' --models ' + ' '.join(args.models)}"
            f"{f' --bm3d-images {args.bm3d_images}' if args.bm3d_images < 100 else ''}`"
            f" ({machine(torch.device('cpu'))}; {time.perf_counter() - start:.0f} s). The "
            "clean images of the 12 scored real pairs with Poisson-Gaussian noise smoothed "
            "to a lag-1 correlation of 0.68 (docs/noise.md), at three photon levels; means "
            "after the gain fit of `napari_wne.metrics`. The BM3D oracle is told the "
            "noise's spectrum (and its variance-vs-mean line) by the clean image, an upper "
            "bound like the blur oracle (`benchmarks/_baselines.py`). Seconds: the median "
            "per 512x512 image on this machine, beside other jobs; BM3D's scores and "
            "seconds are those stored in `benchmarks/baseline_scores.json` by the run that "
            "computed them, reused while the images hash the same (`--refresh` recomputes).",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
