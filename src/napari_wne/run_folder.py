"""What a training run keeps in its output folder, and how it reads it back.

A run writes ``checkpoint.pt`` as it goes and, at the end, ``model.safetensors`` with its
card ``model.json``. These live apart from the training loop (`napari_wne.training`)
because they are about trust, not learning: a checkpoint is loaded as data only, a file we
did not write is refused and never deleted, a run resumes only with the settings it began
with, and every file is replaced atomically so a killed run never leaves a half-written one.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import signal
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .model_io import (
    CARD_FILE,
    CARD_FORMAT,
    WEIGHTS_FILE,
    _unpickler_reason,
    atomic_write,
    save_weights,
)

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KEYS = ("config", "step", "seconds", "model", "optimizer", "scheduler")
"""What every checkpoint holds (besides ``format``); the training loop adds more."""


def checkpoint_step(output_dir: str | Path) -> int | None:
    """The step of the checkpoint in `output_dir` (where a rerun resumes), or None."""
    path = Path(output_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return int(read_checkpoint(path)["step"])


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Our checkpoint in `path`, loaded as data only; anything else is refused, never used
    and never deleted (the folder may hold another tool's files)."""
    advice = (
        "it was not written by napari-wne train: move it away, or train into another output folder"
    )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"refused to load {path}: {_unpickler_reason(err)}; {advice}") from None
    except Exception as err:  # a foreign or damaged file fails in many ways
        raise ValueError(
            f"{path} is not a readable training checkpoint ({type(err).__name__}: {err}); {advice}"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing or saved.get("format") != 1 or not isinstance(saved.get("config"), str):
        found = sorted(map(str, saved))[:8] if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(
            f"{path} is not a napari-wne training checkpoint (it lacks {missing or ['format 1']}; "
            f"found {found}); {advice}"
        )
    return saved


def check_same_settings(
    saved: dict[str, Any],
    current: dict[str, Any],
    defaults: dict[str, Any],
    may_change: Collection[str],
    where: Path,
) -> None:
    """Refuse to resume a run whose settings differ from the checkpoint's, naming each.

    A field added since the checkpoint was written counts as its value in `defaults`
    there; the fields in `may_change` do not change what is computed and are not compared.
    """
    saved = {**{k: defaults[k] for k in current if k in defaults}, **saved}
    differ = sorted(
        k
        for k in set(saved) | set(current)
        if k not in may_change and saved.get(k) != current.get(k)
    )
    if differ:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ)
        raise ValueError(
            f"{where} holds a checkpoint of a run with other settings ({details}); resume with "
            "the same settings, or choose a new output folder"
        )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Replace the checkpoint atomically: a kill mid-write keeps the previous one."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn a first Ctrl-C into a request to stop after the current step (checked by caller),
    so the checkpoint written then is whole.

    A second Ctrl-C interrupts at once. Outside the main thread nothing changes.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if requested.is_set():
            signal.default_int_handler(signum, frame)
        requested.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def machine(device: torch.device) -> dict[str, Any]:
    """Where a run trained, for its card: budgets in seconds mean little without it."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def export_model(
    out_dir: Path,
    model: nn.Module,
    backbone: nn.Module,
    config: dict[str, Any],
    seconds: float,
    scores: dict[str, float | None],
    device: torch.device,
    held_out: dict[str, Any] | None = None,
) -> None:
    """Write model.safetensors (the backbone's weights) and model.json (how to rebuild it).

    `config` is the run's settings as a dict; `scores` its ``final_val_psnr`` and
    ``val_input_psnr``.
    """
    save_weights(backbone.state_dict(), out_dir / WEIGHTS_FILE)
    card = {
        "format": CARD_FORMAT,
        "version": 1,
        **{k: config[k] for k in ("backbone", "wne", "wne_eps", "spatial_dims")},
        "channels": 1,
        "backbone_kwargs": config["backbone_kwargs"],
        "mode": config["mode"],
        "steps": config["steps"],
        "wall_time_s": round(seconds, 2),
        "final_val_psnr": scores["final_val_psnr"],
        "val_input_psnr": scores["val_input_psnr"],
        **({"held_out_loss": held_out} if held_out else {}),
        "parameters": sum(p.numel() for p in model.parameters()),
        "machine": machine(device),
        "napari_wne": __version__,
        "config": config,
    }
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(out_dir / CARD_FILE, lambda tmp: Path(tmp).write_text(text))
