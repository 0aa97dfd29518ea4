"""The real noisy/clean microscopy pairs in ../shared/data used by the quality scripts."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from napari_wne.camera import CameraNoise, simulate_camera
from napari_wne.datasets import normalize_intensity, read_image

DATA = Path(
    os.environ.get("NAPARI_WNE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
MICROSCOPY = DATA / "microscopy"
VALIDATION_PAIR = "w2s 010_0"
"""Held out from every score: the default model's training validated on it."""
W2S_NOISY = MICROSCOPY / "w2s_subset" / "extra_010_0" / "input_avg1_010_0.tif"
W2S_CLEAN = MICROSCOPY / "w2s_subset" / "extra_010_0" / "target_avg400_010_0.tif"
"""That validation pair's files (not among `microscopy_pairs`, which are all scored)."""


def shipped_2d_models() -> list[str]:
    """Every model with shipped weights that denoises 2-D images (`auto` included): what
    the tables of real 2-D pairs score. The 3-D model has its own table (quality_3d.py)."""
    from napari_wne import MODELS

    return [name for name, spec in MODELS.items() if spec.trained and 2 in spec.dims]


def microscopy_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, noisy, clean) as float64: 10 W2S widefield pairs and 2 FMD confocal pairs."""
    w2s = MICROSCOPY / "w2s_subset"
    if not w2s.is_dir():
        raise FileNotFoundError(f"no microscopy data at {MICROSCOPY}; set NAPARI_WNE_DATA")
    pairs = []
    for noisy in sorted((w2s / "avg1").glob("*.tif")):
        tag = noisy.stem.removeprefix("input_avg1_")
        clean = w2s / "avg400" / f"target_avg400_{tag}.tif"
        pairs.append((f"w2s {tag}", noisy, clean))
    extra = MICROSCOPY / "extra"
    pairs.append(
        (
            "fmd confocal R_1",
            extra / "fmd_R_1/image_R_1_001.png",
            extra / "fmd_R_1/image_R_1_avg50.png",
        )
    )
    bpae = extra / "fmd_bpae_r"
    pairs.append(
        (
            "fmd BPAE R",
            bpae / "BPAE_R_Channel_noisy_image.png",
            bpae / "BPAE_R_Channel_gt_image.png",
        )
    )
    return [
        (name, read_image(n).astype(np.float64), read_image(c).astype(np.float64))
        for name, n, c in pairs
    ]


# --- the correlated-noise benchmark --------------------------------------------------------

CORRELATED_KERNEL_SIGMA = 0.8
"""Gaussian smoothing of the noise: lag-1/2/3 correlation about 0.68/0.21/0.04, close to
the 0.61/0.19/0.09 measured on a public widefield benchmark (docs/noise.md)."""
CORRELATED_LEVELS = {"low": 100.0, "mid": 20.0, "high": 5.0}
"""Photons at the clean image's 99.9th percentile, per level; read noise 1.5 e- each."""


def correlated_camera(photons: float) -> CameraNoise:
    """The camera of the correlated-noise benchmark: Poisson-Gaussian noise, smoothed."""
    return CameraNoise(
        p_gaussian_only=0.0,
        photons_range=(photons, photons),
        read_noise_range=(1.5, 1.5),
        p_scmos=0.0,
        p_hot=0.0,
        p_correlated=1.0,
        p_resample=0.0,
        kernel_sigma_range=(CORRELATED_KERNEL_SIGMA, CORRELATED_KERNEL_SIGMA),
        p_anisotropic=0.0,
        p_quantize=0.0,
    )


def white_camera(photons: float) -> CameraNoise:
    """The same camera with its noise left white (each pixel on its own)."""
    return dataclasses.replace(correlated_camera(photons), p_correlated=0.0)


def clean_references() -> list[tuple[str, np.ndarray]]:
    """The clean images of the real pairs (W2S averages, FMD averages), validation excluded."""
    return [(name, clean) for name, _, clean in microscopy_pairs() if name != VALIDATION_PAIR]


def under_camera(
    clean: np.ndarray, camera: CameraNoise, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) in [0, 1]: the clean image scaled by its percentiles, then `camera`."""
    unit = normalize_intensity(clean.astype(np.float32), "percentile")
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(unit)[None, None]
    noisy, target = simulate_camera(x, camera, gen)
    return noisy[0, 0].numpy(), target[0, 0].numpy()


def with_correlated_noise(
    clean: np.ndarray, photons: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) in [0, 1] under the correlated-noise benchmark's camera."""
    return under_camera(clean, correlated_camera(photons), seed)


def correlated_benchmark() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(level, image name, noisy, clean) for every clean reference at every level, seeded."""
    cases = []
    for i, (name, clean) in enumerate(clean_references()):
        for j, (level, photons) in enumerate(CORRELATED_LEVELS.items()):
            noisy, target = with_correlated_noise(clean, photons, seed=1000 * i + j)
            cases.append((level, name, noisy, target))
    return cases
