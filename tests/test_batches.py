"""Training batches drawn by worker processes: the same run whatever their number, and
an exact resume (`napari_wne.batches`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_wne.batches import Batches
from napari_wne.cli import main
from napari_wne.datasets import NoiseConfig
from napari_wne.model_io import load_weights
from napari_wne.training import CHECKPOINT_FILE, TrainConfig, train

TINY = {"widths": (8, 16), "blocks": 1}


def _images(n: int = 3, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(0.1, 0.9, (size, size)).astype(np.float32) for _ in range(n)]


def _config(tmp_path, name: str, **overrides) -> TrainConfig:
    settings = {
        "output_dir": tmp_path / name,
        "backbone_kwargs": TINY,
        "patch_size": 32,
        "batch_size": 2,
        "steps": 12,
        "lr": 3e-3,
        "checkpoint_every": 4,
        "validate_every": 100,
        "threads": 1,
        "device": "cpu",
        "noise": NoiseConfig(),  # mixed noise and jitter: every random draw counts
    }
    settings.update(overrides)
    return TrainConfig(**settings)


def _data(mode: str) -> dict:
    return {"clean_images" if mode == "supervised" else "noisy_images": _images()}


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_weights(folder / "model.safetensors")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batch_k_depends_on_the_seed_and_k_alone(tmp_path):
    batches = Batches(_config(tmp_path, "a"), _images(), None, None)
    again = Batches(_config(tmp_path, "b"), _images(), None, None)
    other_seed = Batches(_config(tmp_path, "c", seed=1), _images(), None, None)
    fifth = batches.draw_step(5)
    assert torch.equal(fifth[0], again.draw_step(5)[0])
    assert torch.equal(fifth[1], again.draw_step(5)[1])
    assert not torch.equal(fifth[0], batches.draw_step(6)[0])
    assert not torch.equal(fifth[0], other_seed.draw_step(5)[0])


@pytest.mark.parametrize("mode", ["supervised", "n2v"])
def test_a_run_is_the_same_whatever_the_number_of_workers(tmp_path, mode):
    one = train(_config(tmp_path, "one", mode=mode, workers=1), **_data(mode))
    two = train(_config(tmp_path, "two", mode=mode, workers=2), **_data(mode))
    here = train(_config(tmp_path, "here", mode=mode), **_data(mode))
    assert _same(_weights(one), _weights(two))
    assert not _same(_weights(one), _weights(here))  # in-process draws are other batches


def test_a_run_with_workers_resumes_exactly(tmp_path):
    whole = train(_config(tmp_path, "whole", workers=2), **_data("supervised"))
    config = _config(tmp_path, "cut", workers=2)

    def stop_at_seven(progress) -> None:
        if progress.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, progress=stop_at_seven, **_data("supervised"))
    assert torch.load(config.output_dir / CHECKPOINT_FILE, weights_only=True)["step"] == 7
    train(config, **_data("supervised"))
    assert _same(_weights(whole), _weights(config.output_dir))


def test_a_negative_number_of_workers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        _config(tmp_path, "bad", workers=-1)


def test_cli_trains_with_workers(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    tifffile.imwrite(data / "0.tif", (_images(1, 48)[0] * 60000).astype(np.uint16))
    out = tmp_path / "model"
    args = ["train", str(out), "--data", str(data), "--backbone-kwargs", json.dumps(TINY)]
    args += ["--patch", "32", "--batch", "2", "--steps", "3", "--threads", "1"]
    assert main([*args, "--device", "cpu", "--workers", "2"]) == 0
    assert json.loads((out / "model.json").read_text())["config"]["workers"] == 2
