"""Self-supervised adaptation (`napari-wne adapt`) on real data: does it help, can it hurt?

Each noisy image is adapted on itself alone, with `napari_wne.adaptation.adapt` at its
default settings (no clean image is used), and the result is scored against its clean
reference next to the model it started from. Sets: the W2S widefield and FMD confocal
real pairs, and the correlated-noise benchmark (real clean structure, Poisson-Gaussian
noise smoothed to a lag-1 correlation of 0.67; `benchmarks/_data.py`) at one level.
Targets (issue 10): never more than 0.05 dB below the start on a real set; at least +1 dB
on the correlated-noise benchmark.

    python benchmarks/quality_adaptation.py                      # writes docs/results.md
    python benchmarks/quality_adaptation.py --images 3 --no-write
    python benchmarks/quality_adaptation.py --quick               # smoke run, no docs
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

from _data import VALIDATION_PAIR, correlated_benchmark, microscopy_pairs
from _report import RESULTS, machine, write_section
from napari_wne import DEFAULT_MODEL, denoise
from napari_wne.adaptation import AdaptSettings, adapt
from napari_wne.metrics import scores


def spread(items: list, count: int | None) -> list:
    """`count` items evenly spread over the list (all if None)."""
    if count is None or count >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def image_sets(
    level: str, count: int | None
) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Set name -> (image name, noisy, clean) for the real pairs and one correlated level."""
    sets: dict[str, list] = {}
    for name, noisy, clean in microscopy_pairs():
        if name != VALIDATION_PAIR:
            group = "W2S widefield" if name.startswith("w2s") else "FMD confocal"
            sets.setdefault(group, []).append((name, noisy, clean))
    correlated = [
        (n, noisy, clean) for lv, n, noisy, clean in correlated_benchmark() if lv == level
    ]
    sets[f"correlated-noise benchmark ({level})"] = correlated
    return {group: spread(items, count) for group, items in sets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", default=DEFAULT_MODEL, help="the model adapted from")
    parser.add_argument("--images", type=int, help="images per set, spread (default: all)")
    parser.add_argument("--level", default="mid", help="correlated-noise level")
    parser.add_argument("--steps", type=int, help="at most (default: adapt's)")
    parser.add_argument("--lr", type=float, help="learning rate (default: adapt's)")
    parser.add_argument("--mask-radius", type=int, help="default: from the measured correlation")
    parser.add_argument(
        "--allow-correlated", action="store_true", help="adapt on correlated noise too"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="1 image per set, 4 steps, no docs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    settings = AdaptSettings(
        threads=args.threads, device="cpu", allow_correlated=args.allow_correlated
    )
    for name in ("steps", "lr", "mask_radius"):
        if getattr(args, name) is not None:
            settings = replace(settings, **{name: getattr(args, name)})
    if args.quick:
        args.images = 1
        settings = replace(settings, steps=4, check_every=2)
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print("| set | image | start PSNR | adapted PSNR | change | result | radius | steps | time |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    summary = [
        f"| images | `{args.init}` PSNR | after `adapt` | mean change | worst change | "
        "adapted / kept | mean time |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, items in image_sets(args.level, args.images).items():
        found = []
        for name, noisy, clean in items:
            image = noisy.astype(np.float32)
            before = scores(denoise(image, args.init, verbose=False), clean)[0]
            with tempfile.TemporaryDirectory() as tmp:
                result = adapt([image], Path(tmp) / "model", init=args.init, settings=settings)
                after = scores(denoise(image, str(result.folder), verbose=False), clean)[0]
            found.append((before, after, result))
            print(
                f"| {group} | {name} | {before:.2f} | {after:.2f} | {after - before:+.2f} | "
                f"{'adapted' if result.adapted else 'kept'} | {result.mask_radius} | "
                f"{result.steps_run} | {result.seconds / 60:.1f} min |",
                flush=True,
            )
        changes = [a - b for b, a, _ in found]
        adapted = sum(r.adapted for _, _, r in found)
        summary.append(
            f"| {group} ({len(found)}) | {statistics.fmean(b for b, _, _ in found):.2f} | "
            f"{statistics.fmean(a for _, a, _ in found):.2f} | {statistics.fmean(changes):+.2f} | "
            f"{min(changes):+.2f} | {adapted} / {len(found) - adapted} | "
            f"{statistics.fmean(r.seconds for _, _, r in found) / 60:.1f} min |"
        )
    print()
    print("\n".join(summary), flush=True)
    if args.no_write or args.quick:
        return
    write_section(
        "quality_adaptation",
        [
            "## Self-supervised adaptation to the user's own images",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/quality_adaptation.py"
            f"{f' --images {args.images}' if args.images else ''}"
            f"{' --allow-correlated' if args.allow_correlated else ''}` "
            f"({machine(torch.device('cpu'))}; "
            f"{time.perf_counter() - start:.0f} s). Each noisy image is adapted on itself "
            f"alone (`napari-wne adapt IMAGE OUT --init {args.init}` at its defaults: at most "
            f"{settings.steps} steps at lr {settings.lr:g}, a held-out band of "
            f"{settings.held_out_rows} rows, early stopping), then scored against its clean "
            "reference. 'Kept' means the starting model was written unchanged: its held-out "
            f"loss (hiding at least a {2 * settings.held_out_radius + 1}x"
            f"{2 * settings.held_out_radius + 1} neighbourhood) did not fall by "
            f"{settings.min_z:g} standard errors or more, or the noise "
            "was measured to be correlated (mask radius above 0), where `adapt` does not "
            "train unless allowed to.",
            "",
            *summary,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
