"""Self-supervised adaptation: structN2V/N2V2 masks, the mask radius from the measured noise
correlation, early stopping that keeps the original when nothing improved, and the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
import torch

from napari_wne import denoise
from napari_wne.adaptation import KEPT_CORRELATED, KEPT_ORIGINAL, AdaptSettings, adapt
from napari_wne.blind_spot import blind_spot_mask, mask_radius, masked_errors
from napari_wne.camera import CameraNoise, simulate_camera
from napari_wne.cli import main
from napari_wne.datasets import NoiseConfig
from napari_wne.early_stopping import SignificantLoss
from napari_wne.model_io import load_weights
from napari_wne.noise_stats import autocorrelation, estimate_correlation
from napari_wne.training import TrainConfig, train

TINY = {"widths": (8, 16), "blocks": 1}


def _unique_patches(n: int = 3, side: int = 24) -> torch.Tensor:
    """Patches whose every value occurs once, so a moved value can be traced back."""
    return (
        torch.randperm(n * side * side, generator=torch.Generator().manual_seed(0))
        .reshape(n, 1, side, side)
        .float()
    )


@pytest.mark.parametrize("replacement", ["uniform", "median"])
@pytest.mark.parametrize("radius", [1, 2])
def test_struct_mask_hides_the_whole_neighbourhood_and_never_shows_a_hidden_value(
    replacement, radius
):
    y = _unique_patches()
    masked, index = blind_spot_mask(
        y, 0.004, 3, torch.Generator().manual_seed(2), radius=radius, replacement=replacement
    )
    side = y.shape[-1]
    hidden = torch.zeros_like(y, dtype=torch.bool)
    for n in range(y.shape[0]):
        for i in index[n].tolist():
            r, c = divmod(i, side)
            hidden[n, 0, r - radius : r + radius + 1, c - radius : c + radius + 1] = True
    # every pixel of every hidden block changed; nothing else did
    assert (masked != y)[hidden].all()
    assert (masked == y)[~hidden].all()
    # and no hidden pixel's own value appears anywhere in the hidden blocks
    for n in range(y.shape[0]):
        originals = set(y[n][hidden[n]].tolist())
        assert originals.isdisjoint(masked[n][hidden[n]].tolist())


def test_median_replacement_excludes_the_centre():
    y = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    masked, index = blind_spot_mask(
        y, 0.001, 3, torch.Generator().manual_seed(3), replacement="median"
    )
    assert index.shape == (8, 1)  # one hidden pixel per patch: its 8 neighbours all shown
    for n in range(8):
        for i in index[n].tolist():
            r, c = divmod(i, 16)
            window = y[n, 0, r - 1 : r + 2, c - 1 : c + 2].flatten().tolist()
            neighbours = sorted(window[:4] + window[5:])  # the centre is the 5th
            assert masked[n, 0, r, c].item() == pytest.approx(neighbours[3])  # lower median
            assert masked[n, 0, r, c] != y[n, 0, r, c]


def _phantom(side: int = 192) -> torch.Tensor:
    """Smooth blobs on a background, in [0, 1]."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side]
    image = np.full((side, side), 0.1)
    for cy, cx, s in rng.uniform([0, 0, 4], [side, side, 12], size=(25, 3)):
        image += 0.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))
    return torch.from_numpy(image / image.max())[None, None]


@pytest.mark.parametrize(("sigma", "radius"), [(None, 0), (0.5, 1), (0.8, 2)])
def test_mask_radius_follows_the_correlation_measured_on_the_noisy_image(sigma, radius):
    camera = CameraNoise(
        p_gaussian_only=0.0,
        photons_range=(20.0, 20.0),
        read_noise_range=(1.5, 1.5),
        p_scmos=0.0,
        p_hot=0.0,
        p_correlated=0.0 if sigma is None else 1.0,
        p_resample=0.0,
        kernel_sigma_range=(sigma or 0.5, sigma or 0.5),
        p_anisotropic=0.0,
        p_quantize=0.0,
    )
    noisy, clean = simulate_camera(_phantom(), camera, torch.Generator().manual_seed(5))
    noisy, clean = noisy[0, 0].numpy(), clean[0, 0].numpy()
    truth = autocorrelation(noisy - clean).mean(axis=0)
    found = estimate_correlation(noisy)
    assert np.abs(found - truth).max() < 0.06, (found, truth)
    assert mask_radius(found) == radius


def _start_model(tmp_path) -> str:
    """A tiny UNet-WNE folder (a few supervised steps), to adapt from."""
    rng = np.random.default_rng(0)
    clean = [_phantom(64)[0, 0].numpy().astype(np.float32) * rng.uniform(0.5, 1.0)]
    config = TrainConfig(
        output_dir=tmp_path / "start",
        backbone_kwargs=TINY,
        patch_size=32,
        batch_size=2,
        steps=2,
        lr=1e-3,
        threads=1,
        device="cpu",
        noise=NoiseConfig(kind="fixed", sigma_255=50, jitter=False),
    )
    return str(train(config, clean_images=clean))


def _noisy(side: int = 96, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = _phantom(side)[0, 0].numpy()
    return (clean + rng.normal(0, 0.15, clean.shape)).astype(np.float32)


def _quick(**overrides) -> AdaptSettings:
    values = dict(steps=12, batch_size=4, patch_size=32, check_every=4, patience=2, device="cpu")
    return AdaptSettings(**{**values, **overrides})


def test_adapt_keeps_the_original_when_the_held_out_loss_does_not_improve(tmp_path):
    start = _start_model(tmp_path)
    result = adapt([_noisy()], tmp_path / "out", init=start, settings=_quick(lr=0.0))
    assert not result.adapted and result.message == KEPT_ORIGINAL
    assert result.best_loss == result.start_loss and result.best_step == 0
    before = load_weights(f"{start}/model.safetensors")
    after = load_weights(tmp_path / "out" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    card = json.loads((tmp_path / "out" / "model.json").read_text())
    assert card["adaptation"]["result"] == KEPT_ORIGINAL
    assert card["adaptation"]["from_model"] == start


def test_adapt_keeps_adapted_weights_when_they_lower_the_held_out_loss(tmp_path):
    # Barely trained: self-supervision has much to add. The check hides single pixels
    # here, as training does (white noise), so a few steps can show a significant gain.
    start = _start_model(tmp_path)
    result = adapt(
        [_noisy()], tmp_path / "out", init=start, settings=_quick(lr=3e-3, held_out_radius=0)
    )
    assert result.adapted and result.message.startswith("adapted")
    assert result.best_loss < result.start_loss and result.best_step > 0
    card = json.loads((tmp_path / "out" / "model.json").read_text())["adaptation"]
    assert card["result"] == "adapted"
    assert card["held_out_loss_after"] < card["held_out_loss_before"]
    before = load_weights(f"{start}/model.safetensors")
    after = load_weights(tmp_path / "out" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # the held-out loss at the kept step is the lowest of the history
    assert min(loss for _, loss in card["held_out_history"]) == card["held_out_loss_after"]


def _correlated_noisy(side: int = 96) -> np.ndarray:
    clean = _phantom(side)
    camera = CameraNoise(p_gaussian_only=1.0, sigma_range=(0.15, 0.15), p_scmos=0.0,
                         p_hot=0.0, p_correlated=1.0, p_resample=0.0,
                         kernel_sigma_range=(1.0, 1.0), p_quantize=0.0)  # fmt: skip
    noisy, _ = simulate_camera(clean, camera, torch.Generator().manual_seed(2))
    return noisy[0, 0].numpy().astype(np.float32)


def test_on_correlated_noise_adapt_keeps_the_original_without_training(tmp_path):
    start = _start_model(tmp_path)
    result = adapt([_correlated_noisy()], tmp_path / "out", init=start, settings=_quick())
    assert result.mask_radius > 0  # the noise was seen to be correlated
    assert not result.adapted and result.steps_run == 0 and result.message == KEPT_CORRELATED
    before = load_weights(f"{start}/model.safetensors")
    after = load_weights(tmp_path / "out" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    card = json.loads((tmp_path / "out" / "model.json").read_text())
    assert card["adaptation"]["result"] == KEPT_CORRELATED
    assert denoise(_correlated_noisy(), model=str(tmp_path / "out"), verbose=False).shape


def test_on_correlated_noise_adapt_trains_when_allowed(tmp_path):
    start = _start_model(tmp_path)
    settings = _quick(lr=3e-3, allow_correlated=True)
    result = adapt([_correlated_noisy()], tmp_path / "out", init=start, settings=settings)
    assert result.mask_radius > 0 and result.steps_run > 0


def test_cli_adapt_writes_a_model_folder_that_denoise_loads(tmp_path, capsys):
    start = _start_model(tmp_path)
    image = _noisy(64)
    tifffile.imwrite(tmp_path / "noisy.tif", image)
    out = tmp_path / "adapted"
    argv = ["adapt", str(tmp_path / "noisy.tif"), str(out), "--init", start]
    argv += ["--steps", "4", "--check-every", "2", "--lr", "1e-3", "--device", "cpu"]
    assert main(argv) == 0
    said = capsys.readouterr()
    assert "adapted" in said.out or KEPT_ORIGINAL in said.out
    card = json.loads((out / "model.json").read_text())
    assert card["adaptation"]["images"] == [str((tmp_path / "noisy.tif").resolve())]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trained folder: no "untrained" warning
        result = denoise(image, model=str(out), verbose=False)
    assert result.shape == image.shape and np.isfinite(result).all()
    # a second run does not replace the model without --overwrite
    assert main(argv) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_a_held_out_improvement_within_its_noise_does_not_count():
    gen = torch.Generator().manual_seed(0)
    start = torch.rand(1000, generator=gen, dtype=torch.float64)
    wobble = 0.05 * torch.randn(1000, generator=gen, dtype=torch.float64)
    within_noise = start - 1e-4 + wobble  # lower on average, by far less than its spread
    clearly_better = 0.9 * start
    measured = iter([start, within_noise, clearly_better])
    loss = SignificantLoss(lambda model: next(measured), min_z=2.0)

    assert loss(None) == pytest.approx(float(start.mean()))
    assert float(within_noise.mean()) < float(start.mean())
    assert loss(None) == pytest.approx(float(start.mean()))  # counted as no change
    assert loss(None) == pytest.approx(float(clearly_better.mean()))
    assert loss.z[0] < 2.0 < loss.z[1]


class _CopyLeftNeighbour(torch.nn.Module):
    """Predicts every pixel as the one to its left: all it can learn from correlated noise
    once the blind spot is narrower than the noise."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # masked_errors asks for a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1, dims=-1)


@pytest.mark.parametrize(("radius", "copying_pays"), [(0, True), (1, False)])
def test_copying_correlated_noise_lowers_the_masked_loss_only_behind_a_narrow_mask(
    radius, copying_pays
):
    # Pure noise smoothed to a lag-1 correlation of 0.67: no signal to learn, so a lower
    # masked loss than predicting zero can come only from reading the noise off a visible
    # neighbour. Hence adapt's held-out check hides at least a 3x3 neighbourhood.
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(8, 1, 64, 64, generator=gen)
    kernel = torch.tensor([0.25, 0.5, 0.25])
    noise = torch.nn.functional.conv2d(white, (kernel[:, None] * kernel[None])[None, None])
    noise = noise / noise.std()
    masked, indices = blind_spot_mask(noise, 0.01, 3, gen, radius=radius, replacement="median")
    copy = masked_errors(_CopyLeftNeighbour(), noise, masked, indices).mean()
    zero = noise.reshape(len(noise), -1).gather(1, indices).double().square().mean()
    assert bool(copy < 0.8 * zero) is copying_pays


def test_the_held_out_check_hides_a_neighbourhood_even_where_training_does_not(tmp_path):
    start = _start_model(tmp_path)
    result = adapt([_noisy()], tmp_path / "out", init=start, settings=_quick(lr=0.0))
    assert result.mask_radius == 0  # white noise: training hides single pixels
    card = json.loads((tmp_path / "out" / "model.json").read_text())["adaptation"]
    assert card["held_out_radius"] == AdaptSettings().held_out_radius == 1
