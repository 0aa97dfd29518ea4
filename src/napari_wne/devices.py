"""Pick the torch device, and say which one and why: a silently unused GPU wastes hours."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "batch_voxels", "bytes_per_voxel", "resolve_device"]


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


BATCH_VOXELS = 2_000_000
"""Voxels per forward pass where nothing better is known (MPS): a few hundred MB for the UNet."""

CPU_BATCH_VOXELS = 65_536
"""Voxels per forward pass on a CPU: the best of the batch sweep of
`benchmarks/bench_devices.py` (docs/performance.md). Throughput fell steadily beyond it
(activations outgrow the caches), so a CPU takes one large tile, or a few small ones."""

CUDA_MEMORY_SHARE = 0.6
"""Of the GPU memory free at the start, the share a batch's activations may fill."""


def batch_voxels(model: torch.nn.Module, device: torch.device, spatial_dims: int) -> int:
    """Voxels per forward pass for `model` on `device`.

    CUDA: the free memory's `CUDA_MEMORY_SHARE` over the model's bytes per voxel, measured
    once on a small probe at the model's precision. CPU: `CPU_BATCH_VOXELS`. Elsewhere:
    `BATCH_VOXELS`. The out-of-memory back-off (`napari_wne.backoff`) covers what the
    estimate misses.
    """
    if device.type == "cpu":
        return CPU_BATCH_VOXELS
    if device.type != "cuda":
        return BATCH_VOXELS
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, int(CUDA_MEMORY_SHARE * free / bytes_per_voxel(model, device, spatial_dims)))


def bytes_per_voxel(model: torch.nn.Module, device: torch.device, spatial_dims: int) -> float:
    """Peak CUDA memory of one inference pass over a probe batch, per input voxel."""
    probe = (2, 1) + ((256, 256) if spatial_dims == 2 else (32, 64, 64))
    x = torch.randn(probe, device=device)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    return max(peak, 1) / x.numel()
