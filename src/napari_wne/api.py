"""`denoise`: the one headless entry point that the CLI and the napari widget call."""

from __future__ import annotations

import sys
from typing import Literal

import dask.array as da
import numpy as np
import torch

from .axes import InstanceLayout, parse_axes
from .devices import resolve_device
from .models import DEFAULT_MODEL, get_model, load_model, warn_if_untrained

__all__ = ["denoise"]

OutputDtype = Literal["float32", "input"]


def denoise(
    image: np.ndarray | da.Array,
    model: str = DEFAULT_MODEL,
    *,
    axes: str | None = None,
    device: str | torch.device = "auto",
    dtype: OutputDtype = "float32",
    batch_size: int | None = None,
    verbose: bool = True,
) -> np.ndarray | da.Array:
    """Denoise a 2D image, a volume, a time-lapse or a multichannel stack.

    Parameters
    ----------
    image:
        A numpy array, or a dask array (then the result is a lazy dask array too).
    model:
        A name from ``napari_wne.MODELS``; the default is the fast UNet wrapped with WNE.
    axes:
        One letter per dimension from "TCZYX". It decides what one instance is: each YX
        plane, or each ZYX volume when Z is named; every T and C index is denoised on its
        own. Needed for anything but a 2D array.
    device:
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    dtype:
        "float32" (default), or "input" to round and clip back to the input's dtype.
    batch_size:
        Instances per forward pass; default 8 planes or 1 volume.
    verbose:
        Print the model and device used to stderr (the device is never chosen silently).
    """
    spec = get_model(model)
    warn_if_untrained(spec)
    array = image if isinstance(image, da.Array) else _as_numpy(image)
    _check_dtype(array.dtype)
    if array.size == 0:
        raise ValueError(f"the image is empty (shape {tuple(array.shape)}); nothing to denoise")
    layout = parse_axes(axes, array.shape)
    torch_device, reason = resolve_device(device)
    if dtype not in ("float32", "input"):
        raise ValueError(f"dtype must be 'float32' or 'input', got {dtype!r}")
    out_dtype = np.dtype(np.float32) if dtype == "float32" else array.dtype
    if batch_size is None:
        batch_size = 8 if layout.spatial_dims == 2 else 1
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if verbose:
        print(
            f"napari-wne: model {spec.name}, {layout.spatial_dims}D instances "
            f"({layout.spatial_axes}), {reason}",
            file=sys.stderr,
        )

    def run(block: np.ndarray) -> np.ndarray:
        _check_finite(block)
        model_ = load_model(spec.name, layout.spatial_dims, str(torch_device))
        result = _denoise_instances(block, layout, model_, torch_device, batch_size)
        return _cast(result, out_dtype)

    if isinstance(array, da.Array):
        # Each block must hold whole instances: spatial axes in one chunk, batch axes free.
        whole = {layout.axes.index(a): -1 for a in layout.spatial_axes}
        meta = np.empty((0,) * array.ndim, dtype=out_dtype)  # so dask never calls run on a dummy
        return array.rechunk(whole).map_blocks(run, dtype=out_dtype, meta=meta)
    return run(array)


def _as_numpy(image: object) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "__array__") or isinstance(image, (list, tuple)):
        return np.asarray(image)
    raise TypeError(
        f"image must be a numpy or dask array, got {type(image).__name__}; "
        "read files with tifffile.imread or pass a path to the CLI"
    )


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind in "iuf":
        return
    kinds = {"b": "boolean (a mask?)", "c": "complex", "O": "object", "U": "text", "S": "bytes"}
    what = kinds.get(dtype.kind, str(dtype))
    raise TypeError(
        f"cannot denoise a {what} image (dtype {dtype}); pass integer or float intensities"
    )


def _check_finite(block: np.ndarray) -> None:
    if block.dtype.kind != "f":
        return
    finite = np.isfinite(block)
    if finite.all():
        return
    n_nan = int(np.isnan(block).sum())
    n_inf = int((~finite).sum()) - n_nan
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise ValueError(
        f"the image has {n_nan} NaN and {n_inf} infinite pixel(s) (first at index {first}); "
        "replace them first, e.g. with numpy.nan_to_num or by filling from the neighbours"
    )


def _denoise_instances(
    block: np.ndarray,
    layout: InstanceLayout,
    model: torch.nn.Module,
    device: torch.device,
    batch_size: int,
) -> np.ndarray:
    """Run the model over every instance of `block`; returns float32 in `block`'s layout."""
    moved = np.transpose(block, layout.permutation)
    batch_shape = moved.shape[: layout.n_batch_axes]
    spatial_shape = moved.shape[layout.n_batch_axes :]
    instances = moved.reshape((-1, *spatial_shape))
    out = np.empty(instances.shape, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(instances), batch_size):
            chunk = np.ascontiguousarray(instances[start : start + batch_size], dtype=np.float32)
            x = torch.from_numpy(chunk).unsqueeze(1).to(device)
            out[start : start + batch_size] = model(x)[:, 0].float().cpu().numpy()
    return out.reshape(batch_shape + spatial_shape).transpose(layout.inverse_permutation)


def _cast(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(result), info.min, info.max).astype(dtype)
    return result.astype(dtype, copy=False)
