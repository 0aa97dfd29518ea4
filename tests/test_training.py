"""Training (supervised, pairs, n2v; 2-D and 3-D), resume, and safe bring-your-own weights."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import warnings

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from napari_wne import WNE, UntrainedModelWarning, build_backbone, denoise, load_model
from napari_wne import models as models_module
from napari_wne.cli import main
from napari_wne.datasets import (
    NoiseConfig,
    PatchSampler,
    load_clean_images,
    load_pairs,
    make_synthetic_pairs,
    normalize_intensity,
    synthesize_noise,
)
from napari_wne.model_io import (
    load_backbone_weights,
    load_trained,
    load_weights,
    save_weights,
)
from napari_wne.training import CHECKPOINT_FILE, TrainConfig, blind_spot_mask, train

TINY = {"widths": (8, 16), "blocks": 1}
"""A UNet small enough that tens of steps take a second or two."""


def _clean_images(n: int = 3, size: int = 48, depth: int | None = None) -> list[np.ndarray]:
    """Smooth patterns in [0.1, 0.9]: easy to denoise, so a few steps show progress."""
    images = []
    for i in range(n):
        grid = np.mgrid[: depth or 1, :size, :size] / size
        wave = np.sin(2 * np.pi * ((i + 1) * grid[2] + (2 - i % 2) * grid[1] + grid[0]))
        image = (0.5 + 0.4 * wave).astype(np.float32)
        images.append(image if depth else image[0])
    return images


def _config(tmp_path, name: str = "run", **overrides) -> TrainConfig:
    settings = {
        "output_dir": tmp_path / name,
        "backbone_kwargs": TINY,
        "patch_size": 32,
        "batch_size": 4,
        "steps": 30,
        "lr": 3e-3,
        "checkpoint_every": 10,
        "validate_every": 10,
        "threads": 1,  # tiny models gain nothing from more, and the CI machine may be busy
        "device": "cpu",
        "noise": NoiseConfig(kind="fixed", sigma_255=50, jitter=False),
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def _losses(config: TrainConfig, **data) -> list[float]:
    losses: list[float] = []
    train(config, progress=lambda p: losses.append(p.loss), **data)
    return losses


def _falls(losses: list[float]) -> bool:
    return np.mean(losses[-8:]) < 0.7 * np.mean(losses[:3])


# --- training -------------------------------------------------------------------------------


@pytest.mark.parametrize("wne", [True, False])
def test_supervised_loss_falls(tmp_path, wne):
    config = _config(tmp_path, wne=wne)
    losses = _losses(config, clean_images=_clean_images())
    assert _falls(losses), losses
    card = json.loads((config.output_dir / "model.json").read_text())
    assert card["wne"] is wne and card["backbone_kwargs"] == {"widths": [8, 16], "blocks": 1}
    assert card["steps"] == 30 and card["machine"]["torch_threads"] == 1


@pytest.mark.parametrize("loss", ["mse", "log-mse"])
def test_supervised_with_mixed_noise_and_jitter_beats_the_input(tmp_path, loss):
    clean = _clean_images()
    validation = make_synthetic_pairs(clean[:1], NoiseConfig(kind="fixed", sigma_255=50), seed=9)
    noise = NoiseConfig(sigma_range=(0.1, 0.3), jitter=True)
    scores = []
    train(
        _config(tmp_path, noise=noise, steps=40, loss=loss),
        clean_images=clean,
        validation=validation,
        progress=lambda p: p.val_psnr is not None and scores.append(p.val_psnr),
    )
    noisy, target = validation[0]
    input_psnr = 10 * np.log10((target.max() - target.min()) ** 2 / np.mean((noisy - target) ** 2))
    assert len(scores) == 4 and scores[-1] > input_psnr + 1, (scores, input_psnr)


def test_n2v_loss_falls_in_2d(tmp_path, rng):
    noisy = [x + rng.normal(0, 0.2, x.shape).astype(np.float32) for x in _clean_images()]
    config = _config(tmp_path, mode="n2v", mask_fraction=0.03, steps=40)
    assert _falls(_losses(config, noisy_images=noisy))


def test_n2v_trains_a_3d_model_that_denoise_uses(tmp_path, rng):
    volumes = [x + rng.normal(0, 0.2, x.shape).astype(np.float32) for x in _clean_images(2, 24, 8)]
    config = _config(tmp_path, mode="n2v", spatial_dims=3, patch_size=(8, 16, 16), steps=4)
    out = train(config, noisy_images=volumes)
    result = denoise(volumes[0], model=str(out), axes="ZYX", verbose=False)
    assert result.shape == volumes[0].shape and np.isfinite(result).all()
    with pytest.raises(ValueError, match="3-D instances"):
        denoise(volumes[0][0], model=str(out), verbose=False)


def test_pairs_mode_trains(tmp_path, rng):
    pairs = [(x + rng.normal(0, 0.2, x.shape).astype(np.float32), x) for x in _clean_images()]
    assert _falls(_losses(_config(tmp_path, mode="pairs"), pairs=pairs))


def test_an_unknown_loss_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="loss must be one of 'mse', 'log-mse', got 'l1'"):
        _config(tmp_path, loss="l1")


def test_a_mode_without_its_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs noisy_images"):
        train(_config(tmp_path, mode="n2v"), clean_images=_clean_images())


# --- checkpoints and resume -----------------------------------------------------------------


class _Stop(Exception):
    pass


def _stop_at(step: int, error: type[BaseException] | str):
    def progress(p):
        if p.step == step and error == "ctrl-c":
            os.kill(os.getpid(), signal.SIGINT)  # as if typed: training stops after this step
        elif p.step == step:
            raise error

    return progress


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_weights(folder / "model.safetensors")


@pytest.mark.parametrize(
    ("stop", "error"), [(13, _Stop), (7, KeyboardInterrupt), (6, "ctrl-c")], ids=str
)
def test_resumed_training_ends_with_the_same_weights(tmp_path, stop, error):
    images = _clean_images()
    noise = NoiseConfig()  # mixed noise and jitter: every random stream must resume exactly
    reference = train(_config(tmp_path, "whole", steps=20, noise=noise), clean_images=images)
    config = _config(tmp_path, "cut", steps=20, noise=noise, checkpoint_every=5)
    with pytest.raises(KeyboardInterrupt if error == "ctrl-c" else error):
        train(config, clean_images=images, progress=_stop_at(stop, error))
    saved = torch.load(config.output_dir / CHECKPOINT_FILE, weights_only=True)
    assert saved["step"] == (10 if error is _Stop else stop)  # periodic, or at the interrupt
    assert not (config.output_dir / "model.safetensors").exists()
    steps = []
    train(config, clean_images=images, progress=lambda p: steps.append((p.start_step, p.step)))
    assert steps[0] == (saved["step"], saved["step"] + 1) and steps[-1][1] == 20
    expected, resumed = _weights(reference), _weights(config.output_dir)
    assert expected.keys() == resumed.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=1e-6)


def test_resume_with_other_settings_is_refused(tmp_path):
    images = _clean_images()
    train(_config(tmp_path, steps=2), clean_images=images)
    with pytest.raises(ValueError, match="lr"):
        train(_config(tmp_path, steps=2, lr=1e-4), clean_images=images)


def test_a_checkpoint_written_before_new_settings_existed_still_resumes(tmp_path):
    """Settings added later (mask radius, patience, ...) count as their defaults there."""
    images = _clean_images()
    stopped = _config(tmp_path, steps=4, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(stopped, clean_images=images, progress=_stop_at(2, KeyboardInterrupt))
    path = tmp_path / "run" / CHECKPOINT_FILE
    saved = torch.load(path, weights_only=True)
    older = json.loads(saved["config"])
    for added in ("mask_radius", "mask_replacement", "patience"):
        del older[added]
    saved["config"] = json.dumps(older)
    torch.save(saved, path)
    train(stopped, clean_images=images)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["steps"] == 4


def test_early_stopping_exports_the_weights_with_the_lowest_held_out_loss(tmp_path):
    losses = iter([5.0, 4.0, 3.0, 3.5, 3.6, 9.0, 9.0])  # start, then every 2 steps
    seen = []

    def held_out(model):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(losses)

    config = _config(tmp_path, steps=20, validate_every=2, patience=2)
    out = train(config, clean_images=_clean_images(), held_out=held_out)
    card = json.loads((out / "model.json").read_text())["held_out_loss"]
    assert card["start"] == 5.0 and card["loss"] == 3.0 and card["step"] == 4
    assert [s for s, _ in card["history"]] == [0, 2, 4, 6, 8]  # stopped 2 checks after best
    exported = load_weights(out / "model.safetensors")
    best = {k.removeprefix("backbone."): v for k, v in seen[2].items()}
    assert all(torch.equal(exported[k], best[k]) for k in exported)


# --- loading trained and bring-your-own models ----------------------------------------------


@pytest.fixture
def trained(tmp_path):
    return train(_config(tmp_path, "trained", steps=3), clean_images=_clean_images())


def test_trained_folder_loads_through_denoise(trained, rng):
    image = (1000 + 200 * rng.standard_normal((40, 36))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedModelWarning)
        # compared with a float32 forward below: "auto" may pick float16 on a CPU
        out = denoise(image, model=str(trained), precision="float32", verbose=False)
        also = denoise(image, model=str(trained / "model.json"), precision="float32",
                       verbose=False)  # fmt: skip
    model = load_trained(trained)
    with torch.no_grad():
        direct = model(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(out, also)
    shifted = denoise(3 * image - 50, model=str(trained), precision="float32", verbose=False)
    np.testing.assert_allclose(shifted, 3 * out - 50, rtol=0, atol=1e-2)


def test_registry_model_uses_its_shipped_weights(trained, monkeypatch, rng):
    spec = models_module.MODELS["unet-wne"]
    shipped = dataclasses.replace(spec, weights=str(trained / "model.safetensors"))
    monkeypatch.setitem(models_module.MODELS, "unet-wne", shipped)
    image = rng.normal(100, 15, size=(32, 32)).astype(np.float32)
    # the shipped card says widths (8, 16): only a load of those weights can match
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedModelWarning)
        out = denoise(image, model="unet-wne", verbose=False)
    np.testing.assert_allclose(out, denoise(image, model=str(trained), verbose=False), atol=1e-4)


def test_safetensors_and_state_dict_round_trip(tmp_path, trained, rng):
    state = load_weights(trained / "model.safetensors")
    save_weights(state, tmp_path / "copy.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pt")
    for path in (tmp_path / "copy.safetensors", tmp_path / "w.pt"):
        loaded = load_backbone_weights("unet", path, wne=True, **TINY)
        reference = load_trained(trained)
        x = torch.from_numpy(rng.normal(size=(1, 1, 24, 24)).astype(np.float32))
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), reference(x))


def test_name_colon_path_loads_a_state_dict_for_a_registered_model(tmp_path, rng):
    shallow = build_backbone("dncnn", spatial_dims=2, depth=4)
    save_weights(shallow.state_dict(), tmp_path / "shallow.safetensors")
    with pytest.raises(ValueError, match="do not fit"):  # the registry's dncnn has depth 17
        load_model(f"dncnn:{tmp_path / 'shallow.safetensors'}", 2, "cpu")
    full = build_backbone("dncnn", spatial_dims=2).eval()
    torch.save(full.state_dict(), tmp_path / "full.pth")
    model = load_model(f"dncnn-wne:{tmp_path / 'full.pth'}", 2, "cpu")
    assert isinstance(model, WNE) and not model.training
    x = torch.from_numpy(rng.normal(100, 15, size=(1, 1, 24, 24)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(model(x), WNE(full)(x))
    spec = models_module.get_model(f"dncnn-wne:{tmp_path / 'full.pth'}")
    assert spec.trained and spec.equivariant and spec.backbone == "dncnn"


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        denoise(np.zeros((8, 8)), model=str(tmp_path / "nothing-here"), verbose=False)
    with pytest.raises(ValueError, match="unknown model"):
        denoise(np.zeros((8, 8)), model="nope", verbose=False)


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path, how):
    marker = tmp_path / "pwned"
    evil = tmp_path / "weights.pt"
    payload = {"conv.weight": torch.zeros(1), "x": _Payload(marker)}
    if how == "pickle":
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, evil)
    with pytest.raises(ValueError, match=r"refused to load .*weights\.pt.*safetensors"):
        load_weights(evil)
    with pytest.raises(ValueError, match="refused to load"):
        denoise(np.zeros((16, 16)), model=f"unet-wne:{evil}", verbose=False)
    assert not marker.exists(), "the pickle's payload ran"


class _Biased(nn.Module):
    """A tiny network with biases: not equivariant on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))) + 0.5


def test_torchscript_module_wrapped_with_wne_is_equivariant(tmp_path, rng):
    path = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
        torch.jit.save(torch.jit.script(_Biased()), str(path))
    with pytest.raises(ValueError, match="TorchScript"):
        load_weights(path)
    image = rng.normal(100, 15, size=(24, 28)).astype(np.float64)
    a, b = 7.0, -300.0
    model = load_trained(path, wrap=True)
    with torch.no_grad():
        y = torch.from_numpy(image)[None, None].float()
        out, moved = model(y).double(), model(a * y + b).double()
    torch.testing.assert_close(moved, a * out + b, rtol=0, atol=1e-3 * a)
    plain = denoise(image.astype(np.float32), model=str(path), verbose=False)
    wrapped = denoise(image.astype(np.float32), model=f"wne:{path}", verbose=False)
    shifted = denoise((a * image + b).astype(np.float32), model=f"wne:{path}", verbose=False)
    np.testing.assert_allclose(shifted, a * wrapped + b, rtol=0, atol=1e-2)
    assert not np.allclose(plain, wrapped, atol=1e-2)


# --- data -----------------------------------------------------------------------------------


def test_blind_spot_mask_replaces_only_masked_pixels_by_a_neighbour(rng):
    for shape in [(3, 1, 16, 20), (2, 1, 6, 10, 12)]:
        y = torch.arange(np.prod(shape), dtype=torch.float32).reshape(shape)
        masked, index = blind_spot_mask(y, 0.05, 5, torch.Generator().manual_seed(1))
        flat, flat_masked = y.reshape(shape[0], -1), masked.reshape(shape[0], -1)
        changed = flat != flat_masked
        assert changed.sum() > 0
        assert torch.zeros_like(changed).scatter_(1, index, True)[changed].all()
        spatial = shape[2:]
        for n, i in zip(*torch.nonzero(changed, as_tuple=True), strict=True):
            here = np.unravel_index(int(i), spatial)
            there = np.unravel_index(int(flat_masked[n, i] - flat[n, 0]), spatial)
            distance = np.abs(np.subtract(here, there))
            assert 0 < distance.max() <= 2 * 2  # within the window, reflected at borders


def test_noise_synthesis_is_reproducible_and_has_the_asked_level():
    clean = torch.full((64, 1, 32, 32), 0.5)
    fixed = NoiseConfig(kind="fixed", sigma_255=25, jitter=False)
    noisy, target, a = synthesize_noise(clean, fixed, torch.Generator().manual_seed(0))
    assert torch.equal(target, clean) and torch.equal(a, torch.ones(64))
    assert abs(float((noisy - clean).std()) - 25 / 255) < 2e-3
    again = synthesize_noise(clean, NoiseConfig(), torch.Generator().manual_seed(5))
    other = synthesize_noise(clean, NoiseConfig(), torch.Generator().manual_seed(5))
    for first, second in zip(again, other, strict=True):
        assert torch.equal(first, second)
    noisy, target, a = again
    assert a.min() >= 0.05 and a.max() <= 20 and a.std() > 0  # one contrast per patch
    assert (target.std(dim=(1, 2, 3)) == 0).all()  # a flat patch stays flat: a*x + b
    residual = (noisy - target) / a.view(-1, 1, 1, 1)  # noise in the clean image's units
    assert torch.isfinite(residual).all() and 0.01 < float(residual.std()) < 0.5


def test_patch_sampler_crops_groups_identically_and_repeats(rng):
    clean = rng.random((40, 50)).astype(np.float32)
    noisy = clean + 1.0
    sampler = PatchSampler([(noisy, clean)], 16)
    batch = sampler.sample(8, np.random.default_rng(3))
    assert batch.shape == (8, 2, 16, 16)
    np.testing.assert_array_equal(batch[:, 0], batch[:, 1] + 1.0)
    np.testing.assert_array_equal(batch, sampler.sample(8, np.random.default_rng(3)))
    small = PatchSampler([rng.random((5, 12, 10))], (4, 16, 16), spatial_dims=3)
    assert small.sample(2, np.random.default_rng(0)).shape == (2, 1, 4, 16, 16)


def test_image_loading_scales_to_the_unit_range(tmp_path, rng):
    counts = rng.poisson(30, size=(32, 32)).astype(np.uint16) + 100  # low counts, an offset
    tifffile.imwrite(tmp_path / "a.tif", counts)
    rgb = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "b.png", rgb)
    first, second = load_clean_images(tmp_path)
    assert first.dtype == np.float32 and first.min() == 0 and first.max() == 1
    np.testing.assert_allclose(second, np.rint(rgb.mean(axis=-1)) / 255, atol=1e-6)
    tails = rng.normal(size=(100, 100))
    assert normalize_intensity(tails, clip=False).max() > 1  # noisy data keeps its tails
    (tmp_path / "n").mkdir()
    (tmp_path / "c").mkdir()
    tifffile.imwrite(tmp_path / "c" / "1.tif", counts)
    tifffile.imwrite(tmp_path / "n" / "1.tif", (3 * counts + 7).astype(np.uint16))
    [(noisy, clean)] = load_pairs(tmp_path / "n", tmp_path / "c")
    np.testing.assert_allclose(noisy, clean, atol=1e-4)  # the gain difference is fitted away


# --- command line ---------------------------------------------------------------------------


def test_cli_trains_validates_and_resumes(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i, image in enumerate(_clean_images()):
        tifffile.imwrite(data / f"{i}.tif", (image * 60000).astype(np.uint16))
    out = tmp_path / "model"
    args = ["train", str(out), "--data", str(data), "--val-data", str(data / "0.tif")]
    args += ["--backbone-kwargs", json.dumps(TINY), "--patch", "32", "--batch", "2"]
    args += ["--val-every", "2", "--checkpoint-every", "2", "--threads", "1", "--device", "cpu"]
    assert main([*args, "--steps", "4"]) == 0
    captured = capsys.readouterr()
    assert "validation PSNR" in captured.err and "trained model in" in captured.out
    assert main([*args, "--steps", "4", "--lr", "1e-2"]) == 2  # other settings: refused
    assert "other settings" in capsys.readouterr().err
    assert main([*args, "--steps", "4"]) == 0  # finished run: resumes at its end
    assert "resuming from the checkpoint at step 4" in capsys.readouterr().err


def test_cli_trains_with_the_log_mse_loss_and_the_card_says_so(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    tifffile.imwrite(data / "0.tif", (_clean_images(1)[0] * 60000).astype(np.uint16))
    out = tmp_path / "model"
    args = ["train", str(out), "--data", str(data), "--loss", "log-mse", "--steps", "2"]
    args += ["--backbone-kwargs", json.dumps(TINY), "--patch", "32", "--batch", "2"]
    assert main([*args, "--threads", "1", "--device", "cpu"]) == 0
    assert json.loads((out / "model.json").read_text())["config"]["loss"] == "log-mse"
    with pytest.raises(SystemExit):  # argparse refuses a loss the mode does not list
        main(["train", str(tmp_path / "x"), "--data", str(data), "--loss", "l1"])


def test_cli_averages_the_weights_and_reports_both_scores(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    tifffile.imwrite(data / "0.tif", (_clean_images(1)[0] * 60000).astype(np.uint16))
    out = tmp_path / "model"
    args = ["train", str(out), "--data", str(data), "--val-data", str(data / "0.tif")]
    args += ["--backbone-kwargs", json.dumps(TINY), "--patch", "32", "--batch", "2"]
    args += ["--steps", "2", "--val-every", "2", "--threads", "1", "--device", "cpu"]
    assert main([*args, "--average", "0.9"]) == 0
    assert "(last weights" in capsys.readouterr().err
    assert json.loads((out / "model.json").read_text())["config"]["average_decay"] == 0.9
    args[1] = str(tmp_path / "other")
    assert main([*args, "--average", "1"]) == 2  # not a decay: a clear error, no traceback
    assert "average_decay must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()  # refused before any output was made


def test_cli_fine_tunes_self_supervised_from_a_trained_model(tmp_path, capsys):
    data = tmp_path / "noisy"
    data.mkdir()
    for i, image in enumerate(_clean_images()):
        noisy = np.random.default_rng(i).poisson(image * 50 + 5).astype(np.uint16)
        tifffile.imwrite(data / f"{i}.tif", noisy)
    common = ["--backbone-kwargs", json.dumps(TINY), "--patch", "32", "--batch", "2",
              "--threads", "1", "--device", "cpu", "--steps", "2"]  # fmt: skip
    base = tmp_path / "base"
    assert main(["train", str(base), "--data", str(data), *common]) == 0
    tuned = tmp_path / "tuned"
    argv = ["train", str(tuned), "--mode", "n2v", "--data", str(data), "--init", str(base)]
    assert main([*argv, *common]) == 0
    card = json.loads((tuned / "model.json").read_text())
    assert card["mode"] == "n2v"
    assert card["config"]["init_weights"] == str(base.resolve() / "model.safetensors")
    assert main(["train", str(tmp_path / "x"), "--data", str(data), "--init", "nope"]) == 2
    assert "--init nope" in capsys.readouterr().err
