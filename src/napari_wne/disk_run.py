"""A run whose result lands on disk: the typed `DiskRun`, and filling its writer's blocks.

`napari_wne.denoise` plans a run (model, tiling, blocks, statistics); this module describes
its output to a writer (`napari_wne.writers.OutputPlan`: shape in OME order, blocks, the
settings a resume must match, provenance) and hands the writer the one thing only the
engine can do: compute the blocks not yet marked done, in this process or as tasks on a
dask.distributed cluster (`napari_wne.distributed`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .axes import InstanceLayout
from .distributed import BlockJob, run_on_cluster
from .engine import Block, Engine, TileSettings
from .halo import compact
from .models import get_model
from .modes import PYRAMID
from .pipeline import CancelCheck, Progress, run_blocks, write_block
from .sources import Source
from .strength import FULL_STRENGTH
from .writers import (
    DenoisedImage,
    OmeZarrOutput,
    OutputPlan,
    file_sha256,
    input_fingerprint,
    ome_order,
    writer_for,
)
from .writers.pyramid import plan_levels

__all__ = ["Cluster", "DiskRun", "write_run"]


@dataclass(frozen=True)
class Cluster:
    """Where blocks run as tasks: a `distributed.Client`, the device as the user named it
    (each worker resolves it), and the worker resources each task needs."""

    client: Any
    device: str
    resources: dict[str, float] | None = None


@dataclass(frozen=True)
class DiskRun:
    """One planned run: what to compute, block by block, and with which settings."""

    engine: Engine
    source: Source
    layout: InstanceLayout
    block_shape: tuple[int, ...]
    out_dtype: np.dtype
    stats: dict[tuple[int, ...], tuple[float, float]] | None
    model: str
    settings: TileSettings
    pyramid: str = PYRAMID.default
    """`napari_wne.modes.PYRAMID`: multiscale levels in an OME-Zarr output."""

    @functools.cached_property
    def blocks(self) -> list[Block]:
        return self.engine.blocks(self.layout.batch_shape(self.source.shape), self.block_shape)

    @property
    def out_axes(self) -> str:
        return ome_order(self.layout.axes)

    def record(self) -> dict[str, Any]:
        """The settings that decide the pixels: a resume must find the same."""
        record = {
            "input": str(self.source.path) if self.source.path else None,
            "input_shape": list(self.source.shape),
            "axes": self.layout.axes,
            "model": self.model,
            "dtype": str(self.out_dtype),
            "tile": list(self.engine.grid.tile_shape),
            "halo": compact(self.engine.halo),
            "blend": self.settings.blend,
            "norm": self.settings.norm,
            "block": list(self.block_shape),
        }
        if self.settings.tta:  # only when on: stores written before it was recorded resume
            record["tta"] = True
        if self.settings.strength != FULL_STRENGTH:  # likewise: only when below 1
            record["strength"] = self.settings.strength
        if self.settings.precision != "auto":  # likewise: recorded only when asked for
            record["precision"] = self.settings.precision
        return record

    def provenance(self) -> dict[str, Any]:
        """What made the result, for the finished file: never compared on resume.

        The device part is what the engine holds when this is called; `write_run` calls
        `device_provenance` again once the blocks are done, since an engine that ran out of
        memory may have moved to the CPU. The writer adds the timing.
        """
        weights = get_model(self.model).weights_path
        return {
            "software": "napari-wne",
            "version": __version__,
            "model": self.model,
            "weights_sha256": file_sha256(weights) if weights is not None else None,
            "settings": self.record(),
            **self.device_provenance(),
            "input_fingerprint": self._fingerprint,
        }

    def device_provenance(self, cluster: Cluster | None = None) -> dict[str, Any]:
        """Where and in what the network computed: the device, torch's version and the
        precision in use. On a cluster, the device and precision as asked of the workers,
        which resolve them each on its own machine."""
        import torch

        if cluster is not None:
            device, precision = f"cluster:{cluster.device}", self.settings.precision
        else:
            device, precision = str(self.engine.device), self.engine.precision
        return {"device": device, "torch_version": torch.__version__, "precision": precision}

    @functools.cached_property
    def _fingerprint(self) -> dict[str, Any] | None:
        """The input's size, time and sampled digest (`writers.fingerprint`), read once."""
        return input_fingerprint(self.source.path, self.source.array)

    def plan(self) -> OutputPlan:
        axes, out_axes = self.layout.axes, self.out_axes
        shape = tuple(self.source.shape[axes.index(a)] for a in out_axes)
        return OutputPlan(
            shape=shape,
            axes=out_axes,
            dtype=np.dtype(self.out_dtype),
            block=dict(zip(self.layout.spatial_axes, self.block_shape, strict=True)),
            blocks=tuple(b.key for b in self.blocks),
            record=self.record(),
            fingerprint=self._fingerprint,
            name=self.source.name,
            scale=dict(self.source.scale),
            units=dict(self.source.units),
            provenance=self.provenance(),
            channel_names=self.source.channel_names_for(axes),
            levels=plan_levels(shape, out_axes, self.source.scale, self.pyramid),
        )


def write_run(
    run: DiskRun,
    output: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelCheck = None,
    tile_progress: Callable[[Progress], None] | None = None,
    cluster: Cluster | None = None,
) -> DenoisedImage:
    """Write `run` into `output` through the writer its suffix names."""
    writer = writer_for(output)
    plan = run.plan()

    def fill(store: OmeZarrOutput) -> None:
        try:
            _fill(store)
        finally:  # what actually ran, for the provenance written next
            plan.provenance.update(run.device_provenance(cluster))

    def _fill(store: OmeZarrOutput) -> None:
        done = store.done_blocks()
        todo = [b for b in run.blocks if b.key not in done]
        counts = {"done_before": len(run.blocks) - len(todo), "total": len(run.blocks)}
        if cluster is None:
            _fill_here(run, store, todo, progress, cancel, tile_progress, counts)
            return
        job = BlockJob(
            input_path=str(run.source.path),
            input_axes=run.layout.axes,
            model=run.model,
            layout=run.layout,
            instance_shape=tuple(run.engine.grid.shape),
            device=cluster.device,
            settings=dataclasses.replace(run.settings, halo=run.engine.halo),
            store=str(store.path),
            output_format=writer.format,
            out_axes=run.out_axes,
            out_dtype=np.dtype(run.out_dtype).str,
            stats=None if run.stats is None else tuple(run.stats.items()),
            missing_chunks=run.source.missing_chunks,
        )
        run_on_cluster(
            cluster.client, job, todo, progress=progress, cancel=cancel,
            resources=cluster.resources, **counts,
        )  # fmt: skip

    return writer.write(plan, fill, resume=resume, overwrite=overwrite)


def _fill_here(run, store, todo, progress, cancel, tile_progress, counts) -> None:
    target = store.array()

    def write(block: Block, values: np.ndarray) -> None:
        store.save_block(
            block.key,
            lambda: write_block(target, run.layout, run.out_axes, block, values, run.out_dtype),
        )

    run_blocks(
        run.engine, run.source, run.layout.axes, todo, write, stats=run.stats,
        progress=progress, cancel=cancel, tile_progress=tile_progress, **counts,
    )  # fmt: skip
