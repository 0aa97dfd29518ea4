"""The trained models in the package: they load offline, carry a card, and denoise real data.

The bars below come from measurement (docs/results.md, benchmarks/quality_microscopy.py),
set a safe margin under what was measured, so a regression fails and noise does not.
"""

from __future__ import annotations

import json
import socket
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import napari_wne
from napari_wne import DEFAULT_MODEL, MODELS, denoise
from napari_wne.datasets import read_image
from napari_wne.metrics import scores
from napari_wne.routing import CORRELATED_NOISE_MODEL, VOLUME_MODEL, WHITE_NOISE_MODEL
from napari_wne.sample_data import NOISE, add_poisson_gaussian_noise, load_sample

SHIPPED = sorted(name for name, spec in MODELS.items() if spec.trained and not spec.routed)
"""Every network with its own weights ("auto" only chooses between two of them)."""
WEIGHTS = resources.files("napari_wne").joinpath("weights")
CARD_FIELDS = ("backbone", "wne", "spatial_dims", "parameters", "steps", "wall_time_s",
               "machine", "training_data", "noise", "scores")  # fmt: skip


# Measured PSNR gains (dB) over the noisy input: on the bundled stack test below, and on the
# three widefield pairs further down. Each test asks for 70 % of its model's gain.
MEASURED_GAIN = {
    "unet-wne": (5.88, 12.92),  # 0.1 weights: 6.19 (it trained on nuclei.tif), 12.45
    "unet": (6.13, 12.64),
    "dncnn-wne": (5.23, 10.37),
    "dncnn": (2.01, 2.72),  # far behind its WNE twin at this budget
    "restormer-wne": (5.79, 11.63),
    "restormer": (4.73, 10.60),
    "unet-wne-corr": (5.51, 12.25),  # trained for correlated noise; these are white
    "unet-wne-3d": (6.43, None),  # volumes only: no 2-D widefield score
}
SHIPPED_2D = [name for name in SHIPPED if 2 in MODELS[name].dims]


def bar(name: str, which: int) -> float:
    assert name in MEASURED_GAIN, f"measure {name}'s gains and add them to MEASURED_GAIN"
    return 0.7 * MEASURED_GAIN[name][which]


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a shipped model tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_default_model_ships_trained():
    default = MODELS[DEFAULT_MODEL]
    if default.routed:  # "auto": each model it may choose ships trained
        assert {WHITE_NOISE_MODEL, CORRELATED_NOISE_MODEL, VOLUME_MODEL} <= set(SHIPPED)
    else:
        assert DEFAULT_MODEL in SHIPPED


def test_shipped_weights_fit_in_25_mb():
    folder = Path(napari_wne.__file__).parent / "weights"
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert 0 < total <= 25 * 2**20, total


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_has_a_complete_card(name):
    card = json.loads(WEIGHTS.joinpath(name, "model.json").read_text())
    missing = [k for k in CARD_FIELDS if k not in card]
    assert not missing, f"{name}'s model card lacks {missing}"
    assert card["backbone"] == MODELS[name].backbone and card["wne"] == MODELS[name].wne


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_denoises_the_bundled_stack_offline(name, offline):
    """Plumbing and sanity: these planes were among the default model's training images."""
    clean = load_sample("nuclei_3d")[12:16]
    noisy = add_poisson_gaussian_noise(clean, **NOISE)
    result = denoise(noisy, name, axes="ZYX", device="cpu", verbose=False)
    side_by_side = lambda stack: np.concatenate(list(stack), axis=1)  # noqa: E731 (2D scores)
    before = scores(side_by_side(noisy), side_by_side(clean))[0]
    after = scores(side_by_side(result), side_by_side(clean))[0]
    assert after > before + bar(name, 0), (before, after)


@pytest.fixture
def widefield_pairs(shared_data):
    """Three W2S single-capture / 400-average pairs, never seen in training."""
    w2s = shared_data / "microscopy" / "w2s_subset"
    tags = ("020_1", "044_0", "085_1")
    return [
        (read_image(w2s / "avg1" / f"input_avg1_{t}.tif").astype(np.float32),
         read_image(w2s / "avg400" / f"target_avg400_{t}.tif").astype(np.float64))
        for t in tags
    ]  # fmt: skip


def test_default_model_beats_non_local_means_on_real_widefield_noise(widefield_pairs):
    from skimage.restoration import denoise_nl_means, estimate_sigma

    ours, nlm, noisy_scores = [], [], []
    for noisy, clean in widefield_pairs:
        ours.append(scores(denoise(noisy, device="cpu", verbose=False), clean))
        unit = (noisy - noisy.min()) / (noisy.max() - noisy.min())
        sigma = float(estimate_sigma(unit))
        nlm.append(scores(denoise_nl_means(unit, h=0.8 * sigma, sigma=sigma, fast_mode=True,
                                           patch_size=5, patch_distance=6), clean))  # fmt: skip
        noisy_scores.append(scores(noisy, clean))
    mean = lambda values, i: float(np.mean([v[i] for v in values]))  # noqa: E731
    # Measured on these three: 31.29 dB (0.1 weights: 30.81 / 0.799) against NLM's 24.70 dB /
    # 0.562, input 18.37 dB.
    assert mean(ours, 0) > mean(nlm, 0) + 3.0, (mean(ours, 0), mean(nlm, 0))  # PSNR
    assert mean(ours, 1) > mean(nlm, 1) + 0.1, (mean(ours, 1), mean(nlm, 1))  # SSIM
    assert mean(ours, 0) > mean(noisy_scores, 0) + 8.0


@pytest.mark.parametrize("name", SHIPPED_2D)
def test_every_shipped_model_improves_real_widefield_images(name, widefield_pairs):
    """Real noise the models never saw (mean input PSNR 18.37 dB)."""
    after, before = (
        np.mean([scores(denoise(noisy, name, device="cpu", verbose=False), clean)[0]
                 for noisy, clean in widefield_pairs]),
        np.mean([scores(noisy, clean)[0] for noisy, clean in widefield_pairs]),
    )  # fmt: skip
    assert after > before + bar(name, 1), (before, after)
