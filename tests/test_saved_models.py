"""Saved models: one per-user folder (movable by NAPARI_WNE_MODELS_DIR), listed by name,
loaded by `denoise(model=NAME)`, shown by `napari-wne models`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile

from napari_wne import denoise
from napari_wne.cli import main
from napari_wne.models import (
    USER_MODELS_ENV,
    get_model,
    saved_model_folder,
    saved_models,
    trained_weights,
    user_models_dir,
)
from test_adaptation import _start_model


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "my models"
    monkeypatch.setenv(USER_MODELS_ENV, str(folder))
    return folder


def test_the_folder_follows_the_environment_variable_else_a_per_user_one(tmp_path, monkeypatch):
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "here"))
    assert user_models_dir() == tmp_path / "here"
    monkeypatch.delenv(USER_MODELS_ENV)
    default = user_models_dir()
    assert default.is_absolute() and default.name == "models"
    assert default.parent.name.lower() == "napari-wne"


@pytest.mark.parametrize("name", ["", "a/b", "../up", "x.json", "two words", "-x", "unet-wne"])
def test_names_that_cannot_be_saved_under_are_refused_with_the_reason(models_dir, name):
    with pytest.raises(ValueError, match="model name"):
        saved_model_folder(name)


def test_a_saved_model_is_listed_loaded_by_name_and_shown_by_the_cli(models_dir, tmp_path, capsys):
    start = _start_model(tmp_path)
    assert saved_models() == {}
    main(["models"])
    assert "none yet" in capsys.readouterr().out
    target = saved_model_folder("my_adapted-1")
    shutil.copytree(start, target)
    (models_dir / "not-a-model").mkdir()  # folders without a model are not listed
    assert saved_models() == {"my_adapted-1": target}

    spec = get_model("my_adapted-1")
    assert spec.trained and spec.dims == (2,)
    assert trained_weights("my_adapted-1") == (target / "model.safetensors").resolve()
    image = np.random.default_rng(0).normal(100, 10, (48, 48)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # trained: no "untrained" warning
        by_name = denoise(image, model="my_adapted-1", verbose=False)
    np.testing.assert_array_equal(by_name, denoise(image, model=str(start), verbose=False))

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert str(models_dir) in out
    line = next(line for line in out.splitlines() if line.startswith("my_adapted-1"))
    assert "saved" in line and "unet" in line


def test_an_unknown_name_lists_the_saved_ones_too(models_dir, tmp_path):
    shutil.copytree(_start_model(tmp_path), saved_model_folder("mine"))
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*mine"):
        get_model("nope")


def test_the_command_line_takes_a_saved_name_and_lists_it_in_a_new_process(models_dir, tmp_path):
    shutil.copytree(_start_model(tmp_path), saved_model_folder("lab-scope"))
    image = np.random.default_rng(1).poisson(40, (40, 48)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", image)
    out = tmp_path / "out.tif"
    assert main(["denoise", str(tmp_path / "in.tif"), str(out), "--model", "lab-scope"]) == 0
    expected = denoise(image, model=str(saved_model_folder("lab-scope")), verbose=False)
    np.testing.assert_allclose(tifffile.imread(out), expected, rtol=1e-6)
    listed = subprocess.run(
        [sys.executable, "-m", "napari_wne.cli", "models"], capture_output=True, text=True,
        check=True, env={**os.environ, USER_MODELS_ENV: str(models_dir)},
    )  # fmt: skip
    assert any(line.startswith("lab-scope ") for line in listed.stdout.splitlines())
