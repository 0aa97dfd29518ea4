"""BioImage Model Zoo packages as models: ``"bioimageio:PATH"`` and ``"wne+bioimageio:PATH"``.

A zoo package (a ``.zip``, or a folder or its ``rdf.yaml``/``bioimageio.yaml``) describes
a network, the sizes it accepts, the halo it needs and the processing around it. Here it
becomes one `ZooNetwork`, an ``nn.Module`` mapping (N, 1, *spatial) to the same shape like
every other model, so the tiled engine runs it unchanged:

- each tile is padded at its far end to a size the package accepts (``min + n*step``,
  or its fixed size) and cropped back, so any tile the tiler hands over works;
- the package's declared halo becomes the engine's halo, and a fixed size its largest tile;
- its pre- and postprocessing run per tile, with statistics of the tile (as the zoo
  tools compute them per sample);
- ``wne+bioimageio:`` wraps all that with WNE (normalization equivariance).

Only 2D/3D single-channel image-to-image models fit; anything else is refused with what
does not fit. bioimageio.core is optional: ``pip install bioimageio.core``.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model_files import ZOO_PREFIXES
from .wne import WNE

__all__ = [
    "ZOO_BACKBONE",
    "ZOO_PREFIXES",
    "ZooInfo",
    "ZooNetwork",
    "load_zoo_network",
    "require_bioimageio",
    "zoo_info",
]

ZOO_BACKBONE = "bioimageio"
"""The backbone name a zoo package's `ModelSpec` carries."""

_PROCESSING = {
    "ensure_dtype",
    "scale_linear",
    "fixed_zero_mean_unit_variance",
    "zero_mean_unit_variance",
    "scale_range",
    "scale_mean_variance",
    "clip",
    "sigmoid",
}
"""Processing steps that keep an image an image (the others segment or classify)."""


def require_bioimageio() -> None:
    """Fail with how to install it when bioimageio.core is missing."""
    try:
        import bioimageio.core
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise ImportError(
            "BioImage Model Zoo packages need bioimageio.core: pip install bioimageio.core"
        ) from None


@dataclass(frozen=True)
class ZooInfo:
    """What the engine needs to know about a zoo package, read from its description."""

    path: Path
    name: str
    spatial_dims: int
    halo: int | None
    """The declared halo; None when the package declares none (the engine measures it)."""
    max_tile: tuple[int, ...] | None
    """The fixed input size, for a package that accepts only one size."""
    weights: str
    """The weights format used: "torchscript" or "pytorch_state_dict"."""


def split_zoo_string(model: str) -> tuple[Path, bool]:
    """("bioimageio:PATH" or "wne+bioimageio:PATH") -> (resolved path, wrap with WNE)."""
    prefix = next(p for p in ZOO_PREFIXES if model.startswith(p))
    path = Path(model[len(prefix) :]).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model {model!r}: {path} does not exist")
    if path.is_dir():
        found = [path / n for n in ("bioimageio.yaml", "rdf.yaml") if (path / n).is_file()]
        if not found:
            raise ValueError(
                f"model {model!r}: {path} has no bioimageio.yaml or rdf.yaml; give a zoo "
                "package (.zip) or the folder it was unpacked to"
            )
        path = found[0]
    return path.resolve(), prefix.startswith("wne+")


def zoo_info(path: Path) -> ZooInfo:
    """Read and check a package's description (cached while the file is unchanged)."""
    stat = path.stat()
    return _zoo_info(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _zoo_info(path: Path, _mtime: int, _size: int) -> ZooInfo:
    descr = _load_description(path)
    layout = _Layout.of(descr, path)
    return ZooInfo(
        path=path,
        name=str(descr.name),
        spatial_dims=len(layout.space),
        halo=layout.halo,
        max_tile=layout.fixed,
        weights=_weights_format(descr, path),
    )


def _load_description(path: Path) -> Any:
    require_bioimageio()
    from bioimageio.spec import InvalidDescr, load_model_description

    try:
        descr = load_model_description(path, format_version="latest", perform_io_checks=False)
    except Exception as err:  # not a zip, no yaml inside, not a model, ...
        raise ValueError(f"{path} is not a readable bioimage.io model package: {err}") from None
    if isinstance(descr, InvalidDescr):
        errors = "; ".join(f"{e.loc}: {e.msg}" for e in descr.validation_summary.errors[:5])
        raise ValueError(f"{path} is not a valid bioimage.io model description: {errors}")
    return descr


def _weights_format(descr: Any, path: Path) -> str:
    for name in ("torchscript", "pytorch_state_dict"):
        if getattr(descr.weights, name, None) is not None:
            return name
    present = [name for name, entry in descr.weights if entry is not None]
    raise ValueError(
        f"{path} has no PyTorch weights (torchscript or pytorch_state_dict), only "
        f"{', '.join(present)}; napari-wne runs PyTorch weights"
    )


@dataclass(frozen=True)
class _Layout:
    """Where the batch, channel and space axes sit in the package's input and output."""

    in_order: tuple[str, ...]
    """Each input axis as "batch", "channel" or "space0".. in our (Z)YX order."""
    out_order: tuple[str, ...]
    space: tuple[tuple[int, int], ...]
    """Per spatial axis in (Z)YX order: (min, step); step 0 means a fixed size."""
    halo: int | None
    batch_one: bool

    @property
    def fixed(self) -> tuple[int, ...] | None:
        if any(step == 0 for _, step in self.space):  # other axes: no limit
            return tuple(size if step == 0 else 2**31 for size, step in self.space)
        return None

    @classmethod
    def of(cls, descr: Any, path: Path) -> _Layout:
        from bioimageio.spec.model.v0_5 import ParameterizedSize, SizeReference

        def refuse(why: str) -> ValueError:
            return ValueError(
                f"{path} is not a 2D/3D single-channel image-to-image model ({why}); "
                "napari-wne runs zoo denoisers and restorers of that kind only"
            )

        if len(descr.inputs) != 1 or len(descr.outputs) != 1:
            raise refuse(f"{len(descr.inputs)} inputs and {len(descr.outputs)} outputs")
        inp, out = descr.inputs[0], descr.outputs[0]
        for tensor in (inp, out):
            for axis in tensor.axes:
                if axis.type not in ("batch", "channel", "space"):
                    raise refuse(f"tensor {tensor.id!r} has a {axis.type} axis {axis.id!r}")
                if axis.type == "channel" and len(axis.channel_names) != 1:
                    raise refuse(f"tensor {tensor.id!r} has {len(axis.channel_names)} channels")
        steps = [*inp.preprocessing, *out.postprocessing]
        other = sorted({p.id for p in steps} - _PROCESSING)
        if other:
            raise refuse(f"its processing includes {', '.join(other)}")
        in_space = [a for a in inp.axes if a.type == "space"]
        out_space = [a for a in out.axes if a.type == "space"]
        if len(in_space) not in (2, 3) or len(out_space) != len(in_space):
            raise refuse(f"{len(in_space)} spatial input and {len(out_space)} output axes")
        rank = _space_rank([str(a.id) for a in in_space])
        sizes, halos = [], []
        for axis in in_space:
            if isinstance(axis.size, int):
                sizes.append((axis.size, 0))
            elif isinstance(axis.size, ParameterizedSize):
                sizes.append((axis.size.min, axis.size.step))
            else:
                raise refuse(f"input axis {axis.id!r} has a size that depends on another axis")
        for axis in out_space:
            ref = axis.size
            same = isinstance(ref, SizeReference) and ref.tensor_id == inp.id and ref.offset == 0
            if not same or str(ref.axis_id) != str(axis.id) or axis.scale != 1.0:
                raise refuse(f"output axis {axis.id!r} is not the same size as its input axis")
            halos.append(getattr(axis, "halo", 0))

        def order(tensor: Any) -> tuple[str, ...]:
            names = [str(a.id) for a in tensor.axes if a.type == "space"]
            ranks = _space_rank(names)
            space = iter(f"space{r}" for r in ranks)
            return tuple(a.type if a.type != "space" else next(space) for a in tensor.axes)

        batch = [a for a in inp.axes if a.type == "batch"]
        return cls(
            in_order=order(inp),
            out_order=order(out),
            space=tuple(sizes[rank.index(i)] for i in range(len(rank))),
            # Undeclared: the engine measures it, except for a fixed size it cannot probe.
            halo=max(halos) if any(halos) else (0 if any(s == 0 for _, s in sizes) else None),
            batch_one=not batch or batch[0].size == 1,
        )


def _space_rank(ids: list[str]) -> list[int]:
    """Each spatial axis's place in (Z)YX order: by its id when they are z/y/x, else as listed."""
    known = {2: ["y", "x"], 3: ["z", "y", "x"]}.get(len(ids), [])
    if sorted(ids) == sorted(known):
        return [known.index(i) for i in ids]
    return list(range(len(ids)))


class ZooNetwork(nn.Module):
    """A zoo package's network with its processing, on (N, 1, *spatial) tiles of any size."""

    def __init__(self, network: nn.Module, descr: Any, layout: _Layout) -> None:
        super().__init__()
        self.network = network
        self.layout = layout
        self.preprocessing = [_Step.of(p) for p in descr.inputs[0].preprocessing]
        self.postprocessing = [_Step.of(p) for p in descr.outputs[0].postprocessing]
        self.source = str(descr.name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout.batch_one and x.shape[0] > 1:
            return torch.cat([self(item[None]) for item in x])
        spatial = tuple(x.shape[2:])
        padded = _pad(x.to(torch.float32), self._valid_shape(spatial))
        raw = _to_model(padded, self.layout.in_order)
        y = raw
        for step in self.preprocessing:
            y = step(y, raw)
        y = self.network(y)
        for step in self.postprocessing:
            y = step(y, raw)
        out = _from_model(y.to(torch.float32), self.layout.out_order)
        return out[(slice(None), slice(None), *(slice(0, s) for s in spatial))]

    def _valid_shape(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The smallest size the package accepts that holds each spatial side."""
        valid = []
        for size, (low, step) in zip(spatial, self.layout.space, strict=True):
            if step == 0:
                if size > low:
                    raise ValueError(
                        f"zoo model {self.source!r} takes tiles of exactly {low} px per axis, "
                        f"got {size}; pass tile={low} or less"
                    )
                valid.append(low)
            else:
                valid.append(low + max(0, -(-(size - low) // step)) * step)
        return tuple(valid)


def _pad(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Pad the spatial axes at their far end (mirror, or repeat where too thin to mirror)."""
    afters = [t - s for t, s in zip(shape, x.shape[2:], strict=True)]
    if not any(afters):
        return x
    pads: list[int] = []
    for after in reversed(afters):
        pads += [0, after]
    thin = any(a >= s for a, s in zip(afters, x.shape[2:], strict=True))
    return F.pad(x, pads, mode="replicate" if thin else "reflect")


def _to_model(x: torch.Tensor, order: tuple[str, ...]) -> torch.Tensor:
    """(N, 1, *spatial) -> the package's axis order (dropping axes it does not have)."""
    ours = ["batch", "channel", *(f"space{i}" for i in range(x.ndim - 2))]
    kept = [ours.index(name) for name in order]
    dropped = [i for i in range(x.ndim) if i not in kept]  # batch or channel, of size 1
    return x.permute(*kept, *dropped).reshape([x.shape[i] for i in kept])


def _from_model(y: torch.Tensor, order: tuple[str, ...]) -> torch.Tensor:
    """The package's output axes -> (N, 1, *spatial)."""
    spatial = sorted(name for name in order if name.startswith("space"))
    ours = ["batch", "channel", *spatial]
    for name in ours:
        if name not in order:
            y = y.unsqueeze(-1)
            order = (*order, name)
    return y.permute(*(order.index(name) for name in ours))


class _Step:
    """One processing step in torch, statistics per batch element (one tile)."""

    def __init__(self, kind: str, kwargs: dict[str, Any]) -> None:
        self.kind, self.kwargs = kind, kwargs

    @classmethod
    def of(cls, descr: Any) -> _Step:
        kwargs = descr.kwargs.model_dump() if hasattr(descr, "kwargs") else {}
        return cls(str(descr.id), kwargs)

    def __call__(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        k, eps = self.kwargs, self.kwargs.get("eps", 1e-6)
        if self.kind == "ensure_dtype":
            dtype = np.dtype(k["dtype"])
            if dtype.kind == "f":
                return x.to(getattr(torch, dtype.name))
            info = np.iinfo(dtype)  # integers: what numpy's cast of in-range values gives
            return x.trunc().clamp(info.min, info.max).to(torch.float32)
        if self.kind == "scale_linear":
            return x * _scalar(k["gain"]) + _scalar(k["offset"])
        if self.kind == "fixed_zero_mean_unit_variance":
            return (x - _scalar(k["mean"])) / (_scalar(k["std"]) + eps)
        if self.kind == "zero_mean_unit_variance":
            mean, std = _mean_std(x)
            return (x - mean) / (std + eps)
        if self.kind == "scale_range":
            low = _percentile(x, k["min_percentile"])
            high = _percentile(x, k["max_percentile"])
            return (x - low) / (high - low + eps)
        if self.kind == "scale_mean_variance":
            mean, std = _mean_std(x)
            ref_mean, ref_std = _mean_std(raw)
            return (x - mean) / (std + eps) * (ref_std + eps) + ref_mean
        if self.kind == "clip":
            return x.clamp(k.get("min"), k.get("max"))
        return torch.sigmoid(x)  # the only other one _Layout lets through


def _scalar(value: Any) -> float:
    values = value if isinstance(value, (list, tuple)) else [value]
    return float(values[0])  # one channel: a per-channel list holds one value


def _mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    mean = flat.mean(dim=1)
    std = (flat - mean[:, None]).square().mean(dim=1).sqrt()
    view = (x.shape[0],) + (1,) * (x.ndim - 1)
    return mean.reshape(view).to(x.dtype), std.reshape(view).to(x.dtype)


def _percentile(x: torch.Tensor, percent: float) -> torch.Tensor:
    """Per batch element, linear interpolation between ranks (numpy's default method)."""
    ranked = x.reshape(x.shape[0], -1).sort(dim=1).values
    position = percent / 100 * (ranked.shape[1] - 1)
    low = int(position)
    high = min(low + 1, ranked.shape[1] - 1)
    value = ranked[:, low] + (position - low) * (ranked[:, high] - ranked[:, low])
    return value.reshape((x.shape[0],) + (1,) * (x.ndim - 1))


def load_zoo_network(
    path: Path, spatial_dims: int, device: str | torch.device, *, wrap: bool
) -> nn.Module:
    """The package's network as a `ZooNetwork` in eval mode, WNE-wrapped if `wrap`.

    TorchScript weights are preferred; pytorch_state_dict weights run the package's own
    architecture code (a program, like TorchScript: load packages you trust).
    """
    info = zoo_info(path)
    if spatial_dims != info.spatial_dims:
        raise ValueError(
            f"zoo model {path} takes {info.spatial_dims}-D images, but {spatial_dims}-D "
            f"instances were asked for; pick axes with "
            f"{'no Z' if info.spatial_dims == 2 else 'Z'} (or instances='planes')"
        )
    descr = _load_description(path)
    layout = _Layout.of(descr, path)
    if info.weights == "torchscript":
        data = descr.weights.torchscript.get_reader().read()
        network = torch.jit.load(io.BytesIO(data), map_location=device)
    else:
        from bioimageio.core.backends.pytorch_backend import load_torch_model

        network = load_torch_model(descr.weights.pytorch_state_dict, devices=[device])
    model = ZooNetwork(network, descr, layout)
    return (WNE(model) if wrap else model).to(device).eval()
