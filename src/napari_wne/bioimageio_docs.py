"""The readable parts of a BioImage Model Zoo package: its README, written from the model
card, and its architecture as one self-contained Python file.

They are kept apart from the packaging (`napari_wne.bioimageio_export`) because they are
text for people and for other tools' Python, and change for different reasons than the
zoo's spec does. The architecture file is generated from this package's own sources, so the
network a zoo consumer rebuilds cannot drift from the one napari-wne runs.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

from . import __version__
from .backbones import BACKBONES, _nd
from .normalization import TILE_STATISTICS
from .wne import WNE

WNE_PAPER = (
    "Saied, A. and Fleuret, F. Normalization Equivariance for Arbitrary Backbones, with "
    "Application to Image Denoising. ICML 2026. arXiv:2605.08193",
    "10.48550/arXiv.2605.08193",
)
LICENSE = "BSD-3-Clause"
"""The licence of napari-wne, its code and the weights it ships."""


def tile_sides(low: tuple[int, ...]) -> str:
    """The smallest tile in words: one side for every axis, or one per axis."""
    if len(set(low)) == 1:
        return f"{low[0]} px per axis"
    return f"{' x '.join(map(str, low))} px ({', '.join('zyx'[-len(low) :])})"


def architecture_source(backbone: str) -> str:
    """One self-contained Python file that builds the network: our own modules (the
    dimension helpers, the backbone, the WNE wrapper) with their relative imports joined,
    and a `build_network` to call. Only torch is needed to run it."""
    builder = BACKBONES[backbone].build
    modules = [_nd, inspect.getmodule(builder), inspect.getmodule(WNE)]
    parts = [
        f'"""Architecture of a napari-wne {backbone} model, generated from napari-wne '
        f'{__version__} (BSD-3-Clause). Build it with build_network(...)."""',
        "",
        "from __future__ import annotations",
    ]
    for module in modules:
        if module is inspect.getmodule(WNE):  # WNE's statistics live in their own home
            parts += ["", "# --- from napari_wne.normalization ---"]
            parts += [inspect.getsource(function) for function in TILE_STATISTICS]
        parts += ["", f"# --- from {module.__name__} ---", _without_local_imports(module)]
    parts += [
        "",
        "",
        "def build_network(backbone_kwargs=None, spatial_dims=2, channels=1, wne=True, "
        "wne_eps=0.0):",
        '    """The backbone, wrapped with WNE when `wne` (as napari-wne runs it)."""',
        "    kwargs = {k: tuple(v) if isinstance(v, list) else v "
        "for k, v in (backbone_kwargs or {}).items()}",
        f"    network = {builder.__name__}(spatial_dims=spatial_dims, channels=channels, **kwargs)",
        "    return WNE(network, eps=wne_eps) if wne else network",
        "",
    ]
    return "\n".join(parts)


def _without_local_imports(module: Any) -> str:
    """A module's source less `from __future__` and relative imports (joined in one file)."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    drop: set[int] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or node.module == "__future__"):
            drop.update(range(node.lineno - 1, node.end_lineno))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def readme(card: dict, low: tuple[int, ...]) -> str:
    """The model card as the package's documentation (with the Validation section the zoo
    asks for)."""
    wne = card["wne"]
    lines = [
        f"# {card['name']} (napari-wne)",
        "",
        card.get("description", ""),
        "",
        "Exported by napari-wne "
        + __version__
        + ". "
        + (
            "The network includes the WNE wrapper (Saied & Fleuret, ICML 2026): it normalizes "
            "each input by its own mean and standard deviation, denoises, and restores the "
            "intensities, so f(a*y + b) = a*f(y) + b. Feed raw intensities, in any units: no "
            "pre- or postprocessing is needed."
            if wne
            else "A plain network: it sees raw intensities as they are, like napari-wne "
            "runs it (no normalization)."
        ),
        "",
        "## Usage",
        "",
        f"- Input and output: one channel, float32, axes batch, channel, "
        f"{'z, ' if card['spatial_dims'] == 3 else ''}y, x.",
        f"- Tiles of at least {tile_sides(low)}, of any size above; larger tiles (512 px "
        "or more) give statistics closer to the whole image and less halo overhead.",
        "- Weights: TorchScript (Fiji/deepImageJ, bioimageio.core) and a PyTorch state dict "
        "with its architecture in `architecture.py` (needs only torch).",
        "",
    ]
    if "steps" in card:
        noise = card.get("noise", {}).get("kind", "synthetic")
        lines += [
            "## Training",
            "",
            f"{card.get('mode', 'supervised')}, {card['steps']:,} steps on "
            f"{len(card.get('training_data', []))} image sources with {noise} synthetic "
            "noise (napari-wne's training; the full configuration is in `config.napari_wne`).",
            "",
        ]
    lines += ["## Validation", ""]
    scores = {k: v for k, v in card.get("scores", {}).items() if k != "how"}
    if scores:
        lines += [
            "Real microscopy pairs the model never saw in training:",
            "",
            "| data | images | input PSNR / SSIM | model PSNR / SSIM |",
            "|---|---|---|---|",
        ]
        for group, s in scores.items():
            lines.append(
                f"| {group} | {s['images']} | {s['input_psnr']:.2f} / {s['input_ssim']:.3f} | "
                f"{s['psnr']:.2f} / {s['ssim']:.3f} |"
            )
        lines += ["", f"Scores: {card['scores']['how']}.", ""]
    else:
        lines += ["Not validated: this model has no trained weights (it is for testing).", ""]
    lines += [
        "## Citation and licence",
        "",
        f"{WNE_PAPER[0]}. doi:{WNE_PAPER[1]}",
        "",
        f"Licence: {LICENSE}.",
        "",
    ]
    return "\n".join(lines)
