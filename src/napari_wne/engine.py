"""The one data path: input -> blocks -> tiles -> device -> blend -> output.

A *block* is a box of one instance (one T and C index) that one task reads, computes and
writes whole. Its output is the blend of every tile of the instance's global `TileGrid`
that reaches into it, so the result of a voxel never depends on how blocks were cut.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .acceleration import accelerate
from .axes import InstanceLayout
from .backoff import Backoff, tile_stats
from .devices import batch_voxels, resolve_device
from .engine_checks import check_float32_range, check_result
from .halo import default_halo, effective_radius
from .models import get_model, load_model
from .modes import NORM, Norm
from .normalization import check_finite, takes_statistics
from .precision import Precision, resolve_precision, with_precision
from .strength import FULL_STRENGTH, check_strength, keep_strength
from .tiling import Tile, TileGrid, automatic_tile
from .transfer import to_device, to_host
from .tta import with_tta
from .wne import WNE

__all__ = [
    "Block",
    "Engine",
    "TileSettings",
    "cached_engine",
    "default_halo",
    "effective_radius",
]


@dataclass(frozen=True)
class TileSettings:
    """How instances are cut into tiles and normalized."""

    tile: int | tuple[int, ...] | None = None
    """Largest tile side (or one per spatial axis); default 1280 in 2D, (48, 128, 128) in 3D,
    each side grown where its halo needs more (`napari_wne.tiling.automatic_tile`).
    Large 2D tiles keep the halo's cost low for networks that see far (the shipped UNet's
    measured radius is about 70 px: 512-px tiles would compute twice the voxels)."""
    halo: int | tuple[int, ...] | None = None
    """Context voxels each tile keeps beyond its blend zone (or one count per spatial axis);
    default: `napari_wne.halo.default_halo`, measured per axis (a 3-D network that keeps Z
    sees far fewer planes than pixels)."""
    blend: int = 16
    """Width of the raised-cosine crossing between neighbouring tiles."""
    norm: Norm = "tile"
    """"tile": statistics of each tile with its halo; "global": one mean/std per instance."""
    batch_size: int | None = None
    """Tiles per forward pass; default: as many as the device holds (`devices.batch_voxels`)."""
    tta: bool = False
    """Average over the 8 flips and quarter turns of YX (`napari_wne.tta`): 8x the time."""
    strength: float = FULL_STRENGTH
    """How much of the denoiser's change to keep (`napari_wne.strength`): 1 the full result,
    below 1 part of the input given back, voxel by voxel after the tiles are blended."""
    precision: Precision = "auto"
    """What the backbone computes in (`napari_wne.precision`); WNE's own arithmetic stays
    in float64/float32 whatever this says."""
    cpu_fallback: bool = False
    """Out of device memory even in the smallest pieces: go on on the CPU, not fail."""
    overlap: bool | None = dataclasses.field(
        default_factory=lambda: _env_flag("NAPARI_WNE_OVERLAP")
    )
    """Read the next block and write the previous one while this one computes
    (`napari_wne.overlap`); same pixels either way. None (the default): on for a GPU, off
    on the CPU, where the I/O threads took cores from torch's and a 60-plane run was 0.73x
    to 0.87x as fast (docs/performance.md). NAPARI_WNE_OVERLAP=1 or 0 forces it."""
    compile: bool = False
    """Compile the backbone with `torch.compile` (`napari_wne.acceleration`): minutes of
    compiling per tile shape first, so worth it only for long runs; off by default."""

    def __post_init__(self) -> None:
        """Sizes are whole pixels: refuse 256.0 or "256" here, with the field's name."""
        for name, low in (("tile", 1), ("halo", 0)):
            value = getattr(self, name)
            if value is None:
                continue
            sizes = tuple(value) if isinstance(value, (tuple, list)) else (value,)
            if not sizes or not all(_whole(t) and t >= low for t in sizes):
                raise ValueError(
                    f"{name} must be a whole number of pixels of at least {low} (an int, or one "
                    f"int per spatial axis), got {value!r}"
                )
            whole = tuple(int(t) for t in sizes)  # a tuple: settings are hashed (cached_engine)
            object.__setattr__(self, name, whole if isinstance(value, (tuple, list)) else whole[0])
        object.__setattr__(self, "strength", check_strength(self.strength))
        for name, low in (("blend", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if value is not None and not (_whole(value) and value >= low):
                raise ValueError(f"{name} must be a whole number of at least {low}, got {value!r}")

    def tile_shape(self, spatial_dims: int) -> tuple[int, ...]:
        if self.tile is None:
            return (1280, 1280) if spatial_dims == 2 else (48, 128, 128)
        return _per_axis("tile", self.tile, spatial_dims)

    def halo_shape(self, model: str, spatial_dims: int) -> tuple[int, ...]:
        """The halo per spatial axis: as given, or the model's default."""
        if self.halo is None:
            return default_halo(model, spatial_dims)
        return _per_axis("halo", self.halo, spatial_dims)


def _per_axis(name: str, value: int | tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    """One size for every axis, or as many as there are axes."""
    if isinstance(value, int):
        return (value,) * spatial_dims
    if len(value) != spatial_dims:
        raise ValueError(
            f"{name} {value} needs {spatial_dims} sizes, one per spatial axis, or one for all"
        )
    return tuple(value)


def _env_flag(name: str) -> bool | None:
    """An on/off switch from the environment ("0", "false", "no", "off" mean off); None
    when it is not set."""
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def _whole(value: object) -> bool:
    """An integer that is not a bool (True is not a size)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Block:
    """One unit of work: an instance (its T/C index) and a box of its spatial axes."""

    batch_index: tuple[int, ...]
    region: tuple[slice, ...]

    @property
    def key(self) -> str:
        parts = [*map(str, self.batch_index), *(f"{r.start}-{r.stop}" for r in self.region)]
        return "_".join(parts) or "all"

    @property
    def voxels(self) -> int:
        return math.prod(r.stop - r.start for r in self.region)


class Engine:
    """A model on a device, and the tiling that feeds it (built once per process)."""

    def __init__(
        self,
        model: str,
        layout: InstanceLayout,
        instance_shape: Sequence[int],
        device: torch.device,
        settings: TileSettings,
    ) -> None:
        NORM.check(settings.norm)
        if settings.batch_size is not None and settings.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {settings.batch_size}")
        self.layout = layout
        self.device = device
        self.settings = settings
        self.model_name = model
        self.model = self._build_model(device)
        self.halo = settings.halo_shape(model, layout.spatial_dims)
        """Context voxels per spatial axis (ZYX order): what the grid's margins are."""
        tile = settings.tile_shape(layout.spatial_dims)
        if settings.tile is None:  # automatic tiles grow to fit a wide halo (deep 3-D nets)
            tile = tuple(
                automatic_tile(t, h, settings.blend) for t, h in zip(tile, self.halo, strict=True)
            )
        limit = get_model(model).max_tile  # a zoo package of one fixed size
        if limit is not None:
            tile = tuple(min(t, m) for t, m in zip(tile, limit, strict=True))
        dims = len(tile)
        self.grid = TileGrid(instance_shape, tile, self.halo, (settings.blend,) * dims)
        batch_size = settings.batch_size or max(
            1, batch_voxels(self.model, device, dims) // math.prod(self.grid.tile_shape)
        )
        self.backoff = Backoff(
            device,
            batch_size,
            self.halo,
            to_cpu=self._move_to_cpu if settings.cpu_fallback else None,
            stats_of=tile_stats if isinstance(self.model, WNE) else None,
        )

    @property
    def batch_size(self) -> int:
        """Tiles per forward pass now (halved from the default on out-of-memory errors)."""
        return self.backoff.batch_size

    def _build_model(self, device: torch.device) -> torch.nn.Module:
        """The shared model of this name and device, in this run's precision (and TTA)."""
        model = load_model(self.model_name, self.layout.spatial_dims, str(device))
        self.precision, self.precision_reason = resolve_precision(
            self.settings.precision, device, get_model(self.model_name).backbone,
            normalized=isinstance(model, WNE),
        )  # fmt: skip
        model = with_precision(model, self.precision)
        model = accelerate(
            model, device, get_model(self.model_name).backbone, self.precision,
            self.layout.spatial_dims, compile=self.settings.compile,
        )  # fmt: skip
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # tiles repeat one shape: tune once
            # float32 means float32: TF32 convolutions round to 10 bits, like float16.
            torch.backends.cudnn.allow_tf32 = self.precision != "float32"
        return with_tta(model) if self.settings.tta else model

    def _move_to_cpu(self) -> str:
        """The fallback asked for: the same model and tiling, on the CPU from now on."""
        self.device = torch.device("cpu")
        self.model = self._build_model(self.device)
        return self.precision

    def blocks(self, batch_shape: Sequence[int], block_shape: Sequence[int]) -> list[Block]:
        """Every block of every instance, in reading order."""
        spatial = [
            [slice(s, min(s + b, n)) for s in range(0, n, b)]
            for n, b in zip(self.grid.shape, block_shape, strict=True)
        ]
        return [
            Block(tuple(index), tuple(region))
            for index in itertools.product(*(range(n) for n in batch_shape))
            for region in itertools.product(*spatial)
        ]

    def plan(self, block: Block) -> tuple[tuple[slice, ...], list[Tile]]:
        """The tiles a block needs and the box of the instance they read together."""
        tiles = list(self.grid.tiles_touching(block.region))
        box = tuple(
            slice(
                min(t.slices[d].start for t in tiles), min(max(t.slices[d].stop for t in tiles), n)
            )
            for d, n in enumerate(self.grid.shape)
        )
        return box, tiles

    def compute(
        self,
        data: np.ndarray,
        box: tuple[slice, ...],
        tiles: list[Tile],
        region: tuple[slice, ...],
        stats: tuple[float, float] | None = None,
        on_tiles: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Denoise `region` from `data` (the instance's `box`, spatial axes in ZYX order).

        The result is float32, or float64 where float32 cannot hold the input's values
        exactly (float64 and integers wider than 16 bits): a 1e9 offset keeps its unit
        digits. It is always finite: what cannot be represented is a clear error.

        `on_tiles(done, total)` is called after each forward pass, so a block that holds a
        whole large plane still shows progress.
        """
        check_finite(data)
        wne = isinstance(self.model, WNE)
        if not wne:
            check_float32_range(data, self.model_name)
        # WNE models get float64 tiles: their statistics and normalization run in float64,
        # only the normalized values (of order one) reach the backbone as float32.
        tile_dtype = np.float64 if wne else np.float32
        result_dtype = np.result_type(data.dtype, np.float32)
        out = np.zeros([r.stop - r.start for r in region], dtype=result_dtype)
        # Weights sum in the result's dtype: a float32 sum's rounding (6e-8) would be 60 at 1e9.
        weight = np.zeros_like(out)
        done = 0
        for group in _same_shape_batches(tiles, self.batch_size, self._in_image):
            stack = np.stack([self._tile_input(data, box, t, tile_dtype) for t in group])
            with np.errstate(over="ignore"):  # what overflows is reported below, as a whole
                predictions = self.backoff.predict(stack, stats, self._forward)
                predictions = predictions.astype(result_dtype, copy=False)
            for tile, prediction in zip(group, predictions, strict=True):
                inside = tuple(
                    slice(max(t.start, r.start), min(t.stop, r.stop))
                    for t, r in zip(tile.slices, region, strict=True)
                )
                if any(s.start >= s.stop for s in inside):
                    continue
                w = tile.weights_in(_shift(inside, tile.slices), result_dtype)
                target = _shift(inside, region)
                out[target] += w * prediction[_shift(inside, tile.slices)]
                weight[target] += w
            done += len(group)
            if on_tiles is not None:
                on_tiles(done, len(tiles))
        # The weights add to one already; dividing absorbs their last-bit rounding.
        result = out / weight
        check_result(result, data, region, self.model_name, wne)
        return keep_strength(result, data[_shift(region, box)], self.settings.strength)

    def _tile_input(
        self, data: np.ndarray, box: tuple[slice, ...], tile: Tile, dtype: type
    ) -> np.ndarray:
        """The tile's voxels inside the image (a tile reaching past its end is cut there).

        The network then sees the image end exactly as whole-image inference does, with its
        own padding beyond it; padding the tile here instead (by reflection, say) changed
        the last voxels of every axis for networks that pad with zeros.
        """
        return data[_shift(self._in_image(tile), box)].astype(dtype, copy=False)

    def _in_image(self, tile: Tile) -> tuple[slice, ...]:
        return tuple(
            slice(t.start, min(t.stop, n))
            for t, n in zip(tile.slices, self.grid.shape, strict=True)
        )

    def _forward(self, stack: np.ndarray, stats: tuple[float, float] | None) -> np.ndarray:
        """The model's output for a stack of tiles, in the stack's dtype."""
        device = self.device
        if stack.dtype == np.float64 and device.type == "mps":
            device = torch.device("cpu")  # MPS holds no float64: WNE normalizes on the CPU
        x = to_device(stack, device).unsqueeze(1)  # pinned and asynchronous on CUDA
        with torch.inference_mode():
            if stats is not None and takes_statistics(self.model):
                y = self.model(x, stats=stats)
            else:
                y = self.model(x)
            return to_host(y[:, 0], x.dtype)


@functools.lru_cache(maxsize=4)
def cached_engine(
    model: str,
    layout: InstanceLayout,
    instance_shape: tuple[int, ...],
    device: str,
    settings: TileSettings,
) -> Engine:
    """One engine per process and configuration: dask tasks and cluster workers reuse it,
    never pickle it. `device` may be "auto" (a cluster worker picks its own) or concrete."""
    return Engine(model, layout, instance_shape, resolve_device(device)[0], settings)


def _same_shape_batches(
    tiles: Sequence[Tile], size: int, extent: Callable[[Tile], tuple[slice, ...]]
) -> list[list[Tile]]:
    """Tiles in batches of at most `size` whose in-image parts share one shape.

    Most tiles have the full shape; those cut by the image end form batches of their own.
    """
    groups: dict[tuple[int, ...], list[list[Tile]]] = {}
    for tile in tiles:
        shape = tuple(s.stop - s.start for s in extent(tile))
        batches = groups.setdefault(shape, [[]])
        if len(batches[-1]) == size:
            batches.append([])
        batches[-1].append(tile)
    return [batch for batches in groups.values() for batch in batches]


def _shift(slices: Sequence[slice], origin: Sequence[slice]) -> tuple[slice, ...]:
    return tuple(
        slice(s.start - o.start, s.stop - o.start) for s, o in zip(slices, origin, strict=True)
    )
