"""Bring your own weights: load them safely and get a model ready for `denoise`.

Weight files are data, never code: ``.safetensors`` files hold tensors only, and every
other file goes through ``torch.load(weights_only=True)``, which refuses a pickle that
would import or call anything. A TorchScript file, by contrast, *is* a program (its own
restricted language, not Python); load one only from a source you trust.

A model can be named to ``denoise(model=...)`` (and to `napari_wne.models.load_model`, which
parses these strings) as:

- a registry name, e.g. ``"unet-wne"``;
- ``"PATH"``: a folder written by ``napari-wne train`` (``model.json`` and
  ``model.safetensors``), that folder's ``model.json``, or a weights file beside one;
  or a TorchScript file, used as it is;
- ``"wne:PATH"``: the same, wrapped with WNE (for a TorchScript module or a plain model);
- ``"NAME:PATH"``: a state dict (``.safetensors``, ``.pt``, ``.pth``) for registry model
  NAME at its default settings, e.g. ``"unet-wne:/models/unet.safetensors"``: the
  architecture (and whether WNE wraps it) comes from NAME, the weights from the file.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .backbones import BACKBONES, build_backbone
from .model_files import CARD_FILE, WEIGHTS_FILE
from .wne import WNE

__all__ = [
    "CARD_FILE",
    "WEIGHTS_FILE",
    "atomic_write",
    "build_from_card",
    "is_torchscript",
    "load_backbone_weights",
    "load_trained",
    "load_weights",
    "read_model_card",
    "save_weights",
]

CARD_FORMAT = "napari-wne-model"

_STATE_KEYS = ("state_dict", "model", "params", "params_ema", "net")
"""Keys under which checkpoints from common training codes keep their state dict."""


# --- weight files ---------------------------------------------------------------------------


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, or a ``.pt``/``.pth`` file loaded weights-only.

    Checkpoints that nest the state dict (under "state_dict", "model", "params", ...) are
    unwrapped. Raises ValueError for a pickle that would run code, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as err:  # safetensors raises its own error type for bad headers
            raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    if is_torchscript(path):
        raise ValueError(
            f"{path} is a TorchScript module, not a state dict; load it with "
            "napari_wne.model_io.load_trained (or pass it to denoise as model=PATH)"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise ValueError(f"{path} is not a PyTorch weights file: {err}") from None
        raise ValueError(
            f"refused to load {path}: {_unpickler_reason(err)}. A pickle can run anything on "
            "your machine, so weights are read as data only. Re-save it from a trusted session "
            "as safetensors (safetensors.torch.save_file(model.state_dict(), "
            "'weights.safetensors')) or as a plain state dict (torch.save(model.state_dict(), "
            "'weights.pt'))"
        ) from None
    except Exception as err:  # a corrupt or foreign file fails in many ways; say which file
        raise ValueError(f"could not read weights from {path}: {err!r}") from None
    return _state_dict_in(loaded, path)


def _unpickler_reason(err: Exception) -> str:
    """What the safe loader refused: the blocked global itself when torch names one.

    torch's message goes on to suggest loading with weights_only=False or allow-listing
    the global; neither is advice to pass on for a file that asks to run code.
    """
    text = str(err)
    blocked = re.search(r"GLOBAL\s+([\w.]+)", text)
    if blocked:
        return f"it asks for {blocked.group(1)}, a global the weights-only loader blocks"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            detail = line.split("WeightsUnpickler error:", 1)[-1].strip()
            detail = detail or (lines[i + 1] if i + 1 < len(lines) else "")
            return "the weights-only loader rejects it: " + detail.split(" Please use")[0][:300]
    advice = r"weights_only|Weights only load failed|documentation|trusted source"
    kept = [line for line in lines if not re.search(advice, line)]
    detail = kept[0][:300] if kept else type(err).__name__
    return f"the weights-only loader rejects it (it uses a pickle feature beyond data): {detail}"


def _state_dict_in(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        if loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
            return dict(loaded)
        for key in _STATE_KEYS:
            if isinstance(loaded.get(key), Mapping):
                return _state_dict_in(loaded[key], path)
    raise ValueError(
        f"{path} holds no state dict (a mapping from parameter names to tensors); found "
        f"{type(loaded).__name__}"
        + (f" with keys {sorted(loaded)[:8]}" if isinstance(loaded, Mapping) else "")
    )


def save_weights(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write a state dict as safetensors, atomically (a reader never sees half a file)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def is_torchscript(path: str | Path) -> bool:
    """Whether `path` is a TorchScript archive (a zip holding compiled code), by its contents."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _clean_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the prefixes that wrappers add (DataParallel's "module.", our WNE's "backbone.")."""
    state = dict(state)
    for prefix in ("module.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(_clean_keys(state), strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:600]
        raise ValueError(
            f"the weights in {source} do not fit this architecture "
            f"({type(module).__name__}); were they saved for another backbone or other "
            f"settings? {detail}"
        ) from None


# --- trained model folders ------------------------------------------------------------------


def find_card(path: Path) -> tuple[Path, Path] | None:
    """(model.json, weights file) for a folder, its model.json, or a weights file beside one."""
    if path.is_dir():
        card, weights = path / CARD_FILE, path / WEIGHTS_FILE
    elif path.name == CARD_FILE:
        card, weights = path, path.parent / WEIGHTS_FILE
    else:
        card, weights = path.parent / CARD_FILE, path
    return (card, weights) if card.is_file() else None


def read_model_card(path: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a trained model folder (or of the folder holding `path`).

    Checked field by field, so a hand-edited or half-copied card is refused with what is
    wrong, naming the file, rather than failing later inside the backbone's constructor.
    """
    found = find_card(Path(path))
    if found is None:
        raise FileNotFoundError(f"no {CARD_FILE} in or beside {path}")
    where = found[0]
    try:
        card = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{where} is not a readable model card ({type(err).__name__}: {err}); restore it "
            "from the folder `napari-wne train` wrote, or train the model again"
        ) from None
    if not isinstance(card, dict):
        raise ValueError(f"{where} is not a napari-wne model card (a JSON {type(card).__name__})")
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{where} is not a napari-wne model card (format {card.get('format')!r})")
    problems = _card_problems(card)
    if problems:
        raise ValueError(
            f"{where} is an incomplete or malformed model card: {'; '.join(problems)}. Restore "
            "it from the folder `napari-wne train` wrote, or train the model again"
        )
    return card


def _card_problems(card: Mapping[str, Any]) -> list[str]:
    """What is missing or of the wrong type in a model card (empty when it is sound)."""
    problems = []
    if "backbone" not in card:
        problems.append("no 'backbone'")
    elif card["backbone"] not in BACKBONES:
        problems.append(
            f"unknown backbone {card['backbone']!r} (known: {', '.join(sorted(BACKBONES))})"
        )
    if card.get("spatial_dims") not in (2, 3) or isinstance(card.get("spatial_dims"), bool):
        problems.append(f"'spatial_dims' must be 2 or 3, got {card.get('spatial_dims')!r}")
    if not isinstance(card.get("wne"), bool):
        problems.append(f"'wne' must be true or false, got {card.get('wne')!r}")
    if not isinstance(card.get("backbone_kwargs", {}), dict):
        problems.append(f"'backbone_kwargs' must be an object, got {card['backbone_kwargs']!r}")
    channels = card.get("channels", 1)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        problems.append(f"'channels' must be a positive integer, got {channels!r}")
    eps = card.get("wne_eps", 0.0)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        problems.append(f"'wne_eps' must be a number >= 0, got {eps!r}")
    return problems


def build_from_card(
    card: Mapping[str, Any], *, wrap: bool | None = None, where: str | Path = "model card"
) -> nn.Module:
    """The architecture a card describes, with fresh weights (WNE-wrapped as trained).

    `where` names the card in errors (its path, when it came from a file).
    """
    problems = _card_problems(card)
    if problems:
        raise ValueError(f"{where} is an incomplete or malformed model card: {'; '.join(problems)}")
    kwargs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in card.get("backbone_kwargs", {}).items()
    }
    try:
        backbone = build_backbone(
            card["backbone"],
            spatial_dims=card["spatial_dims"],
            channels=card.get("channels", 1),
            **kwargs,
        )
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{where}: backbone {card['backbone']!r} cannot be built with backbone_kwargs "
            f"{card.get('backbone_kwargs')!r} ({err}); restore the card `napari-wne train` "
            "wrote, or train the model again"
        ) from None
    wne = card["wne"] if wrap is None else wrap
    return WNE(backbone, eps=card.get("wne_eps", 0.0)) if wne else backbone


def load_trained(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    wrap: bool | None = None,
    spatial_dims: int | None = None,
) -> nn.Module:
    """A ready model in eval mode from a trained folder or a TorchScript file.

    `wrap` None keeps the model as trained (a TorchScript module unwrapped); True or False
    forces the WNE wrapper on or off. `spatial_dims`, when given, must match the model's.
    """
    path = Path(path).expanduser()
    if is_torchscript(path):
        with warnings.catch_warnings():
            # TorchScript is deprecated in recent torch, but it is what many users have.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
        model = WNE(module) if wrap else module
        return model.to(device).eval()
    found = find_card(path)
    if found is None:
        if not path.exists():
            raise FileNotFoundError(f"model {path} does not exist")
        raise ValueError(
            f"{path} is neither a trained model folder (with {CARD_FILE}) nor a TorchScript "
            "file; for a bare state dict, name its architecture, e.g. 'unet-wne:PATH'"
        )
    card = read_model_card(path)
    if spatial_dims is not None and spatial_dims != card["spatial_dims"]:
        raise ValueError(
            f"model {path} was trained on {card['spatial_dims']}-D instances, but "
            f"{spatial_dims}-D instances were asked for; pick axes with "
            f"{'no Z' if card['spatial_dims'] == 2 else 'Z'}, or train a {spatial_dims}-D model"
        )
    model = build_from_card(card, wrap=wrap, where=found[0])
    target = model.backbone if isinstance(model, WNE) else model
    _load_into(target, load_weights(found[1]), str(found[1]))
    return model.to(device).eval()


def load_backbone_weights(
    backbone: str,
    path: str | Path,
    *,
    spatial_dims: int = 2,
    wne: bool = True,
    device: str | torch.device = "cpu",
    **backbone_kwargs: Any,
) -> nn.Module:
    """A registered backbone with weights from a state-dict file, WNE-wrapped if `wne`."""
    module = build_backbone(backbone, spatial_dims=spatial_dims, **backbone_kwargs)
    _load_into(module, load_weights(path), str(path))
    model = WNE(module) if wne else module
    return model.to(device).eval()
