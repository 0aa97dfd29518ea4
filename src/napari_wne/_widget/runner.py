"""A full denoising run: capture the settings, run `denoise` in a worker, report, add the result.

The worker talks to the GUI only through Qt signals. Every pixel goes through
`napari_wne.denoise`, so the GUI, the CLI and scripts give the same result.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from superqt.utils import FunctionWorker

from ..api import DenoisedImage, denoise, lazy_view
from ..devices import resolve_device
from ..models import get_model
from ..modes import SUFFIXES
from ..pipeline import Cancelled, Progress
from ..precision import resolve_precision
from ..writers import writer_for
from .form import IN_MEMORY
from .layers import MADE_BY_KEY

if TYPE_CHECKING:
    import napari

__all__ = ["LARGE_LAYER_BYTES", "Job", "Runner"]

logger = logging.getLogger(__name__)

LARGE_LAYER_BYTES = 256 * 2**20
"""In-memory layers whose input or float32 result exceeds this go to an OME-Zarr on disk."""

PROGRESS_STEPS = 1000
"""The progress bar counts thousandths of the run, so tiles inside a block move it too."""


@dataclass
class Job:
    """Everything a run needs, captured on the GUI thread when Denoise is pressed."""

    layer: Image
    data: Any
    kwargs: dict[str, Any]
    layer_kwargs: dict[str, Any]
    device: str = ""
    precision: str = ""
    """What the network computes in, as the engine will resolve it (for the status line)."""
    output: Path | None = None
    output_existed: bool = False
    started: float = field(default_factory=time.perf_counter)
    speed: float = 0.0


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued connection)."""

    progressed = Signal(object)


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "image"


def _run(job: Job, progress: Callable[[Progress], None], cancel: threading.Event) -> Any:
    """Worker-thread body: denoise, then open a written OME-Zarr lazily in the layer's order."""
    result = denoise(
        job.data, output=job.output, progress=progress, tile_progress=progress,
        cancel=cancel, **job.kwargs,
    )  # fmt: skip
    if isinstance(result, DenoisedImage):
        axes = job.kwargs["axes"]
        result = result.to_dask().transpose([result.axes.index(a) for a in axes])
    return result


def advice(err: BaseException) -> str:
    """A plain message for an error in a run, ending with what to do about it."""
    message = str(err) or type(err).__name__
    if isinstance(err, MemoryError) or "out of memory" in message.lower():
        return (
            f"{message}. Out of memory: set a smaller Tile size (and Block size) under "
            "Advanced, or choose another Device, then press Denoise again"
        )
    if isinstance(err, (ValueError, TypeError, OSError, RuntimeError)):
        return message  # our own errors already say what to change
    logger.error("WNE Denoise failed", exc_info=err)
    return (
        f"{type(err).__name__}: {message}. This is unexpected: the details are in napari's "
        "log; please report them. The settings are unchanged: press Denoise to try again"
    )


class Runner:
    """Starts one run at a time and reports it in the form's progress bar and status line."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        form: Any,
        on_result: Callable[[Job, Image], None],
        on_finished: Callable[[], None],
        on_warned: Callable[[tuple], None],
    ) -> None:
        self.viewer = viewer
        self.form = form
        self._on_result_added = on_result
        self._on_finished_cb = on_finished
        self._on_warned = on_warned
        self.worker: FunctionWorker | None = None
        self.cancel_event = threading.Event()
        self._job: Job | None = None
        self._relay = _Relay(form.status.native)
        self._relay.progressed.connect(self._on_progress)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    # -- building the job --------------------------------------------------------------------

    def job(self, layer: Image, data: Any, settings: dict[str, Any], label: str) -> Job:
        """The run's `denoise` arguments and result-layer properties, or a ValueError."""
        axes = settings["axes"]
        kwargs = {
            **settings,
            "instances": self.form.volumes.value,
            "scale": dict(zip(axes, map(float, layer.scale), strict=True)),
            "units": {  # napari's "pixel" is no physical unit: leave those out
                a: str(u) for a, u in zip(axes, layer.units, strict=True) if str(u) != "pixel"
            },
            "dtype": self.form.dtype.value,
            "verbose": False,
        }
        layer_kwargs = {
            "name": f"{layer.name} denoised ({label})",
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": tuple(layer.units),
            "axis_labels": tuple(layer.axis_labels),
            "colormap": layer.colormap,
            "blending": layer.blending,
            # WNE output is in the input's units: the same limits make a fair comparison.
            "contrast_limits": tuple(layer.contrast_limits),
            "metadata": {MADE_BY_KEY: "result"},
        }
        job = Job(layer, data, kwargs, layer_kwargs)
        in_memory = isinstance(data, np.ndarray)
        size = math.prod(data.shape) * max(np.dtype(data.dtype).itemsize, 4)
        if in_memory and size <= LARGE_LAYER_BYTES and self.form.output_format.value == IN_MEMORY:
            return job
        job.data = lazy_view(data)
        job.output = self._output_path(layer, label)
        job.output_existed = job.output.exists()
        if self.form.overwrite.value:
            kwargs["overwrite"] = True
        else:
            kwargs["resume"] = job.output_existed
        return job

    def _output_path(self, layer: Image, label: str) -> Path:
        folder = self.form.output_folder.value
        source = layer.source.path
        if folder is None and source and Path(source).parent.is_dir():
            folder = Path(source).parent
        if folder is None:
            why = "lazily loaded" if not isinstance(layer.data, np.ndarray) else "large"
            if self.form.output_format.value != IN_MEMORY:
                why = "to be saved"
            raise ValueError(
                f"layer {layer.name!r} is {why}, so its result is written to disk block by "
                "block: choose an Output folder first"
            )
        stem = f"{_safe_name(layer.name)}_denoised_{_safe_name(label)}"
        chosen = self.form.output_format.value
        suffix = SUFFIXES["ome-zarr" if chosen == IN_MEMORY else chosen][0]
        path = Path(folder) / f"{stem}{suffix}"
        number = 1
        while not self.form.overwrite.value and writer_for(path).finished():
            number += 1  # keep finished results: never resume into (reuse) one silently
            path = Path(folder) / f"{stem}-{number}{suffix}"
        return path

    # -- running -----------------------------------------------------------------------------

    def start(self, job: Job) -> None:
        """Run `job` in a worker thread; the form stays locked until it ends, however."""
        device, reason = resolve_device(job.kwargs["device"])
        job.device = f"{device} ({reason.split(', ', 1)[-1]})" if "," in reason else str(device)
        spec = get_model(job.kwargs["model"])
        job.precision, _ = resolve_precision(
            job.kwargs.get("precision", "auto"), device, spec.backbone, normalized=spec.wne
        )
        self.cancel_event.clear()
        self.form.progress.max, self.form.progress.value = PROGRESS_STEPS, 0
        where = f", writing {job.output}" if job.output is not None else ""
        self.form.status.value = f"Starting on {job.device}, {job.precision}{where}"
        self._job = job
        body = functools.partial(_run, job, self._relay.progressed.emit, self.cancel_event)
        worker = create_worker(
            body, _worker_class=FunctionWorker, _ignore_errors=True, _start_thread=False
        )
        worker.returned.connect(functools.partial(self._on_returned, job))
        worker.errored.connect(functools.partial(self._on_error, job))
        worker.warned.connect(self._on_warned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def cancel(self) -> None:
        """Ask the running job to stop at its next block boundary."""
        if self.worker is not None:
            self.cancel_event.set()
            self.form.status.value = "Cancelling after the current block..."

    def _on_progress(self, progress: Progress) -> None:
        job = self._job
        if job is None or self.cancel_event.is_set():
            return
        share = progress.tiles_done / progress.tiles_total if progress.tiles_total else 0.0
        done = (progress.done + share) / max(progress.total, 1)
        job.speed = progress.voxels_per_second
        where = f"block {min(progress.done + 1, progress.total)} of {progress.total}"
        if progress.tiles_total:
            where += f", tile {progress.tiles_done} of {progress.tiles_total}"
        elif progress.done == progress.total:
            where = f"{progress.total} of {progress.total} blocks"
        self.form.status.value = f"{where} · {self._speed(job)}"
        self.form.progress.value = min(PROGRESS_STEPS, round(PROGRESS_STEPS * done))

    def _speed(self, job: Job) -> str:
        return f"{job.speed / 1e6:.2f} Mvoxel/s on {job.device}, {job.precision}"

    def _on_returned(self, job: Job, result: Any) -> None:
        layer = self.viewer.add_image(result, **job.layer_kwargs)
        seconds = time.perf_counter() - job.started
        where = f" (written to {job.output})" if job.output is not None else ""
        self.form.progress.value = self.form.progress.max
        self.form.status.value = f"Done in {seconds:.1f} s · {self._speed(job)}{where}"
        self._on_result_added(job, layer)

    def _on_error(self, job: Job, err: Exception) -> None:
        if isinstance(err, Cancelled):
            message = f"WNE Denoise: {err}; no layer added"
            if job.output is not None:
                message += (
                    f". The partial result {job.output} is kept: press Denoise again with "
                    "the same settings to resume it"
                )
            self.form.status.value = message
            show_info(message)
            return
        message = advice(err)
        if job.output_existed and isinstance(err, (ValueError, FileExistsError)):
            message += " (tick 'Replace existing output' to start it over)"
        fail(self.form, message)

    def _on_finished(self) -> None:
        self.worker = None
        self._job = None
        self._on_finished_cb()


def fail(form: Any, message: str) -> None:
    """Show an error in the status line and as a notification."""
    form.status.value = f"Error: {message}"
    show_error(f"WNE Denoise: {message}")
