"""What the engine refuses: input a plain model cannot compute on, results that are not finite.

Both say what happened and what to do (rescale, or use a WNE model), never hand on NaN
or infinity as a result.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_float32_range", "check_result"]


def check_float32_range(data: np.ndarray, model: str) -> None:
    """Plain models compute on raw intensities in float32: refuse what float32 cannot hold."""
    if data.dtype.kind != "f" or data.dtype.itemsize <= 4:
        return
    largest = float(np.abs(data).max())
    if largest > float(np.finfo(np.float32).max):
        raise ValueError(
            f"the image has values up to {largest:.4g}, beyond the float32 range (3.4e38) in "
            f"which the plain model {model!r} computes; rescale the image (e.g. divide it by "
            "1e30), or use a WNE model (e.g. 'unet-wne'), which normalizes in float64 first"
        )


def check_result(
    result: np.ndarray, data: np.ndarray, region: tuple[slice, ...], model: str, wne: bool
) -> None:
    """Never hand on NaN or infinity as a result: say why it happened and what to do."""
    finite = np.isfinite(result)
    if finite.all():
        return
    span = f"{float(data.min()):.4g} to {float(data.max()):.4g}"
    where = ", ".join(f"{r.start}:{r.stop}" for r in region)
    problem = (
        f"model {model!r} gave {int(finite.size - finite.sum())} NaN or infinite values "
        f"in the block at [{where}] (input values {span})"
    )
    if wne:
        advice = f"the denoised intensities do not fit in {result.dtype}; rescale the image"
        advice += (
            " (e.g. divide it by 1e6)"
            if result.dtype == np.float64
            else ", or pass it as float64 (with dtype='input' to keep float64)"
        )
    else:
        advice = (
            "a plain model computes on raw intensities in float32; rescale the image to a "
            "moderate range (e.g. 0 to 1000), or use a WNE model (e.g. 'unet-wne'), which "
            "normalizes in float64 first"
        )
    raise ValueError(f"{problem}: {advice}")
