"""Pick the torch device, and say which one and why: a silently unused GPU wastes hours."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "resolve_device"]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    """Device names usable here, best first: each ``cuda:N``, then ``mps``, then ``cpu``."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return [*names, "cpu"]


def resolve_device(device: str | torch.device = "auto") -> tuple[torch.device, str]:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a device.

    Returns the device and a one-line reason, for the caller to show the user.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            return torch.device("cuda:0"), f"device cuda:0 ({gpu}), chosen automatically"
        if _mps_available():
            return torch.device("mps"), "device mps (Apple GPU), chosen automatically"
        return torch.device("cpu"), "device cpu, chosen automatically: no CUDA or MPS GPU found"
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count()
        index = chosen.index or 0
        if index >= count:
            raise ValueError(
                f"device {device!r} asked for, but this machine has {count} CUDA GPU(s) "
                f"visible to torch {torch.__version__}; use device='auto' or 'cpu'"
            )
        chosen = torch.device("cuda", index)
        return chosen, f"device {chosen} ({torch.cuda.get_device_name(index)}), as asked"
    if chosen.type == "mps" and not _mps_available():
        raise ValueError("device 'mps' asked for, but MPS is not available; use 'auto' or 'cpu'")
    if chosen.type not in {"cpu", "mps"}:
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda:N' or 'mps'")
    return chosen, f"device {chosen.type}, as asked"
