"""The "WNE Denoise" dock widget: a thin GUI over `napari_wne.denoise`.

The widget only decides what to hand to `denoise` (the layer's data, its axes, an output
folder for large or lazy layers) and shows what comes back: progress, the result as a new
layer, errors as notifications. Every pixel goes through `denoise`, so the GUI, the CLI and
scripts give the same result. Runs happen in napari thread workers so the GUI stays live;
the worker talks to the GUI only through Qt signals.
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

import dask.array as da
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from superqt.utils import FunctionWorker

from .api import DenoisedImage, denoise
from .devices import available_devices, resolve_device
from .models import DEFAULT_MODEL, MODELS, UntrainedModelWarning, get_model
from .output import OmeZarrOutput
from .pipeline import Cancelled, Progress

if TYPE_CHECKING:
    import napari

__all__ = ["LARGE_LAYER_BYTES", "DenoiseWidget", "layer_axes"]

logger = logging.getLogger(__name__)

LARGE_LAYER_BYTES = 256 * 2**20
"""In-memory layers whose input or float32 result exceeds this go to an OME-Zarr on disk."""

PREVIEW_NAME = "preview"
PREVIEW_KEY = "napari_wne_preview"
"""Metadata flag of preview layers: they are never offered as an input."""

_LABEL_LETTERS = {
    "t": "T",
    "time": "T",
    "frame": "T",
    "frames": "T",
    "c": "C",
    "ch": "C",
    "channel": "C",
    "z": "Z",
    "depth": "Z",
    "y": "Y",
    "x": "X",
}
# Unlabelled dimensions get letters from the last one backwards: X, Y, Z, then T, then C.
_FILL_ORDER = "XYZTC"


def layer_axes(layer: Image) -> str:
    """The `axes` string for a layer: its axis labels where they name one, else by position.

    2D is "YX", 3D "ZYX" and 4D "TZYX", unless labels such as "t"/"time", "z" or "c"
    say otherwise (a 3D layer labelled ("t", "y", "x") is a time-lapse, "TYX").
    """
    ndim = layer.ndim
    if not 2 <= ndim <= 5:
        raise ValueError(f"layer {layer.name!r} has {ndim} dimensions; WNE Denoise needs 2 to 5")
    labels = [str(label).strip().lower() for label in layer.axis_labels]
    letters: list[str | None] = [_LABEL_LETTERS.get(label) for label in labels]
    named = [letter for letter in letters if letter]
    if len(set(named)) != len(named):  # two dims claim the same letter: trust no label
        letters = [None] * ndim
        named = []
    free = [a for a in _FILL_ORDER if a not in named]
    for i in reversed(range(ndim)):
        if letters[i] is None:
            letters[i] = free.pop(0)
    axes = "".join(letter for letter in letters if letter)
    if "Y" not in axes or "X" not in axes:
        raise ValueError(
            f"layer {layer.name!r}: its axis labels {tuple(layer.axis_labels)} leave no Y and X "
            "axes to denoise; rename them (e.g. to 'y' and 'x') in the layer's axis labels"
        )
    return axes


@dataclass
class _Job:
    """Everything a run needs, captured on the GUI thread when Denoise is pressed."""

    layer_name: str
    data: Any
    kwargs: dict[str, Any]
    layer_kwargs: dict[str, Any]
    output: Path | None = None
    output_existed: bool = False
    started: float = field(default_factory=time.perf_counter)


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued connection)."""

    progressed = Signal(object)


def _is_zarr(data: Any) -> bool:
    return type(data).__module__.startswith("zarr") and hasattr(data, "chunks")


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "image"


def _contrast_limits(result: Any) -> tuple[float, float]:
    """0.1 and 99.9 percentiles of a subsample: one central plane when lazy, so cheap."""
    if isinstance(result, da.Array):
        central = tuple(n // 2 for n in result.shape[:-2])
        sample = np.asarray(result[central].compute()).reshape(-1)
    else:
        flat = np.asarray(result).reshape(-1)
        sample = flat[:: max(1, flat.size // 1_000_000)]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(sample, [0.1, 99.9]))
    if high <= low:
        high = low + 1.0
    return low, high


def _run(job: _Job, progress: Callable[[Progress], None], cancel: threading.Event):
    """Worker-thread body: denoise, then open a written OME-Zarr lazily in the layer's order."""
    result = denoise(job.data, output=job.output, progress=progress, cancel=cancel, **job.kwargs)
    if isinstance(result, DenoisedImage):
        axes = job.kwargs["axes"]
        result = result.to_dask().transpose([result.axes.index(a) for a in axes])
    return result, _contrast_limits(result)


def _run_preview(data: Any, index: tuple, kwargs: dict[str, Any]):
    """Worker-thread body of the preview: read one plane and denoise it as a 2D image."""
    plane = data[index]
    plane = plane.compute() if isinstance(plane, da.Array) else np.asarray(plane)
    result = denoise(plane, axes="YX", verbose=False, **kwargs)
    return result, _contrast_limits(result)


class DenoiseWidget(Container):
    """Denoise an image layer with a WNE model, in full or as a live preview of one plane."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.model = ComboBox(
            label="Model",
            choices=[
                (name if spec.trained else f"{name} (untrained)", name)
                for name, spec in MODELS.items()
            ],
            value=DEFAULT_MODEL,
        )
        self.model_info = Label(label="")
        self.model_info.native.setWordWrap(True)
        self.model_folder = FileEdit(
            label="Own model", mode="d", nullable=True,
            tooltip="A folder written by `napari-wne train` (e.g. a model adapted to your "
            "data); when set, it is used instead of the model above.",
        )  # fmt: skip
        cuda_mps = [d for d in available_devices() if d != "cpu"]
        self.device = ComboBox(label="Device", choices=["auto", "cpu", *cuda_mps], value="auto")
        self.tile = SpinBox(
            label="Tile size", value=0, min=0, max=8192, step=16,
            tooltip="Largest tile side in pixels; 0: automatic (1280 in 2D, 48x128x128 in 3D). "
            "Smaller tiles use less memory.",
        )  # fmt: skip
        self.overlap = SpinBox(
            label="Overlap", value=0, min=0, max=1024, step=8,
            tooltip="Context in pixels kept around each tile; 0: automatic (the model's whole "
            "receptive field when at most 32 px, else its measured effective radius).",
        )  # fmt: skip
        self.block = SpinBox(
            label="Block size", value=0, min=0, max=65536, step=16,
            tooltip="Side of the blocks that are read, written, counted in the progress bar "
            "and cancelled between; 0: automatic (4096 in 2D, 128x512x512 in 3D).",
        )  # fmt: skip
        self.volumes = ComboBox(
            label="Volumes",
            choices=[("automatic", "auto"), ("in 3D (ZYX)", "volumes"),
                     ("plane by plane (2D)", "planes")],
            value="auto",
            tooltip="How layers with a Z axis are denoised: as volumes with a 3D model, or "
            "each plane alone with a 2D one. Automatic: in 3D unless the model was trained "
            "on 2D images only.",
        )  # fmt: skip
        self.norm = ComboBox(
            label="Normalization", choices=["tile", "global"], value="tile",
            tooltip="tile: statistics of each tile; global: one mean/std per plane or volume.",
        )  # fmt: skip
        self.dtype = ComboBox(
            label="Output dtype", choices=["float32", "input"], value="float32",
            tooltip="input: round and clip the result back to the input's dtype.",
        )  # fmt: skip
        self.output_folder = FileEdit(
            label="Output folder", mode="d", nullable=True,
            tooltip="Where lazy (dask/zarr) or large layers are written as OME-Zarr, block by "
            "block, and read back lazily; default: the folder of the layer's file.",
        )  # fmt: skip
        self.overwrite = CheckBox(
            text="Replace existing output", value=False,
            tooltip="Otherwise an unfinished output of the same name is resumed and a "
            "finished one is kept (the new result gets a numbered name).",
        )  # fmt: skip
        self.preview = CheckBox(
            text="Preview", value=False,
            tooltip="Denoise only the plane shown, again whenever the slider moves. Volumes "
            "denoised in 3D are previewed plane by plane (2D), an approximation.",
        )  # fmt: skip
        self.run_button = PushButton(text="Denoise")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="Progress", min=0, max=1, value=0)
        self.status = Label(label="", value="")
        self.status.native.setWordWrap(True)
        buttons = Container(
            widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False
        )
        super().__init__(
            widgets=[
                self.image, self.model, self.model_info, self.model_folder, self.device,
                self.volumes, self.tile, self.overlap, self.block, self.norm, self.dtype,
                self.output_folder, self.overwrite, self.preview, buttons, self.progress,
                self.status,
            ]
        )  # fmt: skip

        self._relay = _Relay(self.native)
        self._relay.progressed.connect(self._on_progress)
        self._worker: FunctionWorker | None = None
        self._cancel = threading.Event()
        self._preview_worker: FunctionWorker | None = None
        self._preview_pending = False
        self._preview_shown: tuple | None = None
        self._preview_layer: Image | None = None
        self._shown_messages: set[str] = set()
        # Stop a running job at its next block when the widget goes away with its viewer.
        cancel = self._cancel
        self.native.destroyed.connect(lambda *_: cancel.set())

        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.model.changed.connect(self._show_model_info)
        self.model_folder.changed.connect(self._show_model_info)
        self.preview.changed.connect(self._on_preview_toggled)
        for setting in (self.image, self.model, self.device, self.tile, self.norm):
            setting.changed.connect(self._request_preview)
        layer_events = self.viewer.layers.events
        for event in (layer_events.inserted, layer_events.removed, layer_events.renamed):
            event.connect(self._refresh_layers)
        layer_events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._request_preview)
        self._show_model_info()

    # -- state the tests and scripts look at -------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a full denoising run is in progress."""
        return self._worker is not None

    @property
    def preview_busy(self) -> bool:
        """Whether a preview is being computed or waits to be."""
        return self._preview_worker is not None or self._preview_pending

    @property
    def preview_layer(self) -> Image | None:
        """The preview layer, while it is in the viewer."""
        layer = self._preview_layer
        return layer if layer is not None and layer in self.viewer.layers else None

    # -- choices and labels ------------------------------------------------------------------

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.metadata.get(PREVIEW_KEY)
        ]

    def _refresh_layers(self, *_: Any) -> None:
        self.image.reset_choices()

    def _on_layer_removed(self, _event: Any = None) -> None:
        # Deleting the preview means: no preview. (Compared by membership, not identity:
        # napari hands plugins proxies of its layers.)
        if self._preview_layer is not None and self._preview_layer not in self.viewer.layers:
            self._preview_layer = None
            self.preview.value = False

    @property
    def model_name(self) -> str:
        """What `denoise` gets as `model`: the own model folder if one is set, else the name."""
        folder = self.model_folder.value
        return str(folder) if folder and str(folder) not in ("", ".") else self.model.value

    @property
    def model_label(self) -> str:
        """A short name for layer and file names."""
        name = self.model_name
        return Path(name).name if name not in MODELS else name

    def _show_model_info(self, *_: Any) -> None:
        try:
            spec = get_model(self.model_name)
        except ValueError as err:
            self.model_info.value = f"Own model: {err}"
            return
        text = spec.description
        if not spec.trained:
            text += ". UNTRAINED: random weights, the output is not a denoised image"
        self.model_info.value = text

    def _settings(self) -> dict[str, Any]:
        """The `denoise` arguments every run and preview share."""
        return {
            "model": self.model_name,
            "device": self.device.value,
            "tile": self.tile.value or None,
            "halo": self.overlap.value or None,
            "norm": self.norm.value,
        }

    def _notify_once(self, message: str, show: Callable[[str], None] = show_warning) -> None:
        if message not in self._shown_messages:
            self._shown_messages.add(message)
            show(message)

    def _on_warned(self, args: tuple) -> None:
        """Warnings raised in a worker (e.g. `UntrainedModelWarning`) become notifications."""
        message, category = args[0], args[1]
        prefix = "" if issubclass(category, UntrainedModelWarning) else "WNE Denoise: "
        self._notify_once(f"{prefix}{message}")

    # -- the full run ------------------------------------------------------------------------

    def _layer_data(self, layer: Image | None) -> tuple[Any, str]:
        """The array to denoise and its axes, or a ValueError that says what is wrong."""
        if layer is None or layer not in self.viewer.layers:
            raise ValueError("there is no image layer to denoise; open an image first")
        if layer.rgb:
            raise ValueError(
                f"layer {layer.name!r} is RGB: WNE Denoise works on intensity images; split the "
                "colours into channels first (e.g. File > Open with channel_axis, or the "
                "layer's 'Split RGB' action)"
            )
        data = layer.data[0] if layer.multiscale else layer.data
        axes = layer_axes(layer)
        return data, axes

    def _job(self, layer: Image | None) -> _Job:
        data, axes = self._layer_data(layer)
        kwargs = {
            **self._settings(),
            "axes": axes,
            "instances": self.volumes.value,
            "scale": dict(zip(axes, map(float, layer.scale), strict=True)),
            "units": {  # napari's "pixel" is no physical unit: leave those out
                a: str(u) for a, u in zip(axes, layer.units, strict=True) if str(u) != "pixel"
            },
            "dtype": self.dtype.value,
            "block": self.block.value or None,
            "verbose": False,
        }
        layer_kwargs = {
            "name": f"{layer.name} denoised ({self.model_label})",
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": tuple(layer.units),
            "axis_labels": tuple(layer.axis_labels),
            "colormap": layer.colormap,
            "blending": layer.blending,
        }
        job = _Job(layer.name, data, kwargs, layer_kwargs)
        in_memory = isinstance(data, np.ndarray)
        size = math.prod(data.shape) * max(np.dtype(data.dtype).itemsize, 4)
        if in_memory and size <= LARGE_LAYER_BYTES:
            return job
        if not (in_memory or isinstance(data, da.Array) or _is_zarr(data)):
            job.data = da.from_array(data, chunks="auto")  # any other lazy array
        job.output = self._output_path(layer)
        job.output_existed = job.output.exists()
        if self.overwrite.value:
            kwargs["overwrite"] = True
        else:
            kwargs["resume"] = job.output_existed
        return job

    def _output_path(self, layer: Image) -> Path:
        folder = self.output_folder.value
        source = layer.source.path
        if folder is None and source and Path(source).parent.is_dir():
            folder = Path(source).parent
        if folder is None:
            why = "lazily loaded" if not isinstance(layer.data, np.ndarray) else "large"
            raise ValueError(
                f"layer {layer.name!r} is {why}, so its result is written to disk as OME-Zarr "
                "block by block: choose an Output folder first"
            )
        stem = f"{_safe_name(layer.name)}_denoised_{_safe_name(self.model_label)}"
        path = Path(folder) / f"{stem}.ome.zarr"
        number = 1
        while not self.overwrite.value and path.exists() and OmeZarrOutput(path).is_complete():
            number += 1  # keep finished results: never resume into (reuse) one silently
            path = Path(folder) / f"{stem}-{number}.ome.zarr"
        return path

    def start(self, *_: Any) -> None:
        """Denoise the chosen layer in a worker thread; the result arrives as a new layer."""
        if self._worker is not None:
            return
        layer = self.image.value
        try:
            job = self._job(layer)
            _device, reason = resolve_device(self.device.value)
        except (ValueError, TypeError) as err:
            self._fail(str(err))
            return
        if layer is not None and layer.multiscale:
            show_info(f"WNE Denoise: {layer.name!r} is multiscale; denoising level 0 (full size)")
        self._cancel.clear()
        self.progress.max, self.progress.value = 1, 0
        where = f", writing {job.output}" if job.output is not None else ""
        self.status.value = f"Running on {reason}{where}"
        self.run_button.enabled, self.cancel_button.enabled = False, True
        body = functools.partial(_run, job, self._relay.progressed.emit, self._cancel)
        worker = create_worker(
            body, _worker_class=FunctionWorker, _ignore_errors=True, _start_thread=False
        )
        worker.returned.connect(functools.partial(self._on_result, job))
        worker.errored.connect(functools.partial(self._on_error, job))
        worker.warned.connect(self._on_warned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def cancel(self, *_: Any) -> None:
        """Ask the running job to stop at its next block boundary."""
        if self._worker is not None:
            self._cancel.set()
            self.status.value = "Cancelling after the current block..."

    def _on_progress(self, progress: Progress) -> None:
        self.progress.max = max(progress.total, 1)
        self.progress.value = progress.done
        rate = progress.voxels_per_second / 1e6
        self.status.value = f"{progress.done} of {progress.total} blocks, {rate:.2f} Mvoxel/s"

    def _on_result(self, job: _Job, payload: tuple) -> None:
        result, limits = payload
        self.viewer.add_image(result, contrast_limits=limits, **job.layer_kwargs)
        seconds = time.perf_counter() - job.started
        where = f" (OME-Zarr: {job.output})" if job.output is not None else ""
        self.status.value = f"Done in {seconds:.1f} s{where}"

    def _on_error(self, job: _Job, err: Exception) -> None:
        if isinstance(err, Cancelled):
            message = f"WNE Denoise: {err}; no layer added"
            if job.output is not None:
                message += (
                    f". The partial result {job.output} is kept: press Denoise again with "
                    "the same settings to resume it"
                )
            self.status.value = message
            show_info(message)
            return
        message = str(err) or type(err).__name__
        if not isinstance(err, (ValueError, TypeError, OSError, MemoryError, RuntimeError)):
            message = f"{type(err).__name__}: {message}"
            logger.error("WNE Denoise failed", exc_info=err)
        if job.output_existed and isinstance(err, (ValueError, FileExistsError)):
            message += " (tick 'Replace existing output' to start it over)"
        self._fail(message)

    def _fail(self, message: str) -> None:
        self.status.value = f"Error: {message}"
        show_error(f"WNE Denoise: {message}")

    def _on_finished(self) -> None:
        self._worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False

    # -- the preview -------------------------------------------------------------------------

    def _on_preview_toggled(self, on: bool) -> None:
        if on:
            self._request_preview()
            return
        self._preview_pending = False
        self._preview_shown = None
        layer = self.preview_layer
        if layer is not None:
            self.viewer.layers.remove(layer)
        self._preview_layer = None

    def _request_preview(self, *_: Any) -> None:
        """Recompute the preview; one worker at a time, and only the latest request survives."""
        if not self.preview.value:
            return
        if self._preview_worker is not None:
            self._preview_pending = True  # started when the running one finishes
            return
        self._start_preview()

    def _preview_target(self) -> dict[str, Any]:
        """The plane shown now: the layer's data, its index in data coordinates, and a key
        that changes whenever the plane, the layer or the settings do."""
        layer = self.image.value
        data, _axes = self._layer_data(layer)
        offset = self.viewer.dims.ndim - layer.ndim
        shown = sorted(d - offset for d in self.viewer.dims.displayed if d >= offset)[-2:]
        if len(shown) < 2:
            shown = [layer.ndim - 2, layer.ndim - 1]
        position = layer.world_to_data(self.viewer.dims.point)
        index = tuple(
            slice(None) if d in shown else int(np.clip(round(float(position[d])), 0, n - 1))
            for d, n in enumerate(data.shape)
        )
        settings = self._settings()
        key = (id(layer), id(data), index, tuple(settings.items()))
        return {"layer": layer, "data": data, "index": index, "shown": tuple(shown),
                "settings": settings, "key": key}  # fmt: skip

    def _start_preview(self) -> None:
        self._preview_pending = False
        if self.image.value not in self.viewer.layers:  # the input went away: so does its preview
            self.preview.value = False
            return
        try:
            target = self._preview_target()
        except (ValueError, TypeError) as err:
            self._notify_once(f"WNE Denoise preview: {err}", show_error)
            return
        if target["key"] == self._preview_shown and self.preview_layer is not None:
            return  # already on screen
        layer = target["layer"]
        place = {
            "key": target["key"],
            "ndim": layer.ndim,
            "index": target["index"],
            "shown": target["shown"],
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": tuple(layer.units),
            "axis_labels": tuple(layer.axis_labels),
            "colormap": layer.colormap,
        }
        body = functools.partial(_run_preview, target["data"], target["index"], target["settings"])
        worker = create_worker(
            body, _worker_class=FunctionWorker, _ignore_errors=True, _start_thread=False
        )
        worker.returned.connect(functools.partial(self._on_preview, place))
        worker.errored.connect(self._on_preview_error)
        worker.warned.connect(self._on_warned)
        worker.finished.connect(self._on_preview_finished)
        self._preview_worker = worker
        worker.start()

    def _on_preview(self, place: dict[str, Any], payload: tuple) -> None:
        if not self.preview.value:
            return
        try:
            current = self._preview_target()["key"]
        except (ValueError, TypeError):
            return
        if place["key"] != current:  # the slider, layer or settings moved on: drop it
            self._preview_pending = True
            return
        result, limits = payload
        ndim, index, shown = place["ndim"], place["index"], place["shown"]
        shape = [1] * ndim
        for d, n in zip(shown, result.shape, strict=True):
            shape[d] = n
        translate = np.array(place["translate"], dtype=float)
        for d in range(ndim):
            if d not in shown:  # sit on the plane it came from
                translate[d] += index[d] * place["scale"][d]
        data = result.reshape(shape)
        layer = self.preview_layer
        if layer is not None and layer.ndim != ndim:
            self.viewer.layers.remove(layer)
            layer = None
        self._preview_shown = place["key"]
        if layer is None:
            self._preview_layer = self.viewer.add_image(
                data, name=PREVIEW_NAME, scale=place["scale"], translate=translate,
                units=place["units"], axis_labels=place["axis_labels"],
                colormap=place["colormap"], contrast_limits=limits,
                metadata={PREVIEW_KEY: True},
            )  # fmt: skip
            return
        layer.data = data
        layer.scale = place["scale"]
        layer.translate = translate
        layer.contrast_limits = limits

    def _on_preview_error(self, err: Exception) -> None:
        self._notify_once(f"WNE Denoise preview: {err}", show_error)

    def _on_preview_finished(self) -> None:
        self._preview_worker = None
        if self._preview_pending and self.preview.value:
            self._start_preview()
        else:
            self._preview_pending = False
