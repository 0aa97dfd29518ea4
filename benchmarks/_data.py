"""The real noisy/clean microscopy pairs in ../shared/data used by the quality scripts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_wne.datasets import read_image

DATA = Path(
    os.environ.get("NAPARI_WNE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
MICROSCOPY = DATA / "microscopy"
VALIDATION_PAIR = "w2s 010_0"
"""Held out from every score: the default model's training validated on it."""


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
