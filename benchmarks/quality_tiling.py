"""Which normalization should tiles use? PSNR, agreement and seams per mode, on real data.

On the real noisy/clean microscopy pairs (W2S widefield, FMD confocal; 512x512), each
image is denoised whole (one tile: one normalization per image) and tiled with 256- and
384-pixel tiles under each normalization mode. Reported, averaged over the images:

- PSNR and SSIM against the clean image (after the gain fit of `napari_wne.metrics`);
- agreement with whole-image inference: PSNR of the tiled result against the whole one;
- seam step: the mean absolute step of the result across the centre lines of the tile
  crossings, divided by the same step across all other lines (1.0: no visible seam).

    python benchmarks/quality_tiling.py              # default model; writes docs/results.md
    python benchmarks/quality_tiling.py --model runs/unet-wne --no-write
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date

import numpy as np
import torch

from _data import VALIDATION_PAIR, microscopy_pairs
from _report import RESULTS, machine, write_section
from napari_wne import DEFAULT_MODEL, denoise
from napari_wne.halo import default_halo
from napari_wne.metrics import psnr, scores
from napari_wne.tiling import TileGrid

MODES = [("whole image", None, "tile")] + [
    (f"{norm} normalization, {tile} px tiles", tile, norm)
    for tile in (384, 256)
    for norm in ("tile", "global")
]


def crossing_lines(
    shape: tuple[int, int], tile: int, halo: tuple[int, int], blend: int
) -> list[list[int]]:
    """Per axis, the positions where one tile hands over to the next (crossing centres)."""
    grid = TileGrid(shape, (tile, tile), halo, (blend, blend))
    return [[axis._crossing(i) + blend // 2 for i in range(axis.count - 1)] for axis in grid.axes]


def seam_step(result: np.ndarray, lines: list[list[int]]) -> float:
    """Mean |step| across crossing lines over mean |step| across all other lines."""
    ratios = []
    for axis, positions in enumerate(lines):
        if not positions:
            continue
        steps = np.abs(np.diff(result, axis=axis)).mean(axis=1 - axis)  # one per line
        at = np.zeros(steps.shape, dtype=bool)
        at[[p - 1 for p in positions]] = True  # step between p-1 and p
        ratios.append(steps[at].mean() / steps[~at].mean())
    return float(np.mean(ratios)) if ratios else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--quick", action="store_true", help="two images only (CI smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    pairs = [p for p in microscopy_pairs() if p[0] != VALIDATION_PAIR]
    pairs = pairs[:2] if args.quick else pairs
    start = time.perf_counter()
    table: dict[str, list[tuple[float, float, float, float]]] = {m[0]: [] for m in MODES}
    halo = default_halo(args.model, 2)  # what denoise uses by default: one per axis
    for name, noisy, clean in pairs:
        image = noisy.astype(np.float32)
        whole = denoise(image, args.model, tile=max(image.shape), verbose=False)
        for label, tile, norm in MODES:
            if tile is None:
                result, lines = whole, [[], []]
            else:
                result = denoise(image, args.model, tile=tile, norm=norm, verbose=False)
                lines = crossing_lines(image.shape, tile, halo, 16)
            value, ssim = scores(result, clean)
            agreement = psnr(result, whole) if tile is not None else float("inf")
            table[label].append((value, ssim, agreement, seam_step(result, lines)))
        print(f"{name}: " + ", ".join(f"{k}: {v[-1][0]:.2f} dB" for k, v in table.items()))
    rows = [
        "| mode | PSNR (dB) | SSIM | agreement with whole image (dB) | seam step |",
        "|---|---|---|---|---|",
    ]
    for label, values in table.items():
        mean = [statistics.fmean(v[i] for v in values) for i in range(4)]
        agreement = "—" if label == "whole image" else f"{mean[2]:.1f}"
        seam = "—" if label == "whole image" else f"{mean[3]:.3f}"
        rows.append(f"| {label} | {mean[0]:.2f} | {mean[1]:.4f} | {agreement} | {seam} |")
    print("\n".join(rows))
    if args.no_write or args.quick:
        return
    noisy_scores = [scores(n, c) for _, n, c in pairs]
    write_section(
        "quality_tiling",
        [
            "## Tiling and normalization modes",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_tiling.py` "
            f"(model {args.model}; {len(pairs)} real pairs: W2S widefield avg1 vs avg400 and "
            f"FMD confocal, 512x512, the W2S pair the model validated on left out; "
            f"{machine(torch.device('cpu'))}; {time.perf_counter() - start:.0f} s). "
            "Scores after the gain fit of `napari_wne.metrics`; the noisy inputs score "
            f"{statistics.fmean(s[0] for s in noisy_scores):.2f} dB / "
            f"{statistics.fmean(s[1] for s in noisy_scores):.4f}. Seam step: mean absolute "
            "step across tile-crossing centre lines over that across all other lines "
            "(1.0: no seam).",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
