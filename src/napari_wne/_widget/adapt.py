"""The "Adapt to this image" section: fine-tune the chosen model on the chosen layer.

No clean image is needed: `napari_wne.adaptation.adapt` (also behind ``napari-wne
adapt``) trains self-supervised with its measured defaults, keeps the weights with the
lowest loss on held-out rows, and the result is saved under a name in
`napari_wne.models.user_models_dir`, so it joins the Model list, ``napari-wne models``
and ``denoise(model=NAME)``. The run happens in a worker thread; the panel shows its
losses as they come and a before/after preview of the plane shown.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from superqt.utils import FunctionWorker

from ..adaptation import Adaptation, AdaptationCancelled, AdaptSettings
from ..model_io import CARD_FILE
from ..models import saved_model_folder
from .adapt_job import AdaptJob, AdaptTarget, preview_crop, run_adaptation, training_images
from .form import _note, _show
from .layers import MADE_BY_KEY
from .loss_plot import LossPlot
from .runner import advice

if TYPE_CHECKING:
    import napari

__all__ = ["AFTER_NAME", "BEFORE_NAME", "AdaptPanel"]

BEFORE_NAME = "adapt preview: before"
AFTER_NAME = "adapt preview: after"
_EVERY_PLANE, _PLANE_SHOWN = "every plane", "the plane shown"


class _Relay(QObject):
    """Carries reports from the worker thread to the GUI thread (queued connections)."""

    stepped = Signal(object)
    checked = Signal(object)
    previewed = Signal(object)


class AdaptPanel(Container):
    """Fields, buttons, loss curve and status of one adaptation run at a time."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        target: Callable[[], AdaptTarget],
        on_saved: Callable[[str], None],
    ) -> None:
        """`target()` gives what the Denoise settings choose (a ValueError says what is
        wrong with them); `on_saved(name)` is told of every model saved."""
        self.viewer = viewer
        self._target = target
        self._on_saved = on_saved
        self.settings = AdaptSettings()
        """The adaptation settings; Steps and the Denoise Device override theirs."""
        self.save_as = LineEdit(
            label="Save as",
            tooltip="The name the adapted model is saved under; it then appears in the Model "
            "list, in `napari-wne models`, and works as denoise(model=NAME).",
        )
        self.train_on = ComboBox(
            label="Train on", choices=[_EVERY_PLANE, _PLANE_SHOWN], value=_EVERY_PLANE,
            tooltip="Every plane of the layer (more to learn from), or only the plane the "
            "sliders show (for a layer too large to hold in memory).",
        )  # fmt: skip
        self.steps = SpinBox(
            label="Steps", min=1, max=100_000, value=self.settings.steps,
            tooltip="At most this many training steps; it stops sooner once the held-out loss "
            "no longer falls. The default takes a few minutes on a laptop CPU.",
        )  # fmt: skip
        self.replace = CheckBox(
            text="Replace a saved model of this name", value=False,
            tooltip="Otherwise a name already saved is refused.",
        )  # fmt: skip
        self.show_preview = CheckBox(
            text="Before/after preview", value=True,
            tooltip="Denoise a crop of the plane shown with the starting model (before) and "
            f"with each better set of weights (after), as layers {BEFORE_NAME!r} and "
            f"{AFTER_NAME!r}.",
        )  # fmt: skip
        self.name_info = _note()
        self.adapt_button = PushButton(text="Adapt")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        buttons = Container(
            widgets=[self.adapt_button, self.cancel_button], layout="horizontal", labels=False
        )
        self.progress = ProgressBar(label="Progress", min=0, max=self.steps.value, value=0)
        self.loss_plot = LossPlot()
        self.status = _note()
        super().__init__(
            widgets=[
                self.save_as, self.name_info, self.train_on, self.steps, self.replace,
                self.show_preview, buttons, self.progress,
            ]
        )  # fmt: skip
        self.native.layout().addWidget(self.loss_plot)
        self.append(self.status)

        self.worker: FunctionWorker | None = None
        self.result: Adaptation | None = None
        """What the latest finished run did."""
        self.cancel_event = threading.Event()
        self._job: AdaptJob | None = None
        self._started = 0.0
        self._best: tuple[int, float] | None = None
        self._suggested = ""
        self._relay = _Relay(self.status.native)
        self._relay.stepped.connect(self._on_step)
        self._relay.checked.connect(self._on_check)
        self._relay.previewed.connect(self._on_preview)
        self.native.destroyed.connect(lambda *_: self.cancel_event.set())
        self.adapt_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        for field in (self.save_as, self.replace):
            field.changed.connect(self.check)
        self.steps.changed.connect(lambda value: setattr(self.progress, "max", value))

    @property
    def busy(self) -> bool:
        return self.worker is not None

    # -- the name ----------------------------------------------------------------------------

    def suggest_name(self, layer: str) -> None:
        """Fill in "<layer>-adapted" (numbered if saved already), unless the user typed a
        name of their own. (The model it came from is on its card.)"""
        if self.busy or self.save_as.value not in ("", self._suggested):
            return
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", layer).strip("-_")[:48] or "image"
        name, number = f"{stem}-adapted", 1
        while _taken(name):
            number += 1
            name = f"{stem}-adapted-{number}"
        self._suggested = name
        self.save_as.value = name

    def check(self, *_: Any) -> str | None:
        """Whether the name can be saved under; shown as typed, and switches Adapt."""
        name = self.save_as.value.strip()
        problem = None
        try:
            folder = saved_model_folder(name)
        except ValueError as err:
            problem = str(err)
        else:
            if (folder / CARD_FILE).exists() and not self.replace.value:
                problem = f"a model named {name!r} is saved already: tick Replace, or rename"
        _show(self.name_info, problem or "", error=problem is not None)
        self.adapt_button.enabled = problem is None and not self.busy
        self.adapt_button.tooltip = problem or "Fine-tune the chosen model on the chosen layer"
        return problem

    # -- running -----------------------------------------------------------------------------

    def _lock(self, locked: bool) -> None:
        for field in (self.save_as, self.train_on, self.steps, self.replace, self.show_preview):
            field.enabled = not locked
        self.cancel_button.enabled = locked
        self.adapt_button.enabled = False if locked else self.check() is None

    def _job_now(self) -> AdaptJob:
        """Capture the run on the GUI thread; a ValueError says what to change."""
        problem = self.check()
        if problem:
            raise ValueError(problem)
        target = self._target()
        name = self.save_as.value.strip()
        images = training_images(self.viewer, target, self.train_on.value == _EVERY_PLANE)
        crop, place = preview_crop(self.viewer, target) if self.show_preview.value else (None, {})
        settings = dataclasses.replace(self.settings, steps=self.steps.value, device=target.device)
        return AdaptJob(
            target, images, saved_model_folder(name), name, settings, self.replace.value,
            crop, place,
        )  # fmt: skip

    def start(self, *_: Any) -> None:
        """Adapt in a worker thread; the saved model is announced through `on_saved`."""
        if self.busy:
            return
        try:
            job = self._job_now()
        except (ValueError, TypeError, LookupError) as err:
            self._fail(str(err))
            return
        self._job, self._best, self.result = job, None, None
        self.cancel_event.clear()
        self.loss_plot.clear(job.settings.steps)
        self.progress.max, self.progress.value = job.settings.steps, 0
        self.status.value = f"Starting from {job.target.model}: measuring the held-out loss..."
        self.status.visible = True
        relay = self._relay
        body = functools.partial(
            run_adaptation, job, relay.stepped.emit, relay.checked.emit, relay.previewed.emit,
            self.cancel_event.is_set,
        )  # fmt: skip
        worker = create_worker(
            body, _worker_class=FunctionWorker, _ignore_errors=True, _start_thread=False
        )
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._started = time.perf_counter()
        self._lock(True)
        worker.start()

    def cancel(self, *_: Any) -> None:
        """Stop after the current step; nothing is saved."""
        if self.busy:
            self.cancel_event.set()
            self.status.value = "Cancelling after the current step..."

    def _on_step(self, report: tuple[int, float]) -> None:
        step, loss = report
        self.loss_plot.add_train(step, loss)
        if self.cancel_event.is_set():
            return
        self.progress.value = min(step, self.progress.max)
        left = (time.perf_counter() - self._started) / step * (self.progress.max - step)
        text = f"step {step} of {self.progress.max} · loss {loss:.4g}"
        if self._best is not None:
            text += f" · held-out best {self._best[1]:.4g} (step {self._best[0]})"
        self.status.value = f"{text} · at most {_duration(left)} left"

    def _on_check(self, report: tuple[int, float, bool]) -> None:
        step, loss, improved = report
        self.loss_plot.add_held_out(step, loss)
        if improved:
            self._best = (step, loss)

    def _on_preview(self, report: tuple[int, np.ndarray]) -> None:
        step, plane = report
        job = self._job
        if job is None:
            return
        place = dict(job.preview_place)
        shape, swapped = place.pop("shape"), place.pop("swapped")
        data = (plane.T if swapped else plane).reshape(shape)
        names = [BEFORE_NAME, AFTER_NAME] if step == 0 else [AFTER_NAME]
        for name in names:
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data, layer.translate = data, place["translate"]
                layer.contrast_limits = place["contrast_limits"]
            else:
                self.viewer.add_image(data, name=name, metadata={MADE_BY_KEY: "preview"}, **place)
        self.viewer.layers[AFTER_NAME].metadata["step"] = step

    def _on_returned(self, result: Adaptation) -> None:
        job = self._job
        self.result = result
        self.progress.value = self.progress.max
        what = "adapted" if result.adapted else "the starting model, unchanged"
        self.status.value = (
            f"Saved {job.name!r} ({what}) in {_duration(result.seconds)}: {result.message}. "
            "It is chosen in the Model list above."
        )
        show_info(f"WNE Adapt: saved model {job.name!r}: {result.message}")
        self._on_saved(job.name)

    def _on_error(self, err: Exception) -> None:
        if isinstance(err, AdaptationCancelled):
            self.status.value = f"Cancelled: {err}"
            show_info(f"WNE Adapt: {err}")
            return
        self._fail(advice(err))

    def _fail(self, message: str) -> None:
        self.status.value = f"Error: {message}"
        self.status.visible = True
        show_error(f"WNE Adapt: {message}")

    def _on_finished(self) -> None:
        self.worker = None
        if self.result is not None and self._job is not None:
            self.suggest_name(self._job.target.layer.name)  # the next run gets a new name
        self._lock(False)


def _taken(name: str) -> bool:
    try:
        return (saved_model_folder(name) / CARD_FILE).exists()
    except ValueError:
        return False


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
