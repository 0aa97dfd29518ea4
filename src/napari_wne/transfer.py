"""Moving a batch of tiles between host memory and the device, without stalls on CUDA.

On CUDA a copy from ordinary (pageable) host memory is staged by the driver through a
pinned buffer and blocks the host; from pinned memory it is a DMA that can run while
the host queues the next kernels (``non_blocking=True``). Pinned buffers come from
torch's caching host allocator, so after the first batch of a shape they cost no new
allocation, and torch holds a buffer back from reuse until the copies that use it have
finished. On the CPU (and MPS) nothing changes: `torch.from_numpy` shares the array's
memory and `.numpy()` the tensor's, with no copy at all.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_device", "to_host"]


def to_device(stack: np.ndarray, device: torch.device) -> torch.Tensor:
    """`stack` as a tensor on `device`; on CUDA through pinned memory, asynchronously."""
    host = torch.from_numpy(stack)
    if device.type != "cuda":
        return host.to(device)
    pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
    pinned.copy_(host)
    return pinned.to(device, non_blocking=True)


def to_host(tensor: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """`tensor` in `dtype` as a host array; on CUDA copied into pinned memory, and waited
    for before the array is handed out (the copy is asynchronous until then)."""
    if tensor.device.type != "cuda":
        return tensor.to("cpu", dtype).numpy()
    tensor = tensor.to(dtype)  # convert on the device: fewer bytes over the bus if narrower
    pinned = torch.empty(tensor.shape, dtype=dtype, pin_memory=True)
    pinned.copy_(tensor, non_blocking=True)
    torch.cuda.current_stream(tensor.device).synchronize()
    return pinned.numpy()
