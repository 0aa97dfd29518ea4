"""The WNE wrapper: normalize an instance, run any backbone, undo the normalization.

f(y) = std(y) * g((y - mean(y)) / std(y)) + mean(y) makes *any* backbone g exactly
equivariant to brightness and contrast: f(a*y + b) = a*f(y) + b for a > 0
(Saied & Fleuret, ICML 2026). Statistics are pooled over every channel and voxel of
one instance (one batch element), in the population form.
"""

from __future__ import annotations

import torch
from torch import nn

from .normalization import instance_stats

__all__ = ["WNE", "instance_stats"]


def _per_instance(value: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
    """One statistic per instance of `y` (a scalar is shared), shaped (N, 1, 1, ...)."""
    stat_dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
    flat = torch.as_tensor(value, dtype=stat_dtype, device=y.device).reshape(-1)
    view = (y.shape[0],) + (1,) * (y.ndim - 1)
    return flat.expand(y.shape[0]).reshape(view) if flat.numel() == 1 else flat.reshape(view)


def _on_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move only when needed: a traced export (TorchScript) then records no fixed device,
    and runs wherever it is loaded (CPU or GPU)."""
    return x if x.device == device else x.to(device)


class WNE(nn.Module):
    """Wrap a backbone mapping (N, C, *spatial) to the same shape so it becomes NE.

    Parameters
    ----------
    backbone:
        Any module; it sees zero-mean, unit-std instances and never raw intensities.
    residual:
        ``False``: ``f(y) = s·g(T(y)) + m`` (the backbone predicts the clean image).
        ``True``: ``f(y) = y - s·g(T(y))`` (the backbone predicts the noise).
    eps:
        Guard added to the std in the *normalizing* division, as in the paper's code.
        ``0.0`` (the default) gives the paper's exact definition, T(y) = 0 for a constant
        instance, and exact equivariance for every a > 0. A positive eps trades exact
        equivariance for dim instances (a*std(y) near eps) against the paper's numerics.
    """

    takes_statistics = True
    """It normalizes by statistics it can be given (`napari_wne.normalization`)."""

    def __init__(self, backbone: nn.Module, *, residual: bool = False, eps: float = 0.0) -> None:
        super().__init__()
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.backbone = backbone
        self.residual = residual
        self.eps = float(eps)

    def forward(
        self, y: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Denoise a batch (N, C, *spatial); each batch element is normalized on its own.

        `stats` = (mean, std), each broadcastable to (N, 1, ...), replaces the statistics
        of `y` itself: a tile of a large image can then be normalized by the statistics of
        its whole image. Any statistics that follow y -> a*y + b keep the map equivariant.
        """
        if y.ndim < 3:
            raise ValueError(
                f"WNE expects a batch shaped (N, C, *spatial), got shape {tuple(y.shape)}"
            )
        if stats is None:
            mean, std = instance_stats(y)
        else:
            mean, std = (_per_instance(s, y) for s in stats)
        # A constant instance has std == 0: divide by 1 instead, so T(y) = 0 exactly and
        # the output s*g(0) + m collapses to the constant m (never 0/0 = NaN).
        divisor = torch.where(std > 0, std + self.eps, torch.ones_like(std))
        normalized = (y.to(mean.dtype) - mean) / divisor
        g = _on_device(self.backbone(self._backbone_input(normalized, y)), y.device)
        g = g.to(mean.dtype)
        if g.shape != y.shape:
            raise RuntimeError(
                f"backbone changed the shape {tuple(y.shape)} -> {tuple(g.shape)}; "
                "WNE needs a backbone whose output matches its input"
            )
        out = y.to(mean.dtype) - std * g if self.residual else std * g + mean
        return out.to(torch.promote_types(y.dtype, torch.float32))

    def _backbone_input(self, normalized: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The normalized batch on the backbone's device, in the dtype it computes in.

        float64 input (the engine's, so that huge offsets or intensities survive the
        statistics) reaches a float32 backbone as float32: normalized values are of order
        one, so nothing is lost. Other input keeps its dtype, as training expects.
        """
        parameter = next(self.backbone.parameters(), None)
        if parameter is None:  # nothing fixes its dtype or device
            return normalized.to(y.dtype)
        dtype = parameter.dtype if y.dtype == torch.float64 else y.dtype
        return _on_device(normalized, parameter.device).to(dtype)

    def extra_repr(self) -> str:
        return f"residual={self.residual}, eps={self.eps}"
