"""The "WNE Denoise" dock widget: a thin GUI over `napari_wne.denoise`.

It decides what to hand to `denoise` (the layer's data and axes, an output folder for
large or lazy layers) and shows what comes back. The parts live beside it: the fields in
`form`, the run in `runner`, the live preview in `preview`, the before/after views in
`compare`, what is read off a layer in `layers`, and the "Adapt to this image" section
in `adapt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning

from ..api import choose_model_for
from ..models import MODELS, ModelSpec, UntrainedModelWarning, get_model
from .adapt import AdaptPanel
from .adapt_job import AdaptTarget
from .compare import Compare, add_residual
from .form import SettingsForm
from .layers import guess_axes, layer_data, offered, pick_layer
from .preview import Preview
from .runner import Job, Runner, fail
from .section import Section

if TYPE_CHECKING:
    import napari

__all__ = ["DenoiseWidget"]

_FIELDS = (
    "image", "model", "model_info", "model_folder", "device", "axes", "axes_info", "volumes",
    "volumes_info", "strength", "tile", "overlap", "block", "norm", "precision", "dtype", "tta",
    "output_folder",
    "overwrite", "residual", "preview", "preview_status", "run_button", "cancel_button",
    "compare_button", "progress", "status",
)  # fmt: skip


class DenoiseWidget(Container):
    """Denoise an image layer with a WNE model, in full or as a live preview of one plane."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.form = form = SettingsForm()
        self._routed: tuple[tuple, str] | None = None  # ("auto" settled for a layer, model)
        for name in _FIELDS:  # the fields as attributes, for scripts and tests
            setattr(self, name, getattr(form, name))
        super().__init__(widgets=[*form.top(), *form.bottom()])
        self.native.layout().insertWidget(len(form.top()), form.advanced_section)
        form.image.choices = self._image_choices

        self.runner = Runner(
            napari_viewer, form, self._on_result, self._on_run_finished, self._on_warned
        )
        self._preview = Preview(
            napari_viewer, form, self._preview_target, self._notify_error, self._on_warned
        )
        self.compare = Compare(napari_viewer)
        self.adapt = AdaptPanel(napari_viewer, self._adapt_target, self._on_model_saved)
        self.adapt_section = Section("Adapt to this image", self.adapt.native)
        self.native.layout().addWidget(self.adapt_section)
        self.last_result: tuple[Image, Image] | None = None
        """The input and result layers of the latest run, for Compare."""
        self._axes_how = ""
        self._problem: str | None = None
        self._shown_messages: set[str] = set()
        # Stop a running job at its next block when the widget goes away with its viewer.
        cancel = self.runner.cancel_event
        self.native.destroyed.connect(lambda *_: cancel.set())

        form.run_button.changed.connect(self.start)
        form.cancel_button.changed.connect(self.runner.cancel)
        form.compare_button.changed.connect(self._on_compare)
        form.image.changed.connect(self._on_image_changed)
        for field in (form.model, form.model_folder):
            field.changed.connect(self._on_model_changed)
        form.axes.changed.connect(self._check)
        for field in (form.tile, form.overlap, form.block):
            field.changed.connect(self._check)
        form.preview.changed.connect(self._preview.toggled)
        for field in (
            form.image, form.model, form.model_folder, form.device, form.norm, form.precision,
            form.strength,
        ):  # fmt: skip
            field.changed.connect(self._preview.request)
        for field in (form.tile, form.overlap):  # after _check: only sizes that parse
            field.changed.connect(self._request_preview_if_valid)
        events = napari_viewer.layers.events
        for event in (events.inserted, events.removed, events.renamed):
            event.connect(self._refresh_layers)
        events.removed.connect(self._on_layer_removed)
        napari_viewer.layers.selection.events.active.connect(self._pick)
        napari_viewer.dims.events.current_step.connect(self._preview.request)
        self._pick(keep=False)  # not the list's first entry, which may be a hidden reference
        self._on_image_changed()  # also when the list already showed the layer picked
        self._on_model_changed()

    # -- state the tests and scripts look at -------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a full denoising run is in progress."""
        return self.runner.busy

    @property
    def preview_busy(self) -> bool:
        """Whether a preview is being computed or waits to be."""
        return self._preview.busy

    @property
    def preview_layer(self) -> Image | None:
        """The preview layer, while it is in the viewer."""
        return self._preview.layer

    @property
    def problem(self) -> str | None:
        """Why Denoise is off now (bad axes or sizes, a model that cannot run), or None."""
        return self._problem

    @property
    def model_name(self) -> str:
        """What `denoise` gets as `model`: the own model folder if one is set, else the name."""
        folder = self.form.model_folder.value
        return str(folder) if folder and str(folder) not in ("", ".") else self.form.model.value

    @property
    def model_label(self) -> str:
        """A short name for layer and file names, with the strength when below 1: results
        at two strengths get two layers (and files), not one run resuming the other."""
        name = self.model_name
        label = Path(name).name if name not in MODELS else name
        strength = round(float(self.form.strength.value), 2)
        return f"{label}, strength {strength:g}" if strength < 1 else label

    # -- layers ------------------------------------------------------------------------------

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if offered(layer)]

    def _refresh_layers(self, *_: Any) -> None:
        self.form.image.reset_choices()
        self._pick()
        self._update_compare()

    def _pick(self, *_: Any, keep: bool = True) -> None:
        """Follow the layer selection (see `pick_layer`), unless a run holds the settings.

        With `keep`, a layer chosen before stays chosen when nothing visible is selected.
        """
        if self.busy:
            return
        current = self.form.image.value
        kept = current if keep and current in self.viewer.layers else None
        chosen = pick_layer(self.viewer, kept)
        if chosen is not None and chosen is not current:
            self.form.image.value = chosen
        elif chosen is None or current is None:
            self._on_image_changed()

    def _on_layer_removed(self, _event: Any = None) -> None:
        self._preview.on_layer_removed()
        if self.compare.on and not self._compare_layers():
            self._set_compare(False)

    # -- checking the settings as they change ------------------------------------------------

    def _spec(self) -> ModelSpec | None:
        try:
            return get_model(self.model_name)
        except ValueError:
            return None

    def _on_model_changed(self, *_: Any) -> None:
        try:
            spec = get_model(self.model_name)
        except ValueError as err:
            self.form.model_info.value = f"Own model: {err}"
        else:
            text = spec.description
            if not spec.trained:
                text += ". UNTRAINED: random weights, the output is not a denoised image"
            self.form.model_info.value = text
        self._check()

    def _on_image_changed(self, *_: Any) -> None:
        """A new layer: show the axes it gives (the user may type over them)."""
        layer = self.form.image.value
        try:
            axes, self._axes_how = guess_axes(layer) if layer is not None else ("", "")
        except ValueError as err:
            axes, self._axes_how = "", str(err)
        self.form.axes.value = axes  # fires _check
        self._check()
        self._update_compare()
        if layer is not None:
            self.adapt.suggest_name(layer.name)

    def _check(self, *_: Any) -> None:
        """Validate axes and sizes, fit Volumes to the model, and switch Denoise on or off."""
        form = self.form
        layer = form.image.value
        shape = None
        if layer is not None and layer in self.viewer.layers and not layer.rgb:
            shape = tuple(layer_data(layer, self.viewer).shape)
        typed = layer is not None and form.axes.value != guess_axes_or_empty(layer)
        spec = self._spec()
        problems = [
            None if spec else "Own model: not a model folder (see the line under Model)",
            form.check_axes(shape, "" if typed else self._axes_how),
            form.check_sizes(),
            form.fit_model(spec, form.axes.value),
        ]
        if shape is None and layer is not None and layer.rgb:
            problems = [None]  # pressing Denoise explains RGB; nothing to check before
        self._problem = next((p for p in problems if p), None)
        self._update_run_button()

    def _update_run_button(self) -> None:
        self.form.run_button.enabled = not self.busy and self._problem is None
        self.form.run_button.tooltip = self._problem or "Denoise the chosen layer"

    # -- running -----------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        """The `denoise` arguments every run and preview share."""
        sizes = self.form.sizes()
        return {
            "model": self._settled_model(),
            "device": self.form.device.value,
            "tile": sizes["tile"],
            "halo": sizes["halo"],
            "norm": self.form.norm.value,
            "precision": self.form.precision.value,
            "tta": self.form.tta.value,
            "strength": self.form.strength.value,
        }

    def _settled_model(self) -> str:
        """The model runs and previews use. "auto" is settled once per layer and axes, on the
        plane `denoise` itself would measure, so a preview of any crop shows the model that
        Denoise will run (a crop alone might measure otherwise)."""
        name, layer = self.model_name, self.form.image.value
        if layer is None or name not in MODELS or not MODELS[name].routed:
            return name
        key = (id(layer.data), self.form.axes.value, self.form.volumes.value)
        if self._routed is None or self._routed[0] != key:
            try:
                choice = choose_model_for(
                    layer_data(layer, self.viewer), self.form.axes.value, self.form.volumes.value
                )
            except (ValueError, TypeError):  # axes being typed: `denoise` settles it itself
                return name
            self._routed = (key, choice.model)
        return self._routed[1]

    def start(self, *_: Any) -> None:
        """Denoise the chosen layer in a worker thread; the result arrives as a new layer."""
        if self.busy:
            return
        layer = self.form.image.value
        try:
            data = layer_data(layer, self.viewer)
            if self._problem:
                raise ValueError(self._problem)
            settings = {
                **self._settings(),
                "axes": self.form.axes.value.strip().upper(),
                "block": self.form.sizes()["block"],
            }
            job = self.runner.job(layer, data, settings, self.model_label)
            self.form.lock(True)
            self.form.run_button.enabled = False
            self.runner.start(job)
        except (ValueError, TypeError) as err:
            self._on_run_finished()
            fail(self.form, str(err))
            return
        if layer.multiscale:
            show_info(f"WNE Denoise: {layer.name!r} is multiscale; denoising level 0 (full size)")

    def _on_result(self, job: Job, result: Image) -> None:
        if self.form.residual.value:
            name = f"{job.layer.name} residual ({self.model_label})"
            add_residual(self.viewer, job.layer, result, name)
        self.last_result = (job.layer, result)
        self._update_compare()

    def _on_run_finished(self) -> None:
        self.form.lock(False)
        self._check()  # re-applies what the settings allow (Volumes, Denoise)

    def _notify_error(self, message: str) -> None:
        self._notify_once(message, show_error)

    def _notify_once(self, message: str, show=show_warning) -> None:
        if message not in self._shown_messages:
            self._shown_messages.add(message)
            show(message)

    def _on_warned(self, args: tuple) -> None:
        """Warnings raised in a worker (e.g. `UntrainedModelWarning`) become notifications."""
        message, category = args[0], args[1]
        prefix = "" if issubclass(category, UntrainedModelWarning) else "WNE Denoise: "
        self._notify_once(f"{prefix}{message}")

    def _request_preview_if_valid(self, *_: Any) -> None:
        if self._problem is None:  # half-typed sizes wait until they make sense
            self._preview.request()

    def _preview_target(self) -> tuple[Image, Any, dict[str, Any]]:
        layer = self.form.image.value
        if layer is None or layer not in self.viewer.layers:
            raise LookupError("the input layer is gone")
        return layer, layer_data(layer, self.viewer), self._settings()

    # -- adapt -------------------------------------------------------------------------------

    def _adapt_target(self) -> AdaptTarget:
        """The layer, axes, model and device the Denoise settings choose, for Adapt."""
        layer = self.form.image.value
        data = layer_data(layer, self.viewer)
        if self._problem:
            raise ValueError(self._problem)
        axes = self.form.axes.value.strip().upper()
        return AdaptTarget(layer, data, axes, self.model_name, self.form.device.value)

    def _on_model_saved(self, name: str) -> None:
        """A model was saved: list it, and choose it (instead of any Own model folder)."""
        self.form.model.reset_choices()
        self.form.model_folder.value = None
        self.form.model.value = name

    # -- compare -----------------------------------------------------------------------------

    def _compare_layers(self) -> tuple[Image, Image] | None:
        """The latest input and result, while both are in the viewer."""
        pair = self.last_result
        if pair is None or any(layer not in self.viewer.layers for layer in pair):
            return None
        return pair

    def _update_compare(self) -> None:
        pair = self._compare_layers()
        self.form.compare_button.enabled = pair is not None
        if pair is not None:
            self.form.compare_button.tooltip = (
                f"Show {pair[0].name!r} and {pair[1].name!r} side by side with linked "
                "cameras; press again to go back"
            )

    def _on_compare(self, *_: Any) -> None:
        self._set_compare(self.form.compare_button.native.isChecked())

    def _set_compare(self, on: bool) -> None:
        """Compare on (input | result, linked cameras) or back to the view as it was."""
        pair = self._compare_layers()
        if on and pair is not None:
            self.compare.show(*pair)
        else:
            self.compare.hide()
        button = self.form.compare_button
        button.native.blockSignals(True)
        button.native.setChecked(self.compare.on)
        button.native.blockSignals(False)
        button.text = "Back" if self.compare.on else "Compare"


def guess_axes_or_empty(layer: Image) -> str:
    try:
        return guess_axes(layer)[0]
    except ValueError:
        return ""
