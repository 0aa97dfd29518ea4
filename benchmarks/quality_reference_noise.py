"""How much of the 3-D nuclei result is the reference's own noise? The phantom test again,
with that noise put into the phantoms.

`quality_3d.py` scores against cells3d's `nuclei.tif`, a single confocal capture: the
reference keeps noise of its own, and the synthetic noise goes on top of it. A result
scored against such a reference is charged for removing the reference's noise, so a light
blur, which leaves most of it, gains on a denoiser, which removes it. How much? This
takes the three held-out 3-D phantoms of `quality_3d.py` (seed 2, known exactly), adds
white Gaussian noise of the level skimage's `estimate_sigma` reads off `nuclei.tif` (about
0.02 of its 0.1-99.9 percentile range), puts the same camera noise on top at the same
three levels, and scores every method twice: against the phantom as it is (the truth) and
against the noisy phantom (as `nuclei.tif` is scored). The blur oracle picks its sigma on
the reference it is scored against, so it is the best blur in each column.

    python benchmarks/quality_reference_noise.py             # ~5 min; docs/results.md
    python benchmarks/quality_reference_noise.py --no-write
    python benchmarks/quality_reference_noise.py --quick  # one small phantom, mid; no write
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from datetime import date

import numpy as np
import torch

from _baselines import best_blur, reference_sigma
from _data import white_camera
from _report import RESULTS, machine, write_section
from napari_wne import denoise
from napari_wne.camera import simulate_camera
from napari_wne.metrics import scores
from quality_3d import BLUR_SIGMAS, LEVELS, METHODS, held_out_phantoms, nuclei_volume

REFERENCES = ("truth", "noisy reference")
INPUT, BLUR, PERFECT = "noisy input", "3-D blur oracle", "perfect denoiser"
SEED = 7


def with_reference_noise(phantom: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """`phantom` plus white noise of `sigma` times its 0.1-99.9 percentile range."""
    low, high = np.percentile(phantom, [0.1, 99.9])
    noise = np.random.default_rng(seed).normal(0.0, sigma * (high - low), phantom.shape)
    return (phantom + noise).astype(np.float32)


def score_case(noisy: np.ndarray, truth: np.ndarray, reference: np.ndarray) -> dict:
    """{(method, reference name): PSNR} for one noisy volume."""
    outputs = {
        label: denoise(noisy, model, axes="ZYX", instances=instances, tta=tta, verbose=False)
        for label, (model, instances, tta) in METHODS.items()
    }
    row = {(PERFECT, REFERENCES[1]): scores(truth, reference)[0]}
    for name, target in zip(REFERENCES, (truth, reference), strict=True):
        row[(INPUT, name)] = scores(noisy, target)[0]
        row[(BLUR, name)] = scores(best_blur(noisy, target, BLUR_SIGMAS), target)[0]
        for label, out in outputs.items():
            row[(label, name)] = scores(out, target)[0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="one small phantom, mid level")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    sigma = reference_sigma(nuclei_volume())
    phantoms = held_out_phantoms(1, (16, 64, 64)) if args.quick else held_out_phantoms()
    levels = {"mid": LEVELS["mid"]} if args.quick else LEVELS
    table: dict[tuple[str, str, str], list[float]] = {}
    for i, phantom in enumerate(phantoms):
        noisy_phantom = with_reference_noise(phantom, sigma, SEED + i)
        for j, (level, photons) in enumerate(levels.items()):
            gen = torch.Generator().manual_seed(100 * (i + 1) + j)  # as in quality_3d
            x = torch.from_numpy(noisy_phantom)[None, None]
            captured = simulate_camera(x, white_camera(photons), gen)
            noisy, reference = (t[0, 0].numpy() for t in captured)
            row = score_case(noisy, phantom, reference)
            for (label, name), value in row.items():
                table.setdefault((label, level, name), []).append(value)
            print(i, level, {f"{k[0][:12]}/{k[1][:5]}": round(v, 2) for k, v in row.items()})
    columns = [(level, name) for level in levels for name in REFERENCES]
    header = " | ".join(f"{level}, against the {name}" for level, name in columns)
    rows = [f"| method | {header} |", "|---|" + "---|" * len(columns)]
    for label in (INPUT, PERFECT, BLUR, *METHODS):
        cells = " | ".join(
            f"{statistics.fmean(table[(label, lv, n)]):.2f}" if (label, lv, n) in table else ""
            for lv, n in columns
        )
        rows.append(f"| {label} | {cells} |")
    print(f"reference noise sigma {sigma:.4f}")
    print("\n".join(rows))
    if args.no_write or args.quick:
        return
    write_section(
        "quality_reference_noise",
        [
            "## 3-D: what a noisy reference does to the scores",
            "",
            f"Measured {date.today().isoformat()} with "
            f"`python benchmarks/quality_reference_noise.py` ({machine(torch.device('cpu'))})."
            " The three held-out 3-D phantoms of the 3-D table, given white noise of the "
            f"level `estimate_sigma` reads off `nuclei.tif` ({sigma:.4f} of its 0.1-99.9 "
            "percentile range) to make a noisy reference, under the same camera at the same "
            "three levels; each method scored against the phantom itself (the truth) and "
            "against the noisy reference, as `nuclei.tif` is. Mean PSNR (dB) after the gain "
            "fit. The blur oracle picks its sigma on the reference of its column; the perfect "
            "denoiser returns the truth.",
            "",
            *rows,
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
