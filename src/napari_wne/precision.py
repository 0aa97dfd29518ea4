"""The precision the backbone computes in: the modes, what each device supports, "auto".

Only the backbone ever runs in low precision. The WNE statistics, the normalization and
the denormalization stay in float64 (the engine's tiles) or float32 (`napari_wne.wne`),
whatever is chosen here: a half-precision sum over a megavoxel tile would lose the
equivariance, while the backbone only sees values of order one, which bfloat16 and
float16 hold to 3 and 4 significant digits.

The backbone runs under `torch.autocast`, which computes convolutions and matrix products
in the low precision and keeps reductions (normalization layers, softmax) in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from .modes import PRECISION, Precision
from .wne import WNE

__all__ = [
    "CPU_AUTO",
    "PRECISIONS",
    "Autocast",
    "Precision",
    "resolve_precision",
    "supported_precisions",
    "with_precision",
]

PRECISIONS: tuple[str, ...] = PRECISION.values
"""Every mode, "auto" first: the CLI's choices and the widget's combo are read from here."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

CPU_AUTO: dict[str, tuple[str, ...]] = {
    "unet": ("float16", "bfloat16"),
    "dncnn": ("float16", "bfloat16"),
    "restormer": ("float16", "bfloat16"),
}
"""What "auto" computes in on a CPU, per backbone architecture (float32 for the rest, e.g.
"ne-dncnn" or a TorchScript module): the precisions measured faster than float32 at a
PSNR loss under `MAX_AUTO_LOSS_DB`, fastest first, as `benchmarks/bench_devices.py`
measured them for the shipped WNE models on the real microscopy pairs (docs/performance.md:
a Xeon with AMX and AVX-512 FP16/BF16, and an EPYC with AVX-512 BF16 only). "auto" takes
the first this CPU has native units for (`cpu_has_units`; emulated, it runs slowly), and
float32 if none. Speed is the architecture's, so a model trained by the user, loaded by
path, gets the same pick as the shipped one. A plain model's float16 pick gives way to
float32 (raw intensities overflow float16; see `resolve_precision`).
"""

MAX_AUTO_LOSS_DB = 0.05
"""The most PSNR (dB, mean over the real pairs) that "auto" may trade for speed."""


def cpu_has_units(precision: str) -> bool:
    """Whether this CPU computes `precision` natively, as oneDNN sees it: bfloat16 with
    AMX or AVX-512 BF16, float16 with AMX-FP16 or AVX-512 FP16. float32 always."""
    if precision == "float32":
        return True
    name = {"bfloat16": "_is_mkldnn_bf16_supported", "float16": "_is_mkldnn_fp16_supported"}
    mkldnn = getattr(torch.backends, "mkldnn", None)
    check = getattr(getattr(torch.ops, "mkldnn", None), name[precision], None)
    if mkldnn is None or not mkldnn.is_available() or check is None:
        return False
    try:
        return bool(check())
    except RuntimeError:
        return False


def supported_precisions(device: torch.device | str) -> tuple[str, ...]:
    """The precisions (not "auto") this device can compute in natively."""
    device = torch.device(device)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device.index or 0)
        return ("float32", "bfloat16", "float16") if major >= 8 else ("float32", "float16")
    if device.type == "mps":
        return ("float32", "float16")
    return ("float32", "bfloat16", "float16")


def resolve_precision(
    precision: str, device: torch.device | str, backbone: str, normalized: bool = True
) -> tuple[str, str]:
    """The concrete precision for a `backbone` (architecture name) on `device`, and a
    short reason for the user.

    "auto": bfloat16 on CUDA GPUs that have it (compute capability 8 and newer), float16
    on older ones, float32 on MPS; on a CPU, the first precision of `CPU_AUTO` that it has
    units for. A model without WNE (`normalized=False`) sees raw intensities, which
    overflow float16 above 65504: "auto" gives it float32 wherever bfloat16 is not the
    pick.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    device = torch.device(device)
    supported = supported_precisions(device)
    if precision != "auto":
        if precision not in supported:
            raise ValueError(
                f"precision {precision!r} is not supported on {device} (it has "
                f"{', '.join(supported)}); use precision='auto' or one of those"
            )
        return precision, f"precision {precision}, as asked"
    if device.type == "cuda":
        choice = "bfloat16" if "bfloat16" in supported else "float16"
        why = "this GPU computes bfloat16" if choice == "bfloat16" else "no bfloat16 on this GPU"
    elif device.type == "cpu":
        ranked = CPU_AUTO.get(backbone, ())
        usable = [p for p in ranked if cpu_has_units(p)]
        if usable:
            choice = usable[0]
            why = f"measured faster at under {MAX_AUTO_LOSS_DB} dB loss"
            if choice != ranked[0]:
                why += f" (this CPU has no {ranked[0]} units)"
        elif ranked:
            choice, why = "float32", f"this CPU has no {' or '.join(ranked)} units"
        else:
            choice, why = "float32", "no faster precision measured for this network on a CPU"
    else:
        choice, why = "float32", f"nothing faster measured on {device.type}"
    if choice == "float16" and not normalized:
        choice, why = "float32", "raw intensities (no WNE) overflow float16"
    return choice, f"precision {choice}, chosen automatically: {why}"


class Autocast(nn.Module):
    """Run `module` under `torch.autocast` in `dtype`, and hand back float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            y = self.module(x).float()
        # One inf or NaN makes the sum non-finite, and float16 values cannot add up to
        # float32's overflow: checking the sum is exact, and 15x cheaper than an
        # elementwise isfinite over the tile (3 % of a float16 run on a CPU).
        if self.dtype == torch.float16 and not bool(torch.isfinite(y.sum())):
            # An activation passed float16's 65504 (an extreme outlier in the tile):
            # this pass again in float32 rather than a result with inf in it.
            y = self.module(x)
        return y

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}"


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """`model` computing in `precision`; a WNE model keeps its wrapper outside, in float.

    Returns a new wrapper (a WNE model gets a new, light WNE shell around the same
    backbone), never changing the model given: it is shared by every run in the process.
    """
    if isinstance(model, WNE):
        backbone = model.backbone
        if precision != "float32":
            backbone = Autocast(backbone, DTYPES[precision])
        return WNE(backbone, residual=model.residual, eps=model.eps)
    return model if precision == "float32" else Autocast(model, DTYPES[precision])
