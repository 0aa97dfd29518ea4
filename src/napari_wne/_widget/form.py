"""The widget's fields: what the user can set, checked as they type, and locked during a run.

Choices and defaults are read from where the library defines them (`denoise`'s signature
and its ``Literal`` types, `napari_wne.MODELS`), so the widget never restates them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
)
from qtpy.QtCore import Qt
from superqt import QCollapsible

from ..api import denoise
from ..axes import parse_axes
from ..devices import available_devices
from ..models import DEFAULT_MODEL, MODELS, ModelSpec, saved_models
from ..modes import DTYPE, INSTANCES, NORM, OUTPUT_FORMAT, PRECISION

__all__ = ["AUTO", "IN_MEMORY", "SettingsForm", "model_choices", "parse_size"]

AUTO = "auto"
"""What an automatic setting shows (and accepts) instead of a number."""

IN_MEMORY = "auto"
"""The Save-as choice that keeps small in-memory results in memory (large ones: OME-Zarr)."""

DEFAULTS = {name: p.default for name, p in inspect.signature(denoise).parameters.items()}
_ERROR_STYLE = "color: #e0605a;"


def parse_size(text: str, what: str) -> int | tuple[int, ...] | None:
    """``"auto"`` (or nothing) is None; ``"64"`` one size; ``"32, 128, 128"`` one per axis."""
    text = text.strip().lower()
    if text in ("", AUTO):
        return None
    try:
        sizes = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"{what} {text!r}: type '{AUTO}', a positive size, or one per axis")
    return sizes[0] if len(sizes) == 1 else sizes


def model_choices(_widget: Any = None) -> list[tuple[str, str]]:
    """The Model list: every shipped model, then the user's saved ones (read anew each time)."""
    shipped = [(n if s.trained else f"{n} (untrained)", n) for n, s in MODELS.items()]
    return shipped + [(f"{name} (saved)", name) for name in saved_models()]


def _size_field(label: str, tooltip: str) -> LineEdit:
    field = LineEdit(label=label, value=AUTO, tooltip=tooltip)
    field.native.setPlaceholderText(AUTO)
    return field


class SettingsForm:
    """Every field of the widget, grouped: main settings, a collapsed Advanced section,
    the run buttons and the status lines."""

    def __init__(self) -> None:
        self.image = ComboBox(label="Image")
        self.model = ComboBox(label="Model", choices=model_choices, value=DEFAULT_MODEL)
        self.model_info = _note()
        self.model_folder = FileEdit(
            label="Own model", mode="d", nullable=True,
            tooltip="A folder written by `napari-wne train` (e.g. a model adapted to your "
            "data); when set, it is used instead of the model above.",
        )  # fmt: skip
        devices = ["auto", *(d for d in available_devices() if d != "cpu"), "cpu"]
        self.device = ComboBox(label="Device", choices=devices, value=DEFAULTS["device"])
        self.axes = LineEdit(
            label="Axes",
            tooltip="One letter per dimension of the layer, from T (time), C (channel), "
            "Z (depth), Y and X. Taken from the layer; type over it to change it.",
        )
        self.axes_info = _note()
        self.volumes = ComboBox(
            label="Volumes",
            choices=INSTANCES.items(),
            value=DEFAULTS["instances"],
            tooltip=f"How layers with a Z axis are denoised: {INSTANCES.help}.",
        )
        self.volumes_info = _note()
        self.output_folder = FileEdit(
            label="Output folder", mode="d", nullable=True,
            tooltip="Where results are written, block by block, and read back lazily (lazy or "
            "large layers always are); default: the folder of the layer's file.",
        )  # fmt: skip
        self.output_format = ComboBox(
            label="Save as",
            choices=[("in memory (OME-Zarr when large)", IN_MEMORY), *OUTPUT_FORMAT.items()],
            value=IN_MEMORY,
            tooltip="Keep small results in memory, or write every result into the Output "
            f"folder as: {OUTPUT_FORMAT.help}.",
        )
        self.overwrite = CheckBox(
            text="Replace existing output", value=DEFAULTS["overwrite"],
            tooltip="Otherwise an unfinished output of the same name is resumed and a "
            "finished one is kept (the new result gets a numbered name).",
        )  # fmt: skip
        self.residual = CheckBox(
            text="Add residual layer (input - result)", value=False,
            tooltip="A layer of what denoising removed, in a diverging colormap centred at 0: "
            "it should look like noise, with no structure of the image in it.",
        )  # fmt: skip
        self.preview = CheckBox(
            text="Preview", value=False,
            tooltip="Denoise only the plane shown, again whenever the slider moves. Volumes "
            "denoised in 3D are previewed plane by plane (2D), an approximation.",
        )  # fmt: skip
        self.strength = FloatSlider(
            label="Strength", min=0.0, max=1.0, step=0.05, value=DEFAULTS["strength"],
            tooltip="How much of the denoiser's change to keep: 1 the full result; lower "
            "values give part of the input back, noise and fine detail with it. Worth trying "
            "on images with little noise, with the preview on (docs/results.md).",
        )  # fmt: skip
        self.preview_status = _note()
        # Advanced: collapsed, since the automatic values suit almost every image.
        self.tile = _size_field(
            "Tile size",
            "Largest tile side in pixels, or one per axis ('48, 128, 128'); auto: 1280 in 2D, "
            "48x128x128 in 3D. Smaller tiles use less memory.",
        )
        self.overlap = _size_field(
            "Overlap",
            "Context in pixels kept around each tile; auto: the model's whole receptive field "
            "when at most 32 px, else its measured effective radius.",
        )
        self.block = _size_field(
            "Block size",
            "Side of the blocks that are read, written and cancelled between; auto: 4096 in "
            "2D, 128x512x512 in 3D.",
        )
        self.norm = ComboBox(
            label="Normalization", choices=list(NORM.values), value=DEFAULTS["norm"],
            tooltip=NORM.help + ".",
        )  # fmt: skip
        self.precision = ComboBox(
            label="Precision", choices=list(PRECISION.values), value=DEFAULTS["precision"],
            tooltip=PRECISION.help + ".",
        )  # fmt: skip
        self.dtype = ComboBox(
            label="Output dtype", choices=list(DTYPE.values), value=DEFAULTS["dtype"],
            tooltip=DTYPE.help + ".",
        )  # fmt: skip
        self.tta = CheckBox(
            text="Test-time augmentation (8x slower)", value=DEFAULTS["tta"],
            tooltip="Average the model over the 8 flips and quarter turns of each plane; "
            "measured gain on real data: +0.03 to +0.10 dB (docs/results.md).",
        )  # fmt: skip
        self.sizes_info = _note()
        self.advanced = Container(
            widgets=[
                self.tile, self.overlap, self.block, self.norm, self.precision, self.dtype,
                self.tta, self.sizes_info,
            ]
        )  # fmt: skip
        self.advanced_section = QCollapsible("Advanced")
        self.advanced_section.addWidget(self.advanced.native)
        self.advanced_section.collapse(animate=False)

        self.run_button = PushButton(text="Denoise")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.compare_button = PushButton(
            text="Compare", enabled=False,
            tooltip="Show the input and its result side by side with linked cameras "
            "(napari's grid mode); press again to go back.",
        )  # fmt: skip
        self.compare_button.native.setCheckable(True)
        self.progress = ProgressBar(label="Progress", min=0, max=1, value=0)
        self.status = _note()
        self.buttons = Container(
            widgets=[self.run_button, self.cancel_button, self.compare_button],
            layout="horizontal", labels=False,
        )  # fmt: skip

    # -- layout --------------------------------------------------------------------------------

    def top(self) -> list:
        """The fields above the Advanced section."""
        return [
            self.image, self.model, self.model_info, self.model_folder, self.device,
            self.axes, self.axes_info, self.volumes, self.volumes_info, self.strength,
        ]  # fmt: skip

    def bottom(self) -> list:
        """The fields below it."""
        return [
            self.output_folder, self.output_format, self.overwrite, self.residual, self.preview,
            self.preview_status, self.buttons, self.progress, self.status,
        ]  # fmt: skip

    def settings_fields(self) -> list:
        """Every field that changes what a run computes: locked while one runs."""
        return [
            self.image, self.model, self.model_folder, self.device, self.axes, self.volumes,
            self.output_folder, self.output_format, self.overwrite, self.residual,
            self.strength, self.advanced,
        ]  # fmt: skip

    def lock(self, locked: bool) -> None:
        """Freeze the settings during a run (Cancel is the one control left to press)."""
        for field in self.settings_fields():
            field.enabled = not locked
        self.cancel_button.enabled = locked

    # -- reading and checking the fields ---------------------------------------------------------

    def sizes(self) -> dict[str, Any]:
        """Tile, Overlap and Block as `denoise` takes them; a ValueError names a bad one."""
        return {
            "tile": parse_size(self.tile.value, "Tile size"),
            "halo": parse_size(self.overlap.value, "Overlap"),
            "block": parse_size(self.block.value, "Block size"),
        }

    def check_sizes(self) -> str | None:
        """Show what is wrong with the size fields, as they are typed; None when nothing."""
        try:
            self.sizes()
        except ValueError as err:
            _show(self.sizes_info, str(err), error=True)
            return str(err)
        _show(self.sizes_info, "")
        return None

    def check_axes(self, shape: tuple[int, ...] | None, how: str = "") -> str | None:
        """Validate the Axes field against the layer's shape (by `napari_wne.axes`' rules)."""
        if shape is None:
            _show(self.axes_info, "")
            return "there is no image layer to denoise; open an image first"
        try:
            layout = parse_axes(self.axes.value.strip().upper() or None, shape)
        except ValueError as err:
            _show(self.axes_info, f"Axes: {err}", error=True)
            return f"Axes: {err}"
        text = f"from {how}" if how else "as typed"
        if layout.batch_axes:
            text += f"; each {' and '.join(layout.batch_axes)} index is denoised on its own"
        _show(self.axes_info, text)
        return None

    def fit_model(self, spec: ModelSpec | None, axes: str) -> str | None:
        """Disable the Volumes choices the model cannot run, and say why.

        Returns why no run can work (a 3D-only model on an image without Z), or None.
        """
        reasons = {}
        name = Path(spec.name).name if spec is not None else ""  # a folder by its own name
        if spec is not None and 3 not in spec.dims:
            reasons["volumes"] = f"{name} was trained on 2D images only"
        if spec is not None and 2 not in spec.dims:
            reasons["planes"] = f"{name} was trained on 3D volumes only"
        combo = self.volumes.native
        for row, value in enumerate(INSTANCES.values):
            item = combo.model().item(row)
            item.setEnabled(value not in reasons)
            item.setData(reasons.get(value), Qt.ItemDataRole.ToolTipRole)
        if self.volumes.value in reasons:
            self.volumes.value = DEFAULTS["instances"]
        has_z = "Z" in axes.upper()
        self.volumes.native.setEnabled(has_z)
        notes = [f"{INSTANCES.words[v]}: off, {why}" for v, why in reasons.items()]
        if not has_z:
            notes = ["only for images with a Z axis"]
        problem = None
        if "planes" in reasons and not has_z:
            problem = f"{reasons['planes']}: this image has no Z axis; choose a 2D model"
            notes = [problem]
        _show(self.volumes_info, "; ".join(notes), error=problem is not None)
        return problem


def _note() -> Label:
    label = Label(value="")
    label.native.setWordWrap(True)
    return label


def _show(label: Label, text: str, error: bool = False) -> None:
    label.value = text
    label.native.setStyleSheet(_ERROR_STYLE if error else "")
    label.visible = bool(text)
