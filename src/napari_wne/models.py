"""Named denoising models: a backbone, whether WNE wraps it, and its trained weights.

A model is built once per (name, spatial dims, device) in each process and reused, so
dask tasks and widget calls never rebuild it or carry it through a task graph. The
registry itself imports no torch (``napari-wne models`` lists it at once); building a
model, or reading one named by path, does.
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .backbones import BACKBONES
from .model_files import CARD_FILE, WEIGHTS_FILE, ZOO_PREFIXES
from .modes import DEFAULT_MODEL
from .routing import AUTO, CORRELATED_NOISE_MODEL, VOLUME_MODEL, WHITE_NOISE_MODEL

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelSpec",
    "UntrainedModelWarning",
    "get_model",
    "load_model",
    "saved_model_folder",
    "saved_models",
    "trained_weights",
    "user_models_dir",
    "warn_if_untrained",
]


class UntrainedModelWarning(UserWarning):
    """The model has no trained weights: its output is not a denoised image."""


@dataclass(frozen=True)
class ModelSpec:
    """A named model: which backbone, whether WNE wraps it, and where its weights live."""

    name: str
    backbone: str
    wne: bool
    description: str
    weights: str | None = None
    """Trained weights: a file name inside ``napari_wne/weights``, or an absolute path for a
    model named by path (see `napari_wne.model_io`); None if not trained."""
    zoo_dims: tuple[int, ...] | None = None
    """For a BioImage Model Zoo package: the dimensionality it declares."""
    halo: int | None = None
    """A halo the model declares (a zoo package's); None: the engine's default."""
    max_tile: tuple[int, ...] | None = None
    """The largest tile the model accepts (a zoo package of fixed size); None: any."""
    routed: bool = False
    """A choice, not a network: `denoise` measures the image's noise and runs the model
    `napari_wne.routing` picks. Its weights are the white-noise model's, used where no
    image is at hand to decide on (e.g. a speed probe)."""

    @property
    def trained(self) -> bool:
        """Whether trained weights exist: shipped with the package, or at the path given."""
        if self.weights is None:
            return False
        if Path(self.weights).is_absolute():
            return Path(self.weights).is_file()
        return resources.files("napari_wne").joinpath("weights", self.weights).is_file()

    @property
    def weights_path(self) -> Path | None:
        """The trained weights' file, or None for an untrained model."""
        if not self.trained:
            return None
        if Path(self.weights).is_absolute():
            return Path(self.weights)
        return Path(str(resources.files("napari_wne").joinpath("weights", self.weights)))

    @property
    def dims(self) -> tuple[int, ...]:
        """Instance dimensionalities it runs on: its training's, or 2 and 3 if untrained."""
        if self.zoo_dims is not None:
            return self.zoo_dims
        if not self.trained or self.backbone == "torchscript":
            return (2, 3)
        if Path(self.weights).is_absolute():
            card = Path(self.weights).with_name(CARD_FILE)
        else:
            card = resources.files("napari_wne").joinpath("weights", self.weights)
            card = card.parent.joinpath(CARD_FILE)
        if not card.is_file():  # a bare state dict: either, the loader checks the shapes
            return (2, 3)
        return (int(json.loads(card.read_text())["spatial_dims"]),)

    @property
    def equivariant(self) -> bool:
        """Whether the model is normalization-equivariant (wrapped, or by construction)."""
        spec = BACKBONES.get(self.backbone)  # None for a TorchScript module
        return self.wne or (spec is not None and spec.equivariant)


def _spec(backbone: str, wne: bool) -> ModelSpec:
    base = BACKBONES[backbone].description
    name = f"{backbone}-wne" if wne else backbone
    how = "wrapped with WNE (normalization-equivariant)" if wne else "plain, no normalization"
    if BACKBONES[backbone].equivariant:
        how = "equivariant by construction"
    # Trained weights, when shipped: weights/<name>/model.safetensors beside its model.json.
    return ModelSpec(name, backbone, wne, f"{base}; {how}", weights=f"{name}/{WEIGHTS_FILE}")


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            AUTO,
            "unet",
            True,
            f"picks {WHITE_NOISE_MODEL} for white noise, {VOLUME_MODEL} for white noise in "
            f"Z-stacks denoised in 3-D, and {CORRELATED_NOISE_MODEL} for spatially "
            "correlated noise, from the noise of one plane (napari_wne.routing)",
            weights=f"{WHITE_NOISE_MODEL}/{WEIGHTS_FILE}",
            routed=True,
        ),
        _spec("unet", True),
        _spec("unet", False),
        _spec("dncnn", True),
        _spec("dncnn", False),
        _spec("restormer", True),
        _spec("restormer", False),
        _spec("ne-dncnn", False),
        ModelSpec(
            "unet-wne-corr",
            "unet",
            True,
            "the UNet of unet-wne fine-tuned on spatially correlated camera noise (data that "
            "was registered, resampled, binned or smoothed on the camera); wrapped with WNE",
            weights=f"unet-wne-corr/{WEIGHTS_FILE}",
        ),
        ModelSpec(
            VOLUME_MODEL,
            "unet",
            True,
            "a 3-D UNet for Z-stacks: unet-wne inflated to 3-D (it starts as that model run "
            "plane by plane) and fine-tuned on volumes, so it also uses the neighbouring "
            "planes; never resamples Z; wrapped with WNE",
            weights=f"{VOLUME_MODEL}/{WEIGHTS_FILE}",
        ),
    )
}
"""Every model by name: each backbone plain and WNE-wrapped, the NE-arch baseline, and the
correlated-noise and 3-D UNets that `model="auto"` picks where they win
(`napari_wne.routing`)."""


def get_model(name: str) -> ModelSpec:
    """Look a model up by name, saved name or path (see `napari_wne.model_io`), with the
    names in the error. A plain name is a saved model before it is a relative path."""
    if name in MODELS:
        return MODELS[name]
    if name.startswith(ZOO_PREFIXES):
        return _zoo_spec(name)
    saved = saved_models().get(name)
    spec = model_spec_for(str(saved) if saved else name)
    if spec is None:
        known = ", ".join([*sorted(MODELS), *saved_models()])
        raise ValueError(
            f"unknown model {name!r}; choose one of: {known}, or give the path of a trained "
            "model folder, or NAME:PATH for a state dict of a registered model"
        )
    return spec


def _zoo_spec(name: str) -> ModelSpec:
    """A zoo package's spec (see `napari_wne.bioimageio_models`)."""
    from .bioimageio_models import ZOO_BACKBONE, split_zoo_string, zoo_info

    path, wrap = split_zoo_string(name)
    info = zoo_info(path)
    how = "wrapped with WNE" if wrap else "as packaged"
    desc = f"BioImage Model Zoo package {info.name!r} ({info.weights}), {how}, from {path}"
    return ModelSpec(
        name,
        ZOO_BACKBONE,
        wrap,
        desc,
        weights=str(path),
        zoo_dims=(info.spatial_dims,),
        halo=info.halo,
        max_tile=info.max_tile,
    )


USER_MODELS_ENV = "NAPARI_WNE_MODELS_DIR"
"""Environment variable that moves the folder of saved models (`user_models_dir`)."""

_SAVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def user_models_dir() -> Path:
    """The one home of the user's saved models (e.g. adapted in napari), one folder each.

    $NAPARI_WNE_MODELS_DIR if set, else the per-user data folder (platformdirs' when it is
    installed, as it is with napari; else $XDG_DATA_HOME or ~/.local/share).
    """
    if os.environ.get(USER_MODELS_ENV):
        return Path(os.environ[USER_MODELS_ENV]).expanduser()
    try:
        from platformdirs import user_data_dir

        base = Path(user_data_dir("napari-wne", appauthor=False))
    except ImportError:
        share = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        base = Path(share) / "napari-wne"
    return base / "models"


def saved_model_folder(name: str) -> Path:
    """The folder a model saved as `name` has (or will have); a ValueError says why a name
    cannot be one: it must be a plain word, and not a shipped model's name."""
    if not _SAVED_NAME.fullmatch(name):
        raise ValueError(
            f"model name {name!r}: use letters, digits, '-' and '_' (up to 64), starting "
            "with a letter or digit"
        )
    if name in MODELS:
        raise ValueError(f"model name {name!r} is a shipped model's; choose another name")
    return user_models_dir() / name


def saved_models() -> dict[str, Path]:
    """The user's saved models by name: the folders of `user_models_dir` with a model in."""
    home = user_models_dir()
    if not home.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(home.iterdir())
        if _SAVED_NAME.fullmatch(folder.name) and folder.name not in MODELS
        and (folder / CARD_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()
    }  # fmt: skip


def warn_if_untrained(spec: ModelSpec, stacklevel: int = 3) -> None:
    """Say plainly that an untrained model's output is not a denoised image."""
    if not spec.trained:
        warnings.warn(
            f"model {spec.name!r} has no trained weights yet: it runs with random initial "
            "weights, so its output is NOT a denoised image (useful only for testing)",
            UntrainedModelWarning,
            stacklevel=stacklevel,
        )


def trained_weights(model: str, option: str = "--init") -> Path:
    """The weights file behind a shipped model's name, a trained model folder (or its
    card), or a weights file: what fine-tuning and adaptation start from. Errors name
    `option`, the setting the user typed the model into."""
    if model in MODELS:
        spec = MODELS[model]
        if not spec.trained:
            raise ValueError(f"model {model!r} has no trained weights to start from")
        return Path(str(resources.files("napari_wne").joinpath("weights", spec.weights)))
    path = Path(saved_models().get(model, model)).expanduser().resolve()
    if path.is_dir() or path.name == CARD_FILE:
        path = (path if path.is_dir() else path.parent) / WEIGHTS_FILE
    if not path.is_file():
        known = ", ".join(name for name, spec in MODELS.items() if spec.trained)
        raise FileNotFoundError(
            f"{option} {model}: neither a trained model name ({known}), a model folder with "
            f"{WEIGHTS_FILE} and {CARD_FILE}, nor a weights file"
        )
    return path


def load_model(name: str, spatial_dims: int, device: str) -> nn.Module:
    """Build model `name` (or path) for `spatial_dims`-D instances on `device`, in eval mode.

    Untrained models start from fixed random weights (seed 0, so runs repeat); callers
    warn about them with `warn_if_untrained` every time, not only on the first build.
    Builds are cached; a weights file rewritten on disk (e.g. retrained) is read again.
    """
    spec = get_model(name)
    stamp = None
    if spec.trained and Path(spec.weights).is_absolute():
        stat = Path(spec.weights).stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    return _build_model(spec, spatial_dims, device, stamp)


@functools.lru_cache(maxsize=8)
def _build_model(
    spec: ModelSpec, spatial_dims: int, device: str, stamp: tuple[int, int] | None
) -> nn.Module:
    import torch

    from .backbones import build_backbone
    from .bioimageio_models import ZOO_BACKBONE, load_zoo_network
    from .model_io import load_trained
    from .wne import WNE

    if spec.backbone == ZOO_BACKBONE:
        return load_zoo_network(Path(spec.weights), spatial_dims, device, wrap=spec.wne)
    if spec.name not in MODELS:
        return load_model_string(spec.name, spatial_dims, device)
    if spec.trained:  # the weights file, with its model.json beside it
        weights = resources.files("napari_wne").joinpath("weights", spec.weights)
        with resources.as_file(weights) as path:
            return load_trained(path, device, spatial_dims=spatial_dims)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = build_backbone(spec.backbone, spatial_dims=spatial_dims)
    model = WNE(backbone) if spec.wne else backbone
    return model.to(device).eval()


# --- model strings: a registered name, "NAME:PATH", "wne:PATH" or a path (`napari_wne.model_io`)


def _parse(model: str) -> tuple[str | None, bool, Path]:
    """Split "NAME:PATH" / "wne:PATH" / "PATH" into (registry name, wrap, path)."""
    prefix, sep, rest = model.partition(":")
    if sep and (prefix in MODELS or prefix == "wne"):
        name = prefix if prefix in MODELS else None
        return name, prefix == "wne", Path(rest).expanduser()
    return None, False, Path(model).expanduser()


def _looks_like_path(model: str) -> bool:
    suffixes = (".safetensors", ".pt", ".pth", ".json", ".ts")
    return "/" in model or os.sep in model or model.lower().endswith(suffixes)


def model_spec_for(model: str) -> ModelSpec | None:
    """A `ModelSpec` for a model string naming a file or folder; None if it names none.

    Raises ValueError for a path that does not exist or a file that cannot be a model.
    """
    from .model_io import find_card, is_torchscript, read_model_card

    name, wrap, path = _parse(model)
    if not path.exists():
        if name or wrap or _looks_like_path(model):
            raise ValueError(f"model {model!r}: {path} does not exist")
        return None
    where = str(path.resolve())
    if name:
        if not path.is_file():
            raise ValueError(f"model {model!r}: {path} must be a weights file (.safetensors, .pt)")
        spec = MODELS[name]
        desc = f"{spec.description}; weights from {path}"
        return ModelSpec(model, spec.backbone, spec.wne, desc, weights=where)
    if is_torchscript(path):
        how = "wrapped with WNE" if wrap else "as it is (not wrapped)"
        return ModelSpec(
            model, "torchscript", wrap, f"TorchScript module {path}, {how}", weights=where
        )
    found = find_card(path)
    if found is None:
        raise ValueError(
            f"model {model!r}: {path} is neither a trained model folder (with {CARD_FILE}) nor "
            "a TorchScript file; for a bare state dict name its architecture, e.g. "
            f"'unet-wne:{path}'"
        )
    card = read_model_card(path)
    wne = wrap or card["wne"]
    dims, mode = card["spatial_dims"], card.get("mode", "")
    desc = f"{card['backbone']} trained {mode} ({dims}-D), from {found[0].parent}"
    return ModelSpec(model, card["backbone"], wne, desc, weights=str(found[1].resolve()))


def load_model_string(model: str, spatial_dims: int, device: str | torch.device) -> nn.Module:
    """Build the model a path-style model string names (see the module docstring)."""
    from .model_io import is_torchscript, load_backbone_weights, load_trained

    name, wrap, path = _parse(model)
    if name:
        spec = MODELS[name]
        return load_backbone_weights(
            spec.backbone, path, spatial_dims=spatial_dims, wne=spec.wne, device=device
        )
    if is_torchscript(path):
        return load_trained(path, device, wrap=wrap)
    return load_trained(path, device, wrap=True if wrap else None, spatial_dims=spatial_dims)
