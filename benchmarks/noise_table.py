"""Measure the noise of every real pair, and show that the camera model covers them.

For each noisy/clean pair in ../shared/data: the variance-vs-mean fit (gain and read
noise, in the file's units; photons at the clean image's 99.9th percentile), the noise
autocorrelation at lags 1 to 3 along Y and X (noise = capture - gain-fitted clean image),
the lag-1 correlation estimated from the noisy image alone, and the capture's sub-pixel
shift against the clean image (a misregistered pair is measured again, registered). Then
it samples the training camera (`napari_wne.camera.CameraNoise()` defaults) on flat
patches and reports the range of photons and lag-1 correlation it produces. Writes docs/noise.md.

    python benchmarks/noise_table.py            # about a minute
"""

from __future__ import annotations

import argparse
from datetime import date
from itertools import pairwise

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.ndimage import shift as ndimage_shift
from skimage.registration import phase_cross_correlation

from _data import CORRELATED_LEVELS, MICROSCOPY, correlated_benchmark, microscopy_pairs
from _report import DOCS, machine
from napari_wne.camera import CameraNoise, simulate_camera
from napari_wne.datasets import read_image
from napari_wne.noise_stats import autocorrelation, estimate_correlation, variance_vs_mean

PAGE = DOCS / "noise.md"


def real_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every real pair: W2S, FMD (microscopy_pairs), the 3D-RCAN crops and SRDTrans."""
    files = []
    for folder in sorted((MICROSCOPY / "extra" / "rcan3d_samples").iterdir()):
        noisy = sorted(folder.glob("noisy_*.png"))
        clean = [p for p in folder.glob("*.png") if not p.name.startswith("noisy_")]
        if noisy and clean:
            files.append((f"3D-RCAN {folder.name.removesuffix('_samples')}", noisy[0], clean[0]))
    srd = MICROSCOPY / "srdtrans_subset"
    files.append(("SRDTrans 0 (simulated)", srd / "noisy" / "0.png", srd / "gt" / "0.png"))
    return microscopy_pairs() + [(n, read_image(y), read_image(x)) for n, y, x in files]


MISREGISTERED = 0.1
"""A pair whose capture sits this many pixels or more off its clean image is measured again
with the clean image shifted onto it: a shift leaves an error a denoiser cannot remove, and
it reads as noise that grows with the image's gradients."""


def subpixel_shift(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """(Y, X) shift of the capture against the clean image, to 1/50 px (the capture lightly
    smoothed first, so its noise does not pull the peak)."""
    found, _, _ = phase_cross_correlation(gaussian_filter(noisy, 1.0), clean, upsample_factor=50)
    return found


def registered(clean: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return ndimage_shift(clean, shift, order=3, mode="nearest")


def measure(noisy: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    gain, read_var, noise = variance_vs_mean(noisy, clean)
    corr = autocorrelation(noise)
    peak = float(np.percentile(noisy - noise, 99.9))  # the gain-fitted clean image
    return {
        "gain": gain,
        "read_sd": float(np.sqrt(max(read_var, 0.0))),
        "photons": peak / gain if gain > 0 else float("nan"),
        "corr_y": corr[0],
        "corr_x": corr[1],
        "estimated": float(estimate_correlation(noisy)[0]),
        "by_intensity": lag1_by_intensity(noise, noisy - noise),
        "noise_var": float(noise.var()),
    }


def lag1_by_intensity(noise: np.ndarray, clean: np.ndarray, bins: int = 5) -> list[tuple]:
    """Lag-1 noise correlation (Y, X) within each intensity quintile of the clean image:
    over the neighbours whose clean values both fall in it. Shows correlation that grows
    with the signal, which the flat (dark) patches of `estimate_correlation` cannot see."""
    edges = np.quantile(clean, np.linspace(0, 1, bins + 1))
    found = []
    for low, high in pairwise(edges):
        inside = (clean >= low) & (clean <= high)
        var = noise[inside].var()
        y = inside[1:] & inside[:-1]
        x = inside[:, 1:] & inside[:, :-1]
        found.append((
            (noise[1:] * noise[:-1])[y].mean() / var,
            (noise[:, 1:] * noise[:, :-1])[x].mean() / var,
        ))  # fmt: skip
    return found


def camera_coverage(samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Photons and lag-1 correlation of patches drawn from the default training camera."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.full((samples, 1, 64, 64), 0.5)
    noisy, target = simulate_camera(flat, CameraNoise(), gen)
    noise = (noisy - target).numpy()[:, 0]
    lag1 = np.array([autocorrelation(n, (1,)).mean() for n in noise])
    # the Poisson level that would give each patch's variance at intensity 0.5
    photons = 0.5 / np.maximum(noise.reshape(samples, -1).var(axis=1), 1e-12)
    return {"lag1": lag1, "photons": photons}


def fmt(v: float, digits: int = 2) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"


def render(rows: list[tuple[str, dict]], coverage: dict, bench: list[tuple[str, float]]) -> str:
    lines = [
        "# Noise in the real data, and the camera model that covers it",
        "",
        f"Measured {date.today().isoformat()} with `python benchmarks/noise_table.py` "
        f"({machine(torch.device('cpu'))}).",
        "",
        "For each real noisy/clean pair in `../shared/data`: the noise is the capture minus "
        "the clean image mapped onto it by a least-squares gain and offset. **gain** and "
        "**read sd** come from fitting variance = gain x mean + read sd² over 16 intensity "
        "bins, in the file's own units; **photons** is the clean image's 99.9th percentile "
        "divided by the gain (about the photons per pixel in the brightest structures). "
        "**lag k** is the noise autocorrelation at a shift of k pixels along Y / X. "
        "**estimated** is the lag-1 correlation read off the noisy image alone "
        "(`napari_wne.noise_stats.estimate_correlation`, the flattest 20 % of 24-px "
        "patches, far-lag bias removed). **shift** is where the capture sits against the "
        "clean image (phase correlation to 1/50 px, Y / X).",
        "",
        "| pair | gain | read sd | photons | lag 1 (Y/X) | lag 2 | lag 3 | estimated "
        "| shift (px) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        lags = [f"{fmt(m['corr_y'][k])} / {fmt(m['corr_x'][k])}" for k in range(3)]
        lines.append(
            f"| {name} | {fmt(m['gain'])} | {fmt(m['read_sd'])} | {fmt(m['photons'], 1)} | "
            + " | ".join(lags)
            + f" | {fmt(m['estimated'])} | {fmt(m['shift'][0])} / {fmt(m['shift'][1])} |"
        )
    off = [(name, m) for name, m in rows if "registered" in m]
    shifts = " and ".join(sorted({f"{m['shift'][0]:.2f} / {m['shift'][1]:.2f}" for _, m in off}))
    drops = [1 - m["registered"]["noise_var"] / m["noise_var"] for _, m in off]
    falls = f"{min(drops):.0%} to {max(drops):.0%}" if off else ""
    lag1, photons = coverage["lag1"], coverage["photons"]
    q = np.percentile
    real_photons = [m["photons"] for _, m in rows if np.isfinite(m["photons"])]
    real_lag1 = [c for _, m in rows for c in (m["corr_y"][0], m["corr_x"][0])]
    lines += [
        "",
        "Read noise fits near zero or below it (a negative intercept is shown as 0): these "
        "8-bit exports are photon-limited. The W2S subset here is white (lag-1 below 0.01), "
        "although widefield data often is not: the public widefield benchmark quoted in "
        "issue 10 measured 0.61 / 0.19 / 0.09 at lags 1 / 2 / 3. FMD confocal is mildly "
        "correlated along X (0.25). The 3D-RCAN noisy crops are synthetic (their SOURCE.md).",
        "",
        "The estimate from the noisy image alone is rough: it misses most of FMD's "
        "correlation (0.04 against 0.14 / 0.26), and it reads left-over structure as "
        "correlation on detailed crops (up to 0.25 on 3D-RCAN, whose noise is white). "
        "`napari-wne adapt` uses it only to choose how wide a neighbourhood to hide, and "
        "hides a 3x3 one in its held-out check whatever it finds (docs/cli.md).",
        "",
        "FMD's correlation grows with the signal. Lag-1 correlation Y / X within each "
        "quintile of the clean image's intensity (over neighbours that both fall in it), "
        "darkest first; the flattest patches, where the estimate looks, are dark. The "
        "'registered' rows measure the same noise against the clean image shifted onto "
        "the capture:",
        "",
        "| pair | " + " | ".join(f"quintile {k + 1}" for k in range(5)) + " | lag 1 (Y/X) "
        "| noise variance |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {name}{label} | "
            + " | ".join(f"{fmt(cy)} / {fmt(cx)}" for cy, cx in m["by_intensity"])
            + f" | {fmt(m['corr_y'][0])} / {fmt(m['corr_x'][0])} | {m['noise_var']:.1f} |"
            for name, row in rows
            if "registered" in row
            for label, m in (("", row), (", registered", row["registered"]))
        ),
        "",
        f"{', '.join(name for name, _ in off)} sit {shifts} px (Y / X) off their clean "
        f"images (every other pair: under {MISREGISTERED} px). Registered, their noise variance "
        f"falls by {falls} and their lag-1 correlation by about half; what stays is mild, "
        "largest along X and where the cells are brightest. Part of what these scores "
        "count as noise is the shift, which no denoiser can undo; the scores in "
        "docs/results.md are against the clean images as published, unregistered.",
        "",
        "## The correlated-noise benchmark",
        "",
        "Real structure, synthetic noise: the clean image of every scored pair (10 W2S "
        "averages, 2 FMD averages; W2S 010_0 is kept for validation) with Poisson noise at "
        f"{', '.join(f'{k} = {v:g}' for k, v in CORRELATED_LEVELS.items())} photons at the "
        "99.9th percentile, 1.5 e- read noise, smoothed by a Gaussian kernel of sigma 0.8 px "
        "(`benchmarks/_data.py`, seeded). Measured noise correlation:",
        "",
        "| level | lag 1 | lag 2 | lag 3 |",
        "|---|---|---|---|",
        *(f"| {level} | {c}" for level, c in bench),
        "",
        "Lag 3 is below the public benchmark's 0.09: a Gaussian kernel falls off faster "
        "than that camera's.",
        "",
        "## What the training camera draws",
        "",
        f"{len(lag1)} flat patches from `CameraNoise()` (the campaign's defaults): lag-1 "
        f"correlation 5th/50th/95th/max percentiles {q(lag1, 5):.2f} / {q(lag1, 50):.2f} / "
        f"{q(lag1, 95):.2f} / {lag1.max():.2f} "
        f"({(lag1 > 0.05).mean():.0%} of patches above 0.05, "
        f"{(lag1 > 0.5).mean():.0%} above 0.5); equivalent photons (0.5 / noise variance "
        f"at intensity 0.5) 5th/50th/95th percentiles {q(photons, 5):.1f} / "
        f"{q(photons, 50):.1f} / {q(photons, 95):.1f}. The real pairs above span photons "
        f"{min(real_photons):.1f} to {max(real_photons):.1f} and lag-1 "
        f"{min(real_lag1):.2f} to {max(real_lag1):.2f}, and the correlated benchmark 0.68: "
        "all inside what the camera draws.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, noisy, clean in real_pairs():
        noisy, clean = noisy.astype(np.float64), clean.astype(np.float64)
        shift = subpixel_shift(noisy, clean)
        rows.append((name, {**measure(noisy, clean), "shift": shift}))
        if np.abs(shift).max() >= MISREGISTERED:
            rows[-1][1]["registered"] = measure(noisy, registered(clean, shift))
        shown = {k: np.round(v, 2) for k, v in rows[-1][1].items() if k != "registered"}
        print(name, shown, flush=True)
    bench = []
    for level in CORRELATED_LEVELS:
        cases = [(n, x) for lv, _, n, x in correlated_benchmark() if lv == level]
        corr = np.mean([autocorrelation(n - x).mean(axis=0) for n, x in cases], axis=0)
        bench.append((level, " | ".join(f"{c:.2f}" for c in corr) + " |"))
    coverage = camera_coverage(1000)
    page = render(rows, coverage, bench)
    if args.no_write:
        print(page)
    else:
        PAGE.write_text(page)
        print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
