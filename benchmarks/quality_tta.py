"""Test-time augmentation: what averaging over the 8 flips and turns gains, and what it costs.

Scores a model with and without `tta=True` on the real pairs (W2S widefield, FMD confocal;
the validation pair left out) and on the correlated-noise benchmark's "mid" level, after
the gain fit of `napari_wne.metrics`, and times both on this machine.

    python benchmarks/quality_tta.py                     # unet-wne; writes docs/results.md
    python benchmarks/quality_tta.py --model dncnn-wne --quick --no-write
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date

import numpy as np
import torch

from _data import VALIDATION_PAIR, correlated_benchmark, microscopy_pairs
from _report import RESULTS, machine, write_section
from napari_wne import DEFAULT_MODEL, denoise
from napari_wne.metrics import scores


def cases(quick: bool) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(set, noisy, clean): the real pairs and the correlated benchmark's mid level."""
    found = [
        ("W2S widefield" if name.startswith("w2s") else "FMD confocal", noisy, clean)
        for name, noisy, clean in microscopy_pairs()
        if name != VALIDATION_PAIR
    ]
    found += [
        ("correlated (mid)", noisy, clean)
        for level, _, noisy, clean in correlated_benchmark()
        if level == "mid"
    ]
    if quick:
        groups = dict.fromkeys(group for group, _, _ in found)
        found = [next(c for c in found if c[0] == group) for group in groups]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--quick", action="store_true", help="one image per set")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    found: dict[tuple[str, bool], list[tuple[float, float, float]]] = {}
    for group, noisy, clean in cases(args.quick):
        for tta in (False, True):
            start = time.perf_counter()
            out = denoise(noisy.astype(np.float32), args.model, tta=tta, verbose=False)
            seconds = time.perf_counter() - start
            found.setdefault((group, tta), []).append((*scores(out, clean), seconds))
        print(group, [round(found[(group, t)][-1][0], 2) for t in (False, True)], flush=True)
    rows = [
        "| set | images | without TTA: PSNR / SSIM | with TTA: PSNR / SSIM | gain (dB) "
        "| time ratio |",
        "|---|---|---|---|---|---|",
    ]
    for group in dict.fromkeys(g for g, _ in found):
        plain, aug = found[(group, False)], found[(group, True)]
        mean = [statistics.fmean(s[k] for s in runs) for runs in (plain, aug) for k in (0, 1)]
        ratio = statistics.median(a[2] / p[2] for p, a in zip(plain, aug, strict=True))
        rows.append(
            f"| {group} | {len(plain)} | {mean[0]:.2f} / {mean[1]:.3f} | {mean[2]:.2f} / "
            f"{mean[3]:.3f} | {mean[2] - mean[0]:+.2f} | {ratio:.1f}x |"
        )
    print("\n".join(rows))
    if args.no_write or args.quick:
        return
    write_section(
        "quality_tta",
        [
            "## Test-time augmentation",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_tta.py"
            f"{'' if args.model == DEFAULT_MODEL else ' --model ' + args.model}` "
            f"({machine(torch.device('cpu'))}), model `{args.model}`: `tta=True` averages it "
            "over the 8 flips and quarter turns of each plane (exactly equivariant still). "
            "Time ratio: the median of with/without per image, on this shared machine.",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
