"""`denoise`: the one headless entry point that the CLI and the napari widget call."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch

from .axes import parse_axes
from .devices import resolve_device
from .disk_run import Cluster, DiskRun, write_run
from .distributed import connect
from .engine import Block, TileSettings, cached_engine
from .halo import compact
from .models import DEFAULT_MODEL, get_model, warn_if_untrained
from .modes import (
    DTYPE,
    INSTANCES,
    MISSING_CHUNKS,
    NORM,
    PYRAMID,
    Instances,
    MissingChunks,
    Norm,
    OutputDtype,
    Pyramid,
)
from .normalization import global_statistics_apply
from .pipeline import CancelCheck, Progress, instance_stats, lazy_result, run_blocks, write_block
from .precision import Precision
from .routing import ModelChoice, choose_model, routing_sample
from .sources import open_source
from .strength import FULL_STRENGTH
from .writers import (
    DenoisedImage,
    check_not_unfinished,
    check_output_path,
    default_output_name,
)

__all__ = [
    "DenoisedImage",
    "Instances",
    "OutputDtype",
    "choose_model_for",
    "denoise",
    "difference",
    "lazy_view",
    "read_region",
]


def denoise(
    image: Any,
    model: str = DEFAULT_MODEL,
    *,
    axes: str | None = None,
    missing_chunks: MissingChunks = MISSING_CHUNKS.default,  # type: ignore[assignment]
    instances: Instances = INSTANCES.default,  # type: ignore[assignment]
    output: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    dtype: OutputDtype = DTYPE.default,  # type: ignore[assignment]
    tile: int | tuple[int, ...] | None = None,
    halo: int | tuple[int, ...] | None = None,
    blend: int = 16,
    norm: Norm = NORM.default,  # type: ignore[assignment]
    batch_size: int | None = None,
    tta: bool = False,
    strength: float = FULL_STRENGTH,
    precision: Precision = "auto",
    pyramid: Pyramid = PYRAMID.default,  # type: ignore[assignment]
    cpu_fallback: bool = False,
    block: int | tuple[int, ...] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_unfinished: bool = False,
    progress: Callable[[Progress], None] | None = None,
    tile_progress: Callable[[Progress], None] | None = None,
    cancel: CancelCheck = None,
    scale: dict[str, float] | None = None,
    units: dict[str, str] | None = None,
    scheduler: Any = None,
    resources: dict[str, float] | None = None,
    verbose: bool = True,
) -> np.ndarray | da.Array | DenoisedImage:
    """Denoise a 2D image, a volume, a time-lapse or a multichannel stack, tile by tile.

    Parameters
    ----------
    image:
        A numpy, dask or zarr array, or the path of a zarr store, an OME-Zarr image or a
        TIFF/OME-TIFF/ImageJ file (read lazily, never whole).
    model:
        A name from ``napari_wne.MODELS``. The default, ``"auto"``, measures the noise of
        one plane and runs the WNE UNet trained for it: ``unet-wne`` for white noise,
        ``unet-wne-corr`` for spatially correlated noise (`napari_wne.routing`; verbose
        runs say which and why).
        Or a trained model by path: a folder written by ``napari-wne train``, a TorchScript
        file (``"wne:PATH"`` wraps it with WNE), or ``"NAME:PATH"`` for a state dict of
        registered model NAME (see `napari_wne.model_io`). Or the name of a saved model
        (adapted in napari; see `napari_wne.models.saved_models`).
    axes:
        One letter per dimension from "TCZYX"; files usually say it themselves, and these
        win over what a file says. It decides what one instance is: each YX plane, or each
        ZYX volume when Z is named; every T and C index is denoised on its own.
    missing_chunks:
        What a chunk absent from an input zarr store means: "error" (default) names it and
        stops, "fill" reads it as the fill value (see `napari_wne.sources.MISSING_CHUNKS_HELP`:
        zarr 3 writers skip chunks that equal the fill value).
    instances:
        For images with Z: "volumes" denoises each ZYX volume with a 3D network, "planes"
        each Z plane on its own with a 2D one. "auto" (default) takes volumes unless the
        model was trained on 2D images only, and says so.
    output:
        Write the result here, block by block (for images larger than memory), in the
        format its suffix names (`napari_wne.modes.OUTPUT_FORMAT`): ``.ome.zarr`` or
        ``.zarr`` an OME-Zarr image, ``.ome.tif`` an OME-TIFF with pixel sizes, channel
        names and provenance, ``.tif`` an ImageJ hyperstack with its calibration (TIFFs
        are staged in a resumable OME-Zarr and streamed plane by plane). Paths given as
        `image` write to ``<input name>_denoised.ome.zarr`` beside it when `output` is
        None. Only one run at a time may write an output: it holds a lock file beside it.
    device:
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    dtype:
        "float32" (default), or "input" for the input's dtype: integers are rounded and
        saturate at their range; float64 input keeps float64 precision throughout.
    tile, halo, blend, norm, batch_size:
        Tiling (see `napari_wne.engine.TileSettings`): the largest tile side, the context
        kept around each tile (one count, or one per spatial axis; default: measured per
        axis, `napari_wne.halo.default_halo`), the width of the blend between tiles, "tile"
        or "global" normalization statistics, and tiles per forward pass (default: what
        the device holds, `devices.batch_voxels`).
    tta:
        Test-time augmentation: average the model over the 8 flips and quarter turns of
        each plane (`napari_wne.tta`). Exactly as equivariant, 8 times slower; its gain is
        measured in docs/results.md.
    strength:
        How much of the denoiser's change to keep, from 0 to 1 (`napari_wne.strength`):
        1 (default) the full result; 0.7 gives 30 % of the input back, noise and fine
        detail with it, which helps where there is little noise to remove
        (docs/results.md, "Little noise"). Exact under tiling, and as equivariant.
    precision:
        What the network computes in: "auto" (default), "float32", "bfloat16" or
        "float16" (`napari_wne.precision`: "auto" is bfloat16 on recent CUDA GPUs and what
        was measured faster at no visible loss on a CPU). WNE's statistics, normalization
        and denormalization stay in float64/float32 whatever is chosen.
    cpu_fallback:
        When the GPU runs out of memory even for the smallest pieces of a tile, go on on
        the CPU instead of failing. Before that, every run halves its batch, then its
        tiles, for the same result, and says so (`napari_wne.backoff`).
    pyramid:
        Multiscale levels in an OME-Zarr `output` (`napari_wne.modes.PYRAMID`): "auto"
        (default) adds them when Y or X exceeds 4096 px, "on" always, "off" never. Levels
        halve Y and X (and Z where it is about as fine) down to about 1024 px, as 2x2 means,
        so napari pans a huge result smoothly; TIFF outputs ignore it.
    block:
        Side of the blocks (one task each, one zarr shard each); default 4096 in 2D and
        (128, 512, 512) in 3D, capped by the image.
    resume, overwrite:
        Finish an interrupted run into an existing `output` (refused if the settings or the
        input changed since it started), or replace it. Only an output napari-wne wrote is
        ever replaced or resumed; any other existing path is refused, never deleted.
    allow_unfinished:
        Denoise an unfinished output of an earlier run (one that was stopped) as it is;
        by default it is refused, since its missing blocks would read as zeros.
    progress:
        Called with a `napari_wne.pipeline.Progress` after every block.
    tile_progress:
        Also called after every forward pass inside a block, with the block's tiles done
        (not on a cluster or for a lazy dask result): live progress on one large plane.
    cancel:
        A `threading.Event` or a callable; when set, the run stops at the next block and
        raises `napari_wne.pipeline.Cancelled`, leaving a resumable output.
    scale, units:
        Physical pixel size and unit per axis letter (e.g. ``{"Y": 0.1, "X": 0.1}``,
        ``{"Y": "micrometer"}``) for the written output; they replace what the file says.
    scheduler:
        Run the blocks as tasks on a dask.distributed cluster: its scheduler's address
        (``"tcp://host:8786"``) or a ``distributed.Client``. Needs an input path and an
        `output` that every worker can reach (a shared file system).
    resources:
        Worker resources each block task needs, e.g. ``{"GPU": 1}`` for workers started
        with ``--resources GPU=1``.
    verbose:
        Print the model, device and tiling used to stderr (the device is never silent).

    Returns
    -------
    numpy.ndarray, dask.array.Array or DenoisedImage
        A numpy array for numpy input, a lazy dask array for dask input, and a
        `DenoisedImage` (the path, which ``str()`` gives, and a `to_dask()` reader) when
        `output` was written.

    Raises
    ------
    ValueError
        NaN or infinite pixels, an empty image, axes that do not fit the shape, an unknown
        model or device, an output that is the input, a result that the output dtype
        cannot hold (e.g. float64 beyond 3.4e38 with ``dtype="float32"``). For dask input,
        pixel checks run when the result is computed.
    TypeError
        Boolean, complex, object or text data, or something that is not an image.
    FileExistsError
        The output exists and neither `overwrite` nor `resume` was given, or it is not an
        output of napari-wne; `napari_wne.writers.OutputInUseError` when another run is
        writing it.
    napari_wne.writers.DiskFullError
        The disk filled up; the finished blocks are kept for `resume`.

    Warns
    -----
    UntrainedModelWarning
        Every call with a model that has no trained weights.
    """
    spec = get_model(model)
    warn_if_untrained(spec)
    source = open_source(image, axes, missing_chunks)
    if source.path is not None and not allow_unfinished:
        check_not_unfinished(source.path)
    if output is None and source.path is not None:
        output = source.path.with_name(default_output_name(source.path))
    if output is not None:
        check_output_path(output, source=source.path)
        output = Path(output).absolute()
    _check_dtype(source.dtype)
    if math.prod(source.shape) == 0:
        raise ValueError(f"the image is empty (shape {source.shape}); nothing to denoise")
    layout = parse_axes(source.axes, source.shape)
    INSTANCES.check(instances)
    routed = ""
    if spec.routed:  # "auto": the image's noise picks the model (napari_wne.routing)
        plane = source.read(routing_sample(layout.axes, source.shape))
        choice = choose_model(plane, volume_planes(layout.axes, source.shape, instances))
        spec, routed = get_model(choice.model), f" (chosen by {model}: {choice.reason})"
    by_plane = instances == "planes" or (instances == "auto" and 3 not in spec.dims)
    if by_plane and layout.spatial_dims == 3:
        layout = parse_axes(layout.axes, source.shape, planes=True)
    axes = layout.axes
    source.scale = {**source.scale, **{a.upper(): float(v) for a, v in (scale or {}).items()}}
    source.units = {**source.units, **{a.upper(): str(v) for a, v in (units or {}).items()}}
    if scheduler is None:
        torch_device, reason = resolve_device(device)
    else:  # plan here on the CPU; each worker resolves `device` on its own machine
        torch_device, reason = torch.device("cpu"), f"device {device} resolved on each worker"
    DTYPE.check(dtype)
    PYRAMID.check(pyramid)
    out_dtype = np.dtype(np.float32) if dtype == "float32" else source.dtype
    settings = TileSettings(
        tile=tile, halo=halo, blend=blend, norm=norm, batch_size=batch_size, tta=tta,
        strength=strength, precision=precision, cpu_fallback=cpu_fallback,
    )  # fmt: skip
    instance_shape = layout.spatial_shape(source.shape)
    make_engine = functools.partial(
        cached_engine, spec.name, layout, instance_shape, str(torch_device), settings
    )
    engine = make_engine()
    block_shape = _block_shape(block, instance_shape)
    if verbose:
        planes = ", each Z plane on its own" if "Z" in layout.batch_axes else ""
        print(
            f"napari-wne: model {spec.name}{routed}, {layout.spatial_dims}D instances "
            f"({layout.spatial_axes}{planes}), {reason}, {engine.precision_reason}; tiles "
            f"{engine.grid.tile_shape} with halo {compact(engine.halo)} and blend {blend}, {norm} "
            "normalization",
            file=sys.stderr,
        )
    stats = None
    if global_statistics_apply(norm, engine.model, spec.name):
        stats = {
            b: instance_stats(source, layout, axes, b)
            for b in np.ndindex(*layout.batch_shape(source.shape))
        }

    if scheduler is not None and (source.path is None or output is None):
        raise ValueError(
            "a dask.distributed run reads the input and writes the output on the workers: "
            "pass the input as a path (zarr, OME-Zarr or TIFF) and an output path that "
            "every worker can reach"
        )
    if output is not None:
        run = DiskRun(
            engine, source, layout, block_shape, out_dtype, stats, spec.name, settings, pyramid
        )
        with connect(scheduler) as client:
            cluster = None if client is None else Cluster(client, str(device), resources)
            return write_run(
                run, Path(output), resume=resume, overwrite=overwrite, progress=progress,
                cancel=cancel, tile_progress=tile_progress, cluster=cluster,
            )  # fmt: skip
    if isinstance(source.array, da.Array):
        lazy = lazy_result(make_engine, source, axes, layout, block_shape, out_dtype, stats)
        return lazy.transpose(layout.inverse_permutation)

    result = np.empty(source.shape, dtype=out_dtype)

    def write(block_: Block, values: np.ndarray) -> None:
        write_block(result, layout, axes, block_, values, out_dtype)

    blocks = engine.blocks(layout.batch_shape(source.shape), block_shape)
    run_blocks(
        engine, source, axes, blocks, write, stats=stats, progress=progress, cancel=cancel,
        tile_progress=tile_progress,
    )  # fmt: skip
    return result


def _block_shape(block: int | tuple[int, ...] | None, instance: tuple[int, ...]) -> tuple:
    if block is None:
        block = (4096, 4096) if len(instance) == 2 else (128, 512, 512)
    elif isinstance(block, int):
        block = (block,) * len(instance)
    if len(block) != len(instance) or min(block) < 1:
        raise ValueError(f"block {block} needs {len(instance)} positive sizes")
    return tuple(min(b, n) for b, n in zip(block, instance, strict=True))


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise TypeError(
            f"cannot denoise a {dtype} image: napari-wne computes in at most float64; "
            "convert it with image.astype(numpy.float64) (rescale values beyond 1.8e308 first)"
        )
    if dtype.kind in "iuf":
        return
    kinds = {"b": "boolean (a mask?)", "c": "complex", "O": "object", "U": "text", "S": "bytes"}
    what = kinds.get(dtype.kind, str(dtype))
    raise TypeError(
        f"cannot denoise a {what} image (dtype {dtype}); pass integer or float intensities"
    )


def choose_model_for(image: Any, axes: str, instances: Instances = "auto") -> ModelChoice:
    """What ``model="auto"`` runs on `image` (axes as letters of "TCZYX"): measured on the
    plane `denoise` itself measures, so a GUI settles it once for every crop it previews."""
    shape = np.shape(image)
    plane = read_region(image, routing_sample(axes, shape))
    return choose_model(plane, volume_planes(axes, shape, instances))


def volume_planes(axes: str, shape: tuple[int, ...], instances: str) -> int:
    """The Z planes of each volume a 3-D model would see (1: no Z, or plane by plane)."""
    axes = axes.upper()
    if "Z" not in axes or instances == "planes" or len(axes) != len(shape):
        return 1
    return int(shape[axes.index("Z")])


def read_region(image: Any, index: tuple) -> np.ndarray:
    """One box of an image `denoise` accepts (numpy, dask, zarr), read as numpy: for a GUI
    preview or a contrast estimate, without loading the rest of a lazy image."""
    return open_source(image).read(index)


def difference(image: Any, result: Any) -> np.ndarray | da.Array:
    """``image - result`` in float32: what denoising removed. Lazy (dask) when either is
    lazy, so a residual of a stack larger than memory is computed only where viewed."""
    if isinstance(image, np.ndarray) and isinstance(result, np.ndarray):
        return image.astype(np.float32) - result.astype(np.float32)
    lazy = [x if isinstance(x, da.Array) else da.from_array(x) for x in (image, result)]
    return lazy[0].astype(np.float32) - lazy[1].astype(np.float32)


def lazy_view(image: Any) -> Any:
    """numpy, dask and zarr arrays as they are; any other array-like (an h5py dataset, an
    xarray) as a dask view of it, so that `denoise` reads it block by block, never whole."""
    if isinstance(image, (np.ndarray, da.Array)) or type(image).__module__.startswith("zarr"):
        return image
    return da.from_array(image, chunks="auto")
