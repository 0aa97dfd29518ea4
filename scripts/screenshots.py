"""Make the napari screenshots of the documentation, the way a user would get them.

    xvfb-run -a .venv/bin/python scripts/screenshots.py

Opens a viewer with the bundled 3D nuclei sample (original and noisy copy), docks the
"WNE Denoise" widget from the plugin's manifest, saves ``docs/images/napari-before.png``,
presses Denoise, waits for the result and saves ``docs/images/napari-after.png`` (the
clean reference, the noisy input and the result side by side), then presses Compare and
saves ``docs/images/napari-compare.png`` (input and result, linked cameras), and at last
opens "Adapt to this image", adapts the model to the plane shown and saves
``docs/images/napari-adapt.png`` (loss curve, and the noisy crop beside the starting
model's and the adapted model's output). The adapted model is saved in a temporary
folder, never in your own models. Rerun it whenever the widget or the shipped weights
change: with an untrained model, the "after" picture shows what random weights do, not
a denoised image, and the script says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_wne import DEFAULT_MODEL, MODELS
from napari_wne._widget.adapt import AFTER_NAME, BEFORE_NAME
from napari_wne.models import USER_MODELS_ENV

ROOT = Path(__file__).resolve().parents[1]


def settle(seconds: float = 0.5) -> None:
    """Let Qt lay out and paint (there is no event loop running in a script)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_for(done, timeout: float) -> None:
    """Process Qt events until `done()` is true: worker results arrive through the loop."""
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"not done after {timeout:.0f} s")
        QApplication.processEvents()
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS))
    parser.add_argument(
        "--volumes", default="auto", choices=["auto", "planes", "volumes"],
        help="how the Z stack is cut: auto (plane by plane for a 2D-trained model), planes, "
        "or volumes (3D)",
    )  # fmt: skip
    parser.add_argument("--size", type=int, nargs=2, default=(1500, 820), metavar=("W", "H"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for each run")
    parser.add_argument(
        "--adapt-steps", type=int, default=100,
        help="at most this many adaptation steps (the widget's default is 400)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-wne", show=True)
    viewer.window.resize(*args.size)
    viewer.open_sample("napari-wne", "nuclei_3d")
    original, noisy = viewer.layers
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-wne", "WNE Denoise")
    widget.image.value = noisy
    widget.model.value = args.model
    widget.device.value = "cpu"  # the same picture on every machine
    widget.volumes.value = args.volumes
    viewer.dims.current_step = (noisy.data.shape[0] // 2, 0, 0)
    settle()
    before = args.out / "napari-before.png"
    viewer.screenshot(str(before), canvas_only=False, flash=False)
    print(f"wrote {before}")

    started = time.perf_counter()
    widget.start()
    wait_for(lambda: not widget.busy, args.timeout)
    print(f"denoised in {time.perf_counter() - started:.1f} s: {widget.status.value}")
    name = f"{noisy.name} denoised ({args.model})"
    if name not in viewer.layers:
        print(f"no result layer: {widget.status.value}", file=sys.stderr)
        return 1
    original.visible = True
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari >= 0.9
    grid.shape = (1, len(viewer.layers))
    grid.enabled = True  # left to right, as in the layer list from the bottom up
    viewer.layers.selection.active = viewer.layers[name]
    viewer.reset_view()
    settle()
    after = args.out / "napari-after.png"
    viewer.screenshot(str(after), canvas_only=False, flash=False)
    print(f"wrote {after}")

    grid.enabled = False  # back to the view a user has after a run, then one click
    original.visible = False
    widget.compare_button.native.click()
    settle()
    compare = args.out / "napari-compare.png"
    viewer.screenshot(str(compare), canvas_only=False, flash=False)
    print(f"wrote {compare}")
    widget.compare_button.native.click()  # Back
    with tempfile.TemporaryDirectory(prefix="napari-wne-screenshots-") as models:
        os.environ[USER_MODELS_ENV] = models  # the adapted model is not kept
        adapt_view(viewer, widget, noisy, args)
    if not MODELS[args.model].trained:
        print(
            f"NOTE: model {args.model!r} is untrained: napari-after.png shows random weights "
            "at work, not a denoised image; rerun once trained weights ship",
            file=sys.stderr,
        )
    viewer.close()
    return 0


def adapt_view(viewer, widget, noisy, args: argparse.Namespace) -> None:
    """Adapt the model to the plane shown; the loss curve and before | after side by side."""
    viewer.window.resize(args.size[0], args.size[1] + 520)  # room for the open section
    viewer.layers.selection.active = noisy
    widget.adapt_section.expand(animate=False)
    panel = widget.adapt
    panel.train_on.value = "the plane shown"
    panel.steps.value = args.adapt_steps
    started = time.perf_counter()
    panel.adapt_button.native.click()
    wait_for(lambda: not panel.busy, args.timeout)
    print(f"adapted in {time.perf_counter() - started:.1f} s: {panel.status.value}")
    if AFTER_NAME not in viewer.layers:
        raise RuntimeError(f"no adapt preview: {panel.status.value}")
    for layer in viewer.layers:
        layer.visible = layer.name in (noisy.name, BEFORE_NAME, AFTER_NAME)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari >= 0.9
    grid.shape, grid.enabled = (1, 3), True
    viewer.layers.selection.active = viewer.layers[AFTER_NAME]
    viewer.reset_view()
    native = widget.adapt_section.parentWidget()
    while native is not None and not hasattr(native, "ensureWidgetVisible"):
        native = native.parentWidget()  # the dock's scroll area, if napari gave it one
    if native is not None:
        native.ensureWidgetVisible(panel.loss_plot)
    settle()
    path = args.out / "napari-adapt.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
