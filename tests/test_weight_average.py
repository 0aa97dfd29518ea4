"""`TrainConfig.average_decay`: validate and export a moving average of the weights."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch

from napari_wne import build_backbone
from napari_wne.datasets import NoiseConfig
from napari_wne.model_io import load_weights, save_weights
from napari_wne.training import TrainConfig, train
from napari_wne.weight_average import interpolate_weights

INTERPOLATE = Path(__file__).resolve().parents[1] / "scripts" / "interpolate_model.py"

TINY = {"widths": (8, 16), "blocks": 1}


def _images() -> list:
    grid = torch.linspace(0, 6.28, 48)
    return [(0.5 + 0.4 * torch.sin(k * grid[:, None] + grid)).numpy() for k in (1, 2, 3)]


@pytest.fixture
def start(tmp_path):
    """Known starting weights, so the average's first term is known."""
    torch.manual_seed(3)
    path = tmp_path / "start.safetensors"
    save_weights(build_backbone("unet", spatial_dims=2, **TINY).state_dict(), path)
    return path


def _config(tmp_path, start, name: str, **overrides) -> TrainConfig:
    settings = {
        "output_dir": tmp_path / name,
        "backbone_kwargs": TINY,
        "patch_size": 32,
        "batch_size": 2,
        "steps": 2,
        "lr": 1e-2,
        "schedule": "constant",
        "checkpoint_every": 1,
        "validate_every": 1,
        "threads": 1,
        "device": "cpu",
        "init_weights": str(start),
        "noise": NoiseConfig(kind="fixed", sigma_255=50, jitter=False),
    }
    return TrainConfig(**{**settings, **overrides})


def test_the_exported_weights_are_the_moving_average_from_the_start(tmp_path, start):
    images = _images()
    w0 = load_weights(start)
    w1 = load_weights(train(_config(tmp_path, start, "one", steps=1), clean_images=images)
                      / "model.safetensors")  # fmt: skip
    w2 = load_weights(train(_config(tmp_path, start, "two"), clean_images=images)
                      / "model.safetensors")  # fmt: skip
    averaged = train(_config(tmp_path, start, "avg", average_decay=0.5), clean_images=images)
    got = load_weights(averaged / "model.safetensors")
    assert got.keys() == w2.keys()
    moved = [k for k in got if not torch.equal(w1[k], w2[k])]
    assert moved  # the steps changed the weights, so the check below means something
    for key in got:
        expected = 0.25 * w0[key] + 0.25 * w1[key] + 0.5 * w2[key]
        torch.testing.assert_close(got[key], expected, rtol=0, atol=1e-6)


def test_validation_scores_the_average_and_reports_the_last_weights_too(tmp_path, start):
    images = _images()
    pairs = [(images[0] + 0.1 * torch.randn(48, 48).numpy(), images[0])]
    seen = []
    config = _config(tmp_path, start, "avg", steps=3, average_decay=0.9)
    out = train(config, clean_images=images, validation=pairs, progress=seen.append)
    assert all(p.val_psnr is not None and p.last_val_psnr is not None for p in seen)
    assert any(p.val_psnr != p.last_val_psnr for p in seen)
    card = json.loads((out / "model.json").read_text())
    assert card["final_val_psnr"] == seen[-1].val_psnr


def test_an_averaged_run_resumes_to_the_same_weights(tmp_path, start):
    images = _images()
    whole = train(_config(tmp_path, start, "whole", steps=4, average_decay=0.7),
                  clean_images=images)  # fmt: skip
    config = _config(tmp_path, start, "cut", steps=4, average_decay=0.7)

    def stop(p):
        if p.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, clean_images=images, progress=stop)
    resumed = load_weights(train(config, clean_images=images) / "model.safetensors")
    expected = load_weights(whole / "model.safetensors")
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=1e-6)


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_0_to_1_is_a_clear_error(tmp_path, start, decay):
    with pytest.raises(ValueError, match="average_decay"):
        train(_config(tmp_path, start, "bad", average_decay=decay), clean_images=_images())


def test_interpolation_gives_each_end_exactly_and_the_line_between(start):
    first = {**load_weights(start), "counter": torch.tensor(3)}
    second = {k: v + 1 for k, v in first.items()}
    for alpha, shift in [(0.0, 0.0), (0.25, 0.25), (1.0, 1.0)]:
        mixed = interpolate_weights(first, second, alpha)
        for key, value in first.items():
            if key != "counter":
                torch.testing.assert_close(mixed[key], value + shift, rtol=0, atol=1e-6)
        assert mixed["counter"] == 3  # an integer buffer is a count, not a weight: kept


def test_interpolation_refuses_weights_of_another_shape_or_kind(start):
    first = load_weights(start)
    key = next(iter(first))
    with pytest.raises(ValueError, match="different weights"):
        interpolate_weights(first, {**first, "extra": first[key]}, 0.5)
    with pytest.raises(ValueError, match="not the same architecture"):
        interpolate_weights(first, {**first, key: first[key][:1]}, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        interpolate_weights(first, first, 1.5)


def _interpolate(*args: str) -> None:
    runpy.run_path(str(INTERPOLATE), run_name="not_main")["main"](list(args))


def test_the_script_mixes_a_model_with_its_own_fine_tune_only(tmp_path, start):
    middle = train(_config(tmp_path, start, "middle"), clean_images=_images())
    config = _config(tmp_path, start, "tuned", init_weights=str(middle / "model.safetensors"))
    tuned = train(config, clean_images=_images())
    (middle / "model.safetensors").unlink()  # a stage kept as its card only: still traced
    out = tmp_path / "half"
    _interpolate(str(start), str(tuned), str(out), "--alpha", "0.5")
    got, w0, w1 = (load_weights(p) for p in (out / "model.safetensors", start,
                                              tuned / "model.safetensors"))  # fmt: skip
    for key in got:
        torch.testing.assert_close(got[key], 0.5 * w0[key] + 0.5 * w1[key], rtol=0, atol=1e-6)
    card = json.loads((out / "model.json").read_text())
    assert card["interpolation"]["alpha"] == 0.5
    assert "final_val_psnr" not in card  # that score was the fine-tune's, not these weights'
    torch.manual_seed(9)
    stranger = tmp_path / "stranger.safetensors"
    save_weights(build_backbone("unet", spatial_dims=2, **TINY).state_dict(), stranger)
    with pytest.raises(SystemExit):
        _interpolate(str(stranger), str(tuned), str(tmp_path / "bad"), "--alpha", "0.5")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):  # never over a model already there
        _interpolate(str(start), str(tuned), str(out), "--alpha", "0.3")


def test_several_fine_tunes_of_one_model_are_averaged_before_the_mix(tmp_path, start):
    a = train(_config(tmp_path, start, "a", seed=1), clean_images=_images())
    b = train(_config(tmp_path, start, "b", seed=2, steps=3), clean_images=_images())
    out = tmp_path / "soup"
    _interpolate(str(start), str(a), str(b), str(out), "--alpha", "0.5")
    got, w0, wa, wb = (load_weights(p) for p in (out / "model.safetensors", start,
                                                  a / "model.safetensors",
                                                  b / "model.safetensors"))  # fmt: skip
    for key in got:
        expected = 0.5 * w0[key] + 0.25 * wa[key] + 0.25 * wb[key]
        torch.testing.assert_close(got[key], expected, rtol=0, atol=1e-6)
    card = json.loads((out / "model.json").read_text())
    assert card["steps"] == 5  # the budget of both fine-tunes
    assert card["interpolation"]["second"] == [str(a), str(b)]
    # a fine-tune of another start is refused, even with FIRST in its lineage
    c = train(_config(tmp_path, start, "c", init_weights=str(a / "model.safetensors")),
              clean_images=_images())  # fmt: skip
    with pytest.raises(SystemExit):
        _interpolate(str(start), str(a), str(c), str(tmp_path / "bad"), "--alpha", "0.5")
    assert not (tmp_path / "bad").exists()
