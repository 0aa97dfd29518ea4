"""Export a model as a BioImage Model Zoo package (spec 0.5), for Fiji/deepImageJ and others.

The package holds the whole map our engine runs on a tile: for a WNE model the wrapper is
inside the network, so a zoo consumer feeds raw intensities and needs no pre- or
postprocessing. It carries TorchScript weights (what deepImageJ and most consumers run)
and a pytorch_state_dict with its architecture as one self-contained Python file (built
from this package's own sources, so the two cannot drift). Sizes are declared as
``min + n*8`` per spatial axis with the engine's halo; a test input (a crop of a bundled
sample), its output, a cover and a README from the model card come along. No URL in it
needs to resolve: the citation is a DOI, checked offline.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from . import __version__
from .bioimageio_docs import LICENSE, WNE_PAPER, architecture_source, readme, tile_sides
from .bioimageio_models import require_bioimageio
from .halo import compact, default_halo
from .model_io import CARD_FILE, atomic_write, read_model_card
from .models import MODELS, get_model, load_model, warn_if_untrained
from .sample_data import NOISE, add_poisson_gaussian_noise, load_sample

__all__ = ["STEP", "export_bioimageio"]

GRID = 8
"""The smallest tile is a multiple of 8 (the downsampling grid the engine's tiles start on)."""
STEP = 1
"""Above it, any size: the networks pad internally (checked on the trace), so a consumer's
tile of any size gives what napari-wne gives, with no padding of its own."""
TEST_SIDE = 128
"""The test crop's side (grown to the smallest valid size when the halo needs more)."""


def export_bioimageio(
    model: str,
    output: str | Path,
    *,
    spatial_dims: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` (a name from ``napari_wne.MODELS`` or a trained model folder) as a
    bioimage.io model package at `output` (a ``.zip``) and return its path.

    `spatial_dims` is only for untrained models (trained ones keep their training's).
    The zip appears whole or not at all.
    """
    require_bioimageio()
    output = Path(output).expanduser()
    if output.suffix.lower() != ".zip":
        raise ValueError(f"{output}: a bioimage.io package is a .zip file; name it *.zip")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    card = _card(model, spatial_dims)
    dims = card["spatial_dims"]
    spec = get_model(model)
    warn_if_untrained(spec)
    network = load_model(model, dims, "cpu")
    halo = default_halo(model, dims)  # per axis: BMZ 0.5 declares a halo on each
    low = tuple(_round_up(2 * h + GRID) for h in halo)  # smallest tiles keeping a core
    with tempfile.TemporaryDirectory(prefix="napari-wne-bioimageio-") as folder:
        work = Path(folder)
        test_in = _test_input(dims, low)
        with torch.inference_mode():
            test_out = network(torch.from_numpy(test_in)).numpy().astype(np.float32)
        files = _write_files(work, card, network, test_in, test_out, low)
        descr = _description(card, spec.name, files, halo, low, test_out)
        package = work / "package.zip"
        _save(descr, package)
        atomic_write(output, lambda tmp: Path(tmp).write_bytes(package.read_bytes()))
    return output


def _round_up(size: int) -> int:
    return -(-size // GRID) * GRID


def _card(model: str, spatial_dims: int | None) -> dict[str, Any]:
    """The model card: the trained one, or the registry's defaults for an untrained model."""
    spec = MODELS.get(model)
    if spec is not None and spec.trained:
        card = read_model_card(resources.files("napari_wne").joinpath("weights", spec.weights))
    elif spec is not None:
        card = {
            "backbone": spec.backbone,
            "wne": spec.wne,
            "wne_eps": 0.0,
            "spatial_dims": spatial_dims or 2,
            "channels": 1,
            "backbone_kwargs": {},
            "description": spec.description,
        }
    else:
        path = Path(model).expanduser()
        if not (path.is_dir() and (path / CARD_FILE).is_file()) and path.name != CARD_FILE:
            known = ", ".join(sorted(MODELS))
            raise ValueError(
                f"cannot export {model!r}: export takes a model name ({known}) or a folder "
                f"written by `napari-wne train` (with {CARD_FILE})"
            )
        card = read_model_card(path)
    if spatial_dims is not None and spatial_dims != card["spatial_dims"]:
        raise ValueError(
            f"model {model!r} was trained on {card['spatial_dims']}-D images; it cannot be "
            f"exported for {spatial_dims}-D"
        )
    if card.get("channels", 1) != 1:
        raise ValueError(f"model {model!r} has {card['channels']} channels; export takes one")
    return {**card, "name": card.get("name") or Path(model).name}


def _test_input(dims: int, low: tuple[int, ...]) -> np.ndarray:
    """A centred crop of a bundled sample, shaped (1, 1, *spatial), float32 raw intensities."""
    if dims == 2:
        image = load_sample("nuclei_2d")
    else:
        image = add_poisson_gaussian_noise(load_sample("nuclei_3d"), **NOISE)
    shape = [min(max(m, TEST_SIDE), n) for m, n in zip(low, image.shape, strict=True)]
    if any(s < m for s, m in zip(shape, low, strict=True)):
        raise ValueError(
            f"the bundled sample {image.shape} is smaller than the model's smallest tile "
            f"({tile_sides(low)}); its halo is too large to make a test input"
        )
    crop = tuple(
        slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(image.shape, shape, strict=True)
    )
    return np.ascontiguousarray(image[crop], dtype=np.float32)[None, None]


# --- the package's files --------------------------------------------------------------------


def _write_files(
    work: Path,
    card: dict,
    network: torch.nn.Module,
    test_in: np.ndarray,
    test_out: np.ndarray,
    low: tuple[int, ...],
) -> dict[str, Path]:
    files = {
        "test_input": work / "test_input.npy",
        "test_output": work / "test_output.npy",
        "sample_input": work / "sample_input.tif",
        "sample_output": work / "sample_output.tif",
        "cover": work / "cover.png",
        "readme": work / "README.md",
        "architecture": work / "architecture.py",
        "state_dict": work / "weights.pt",
        "torchscript": work / "weights_torchscript.pt",
    }
    np.save(files["test_input"], test_in)
    np.save(files["test_output"], test_out)
    tifffile.imwrite(files["sample_input"], test_in[0, 0])  # for people: any image viewer
    tifffile.imwrite(files["sample_output"], test_out[0, 0])
    _write_cover(files["cover"], test_in[0, 0], test_out[0, 0])
    files["readme"].write_text(readme(card, low), encoding="utf-8")
    files["architecture"].write_text(architecture_source(card["backbone"]), encoding="utf-8")
    state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    torch.save(state, files["state_dict"])
    _trace(network, test_in, low).save(str(files["torchscript"]))
    return files


def _trace(
    network: torch.nn.Module, test_in: np.ndarray, low: tuple[int, ...]
) -> torch.jit.ScriptModule:
    """TorchScript by tracing, checked against the network at other sizes and batch sizes
    (a trace that had frozen one size would fail here, not in a user's Fiji)."""
    example = torch.from_numpy(test_in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trace's deprecation and Python-bool notes
        traced = torch.jit.trace(network, example, check_trace=False)
    generator = torch.Generator().manual_seed(0)
    for batch, sides in ((1, low), (2, (low[0] + 5, *(m + 11 for m in low[1:])))):
        x = 100 + 50 * torch.rand((batch, 1, *sides), generator=generator)
        with torch.inference_mode():
            expected, got = network(x), traced(x)
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-3):
            raise RuntimeError(
                f"the traced TorchScript differs from the network at shape {tuple(x.shape)} "
                f"(max |diff| {float((got - expected).abs().max()):.3g}); cannot export it"
            )
    return traced


def _write_cover(path: Path, noisy: np.ndarray, denoised: np.ndarray) -> None:
    """Input and result side by side (2:1), each plane at the same contrast."""
    import imageio.v3 as iio

    if noisy.ndim == 3:  # a volume: its middle plane
        noisy, denoised = noisy[len(noisy) // 2], denoised[len(denoised) // 2]
    low, high = np.percentile(noisy, (0.5, 99.5))
    pair = np.concatenate([noisy, denoised], axis=1)
    scaled = np.clip((pair - low) / max(high - low, 1e-12), 0, 1)
    iio.imwrite(path, np.rint(scaled * 255).astype(np.uint8))


# --- the description -------------------------------------------------------------------------


def _description(
    card: dict,
    name: str,
    files: dict[str, Path],
    halo: tuple[int, ...],
    low: tuple[int, ...],
    test_out: np.ndarray,
) -> Any:
    from bioimageio.spec.model import v0_5 as bmz

    dims = card["spatial_dims"]
    space = ["z", "y", "x"][-dims:]
    inputs = bmz.InputTensorDescr(
        id=bmz.TensorId("raw"),
        description="raw intensities, any units",
        axes=[
            bmz.BatchAxis(),
            bmz.ChannelAxis(channel_names=[bmz.Identifier("channel0")]),
            *(
                bmz.SpaceInputAxis(id=bmz.AxisId(a), size=bmz.ParameterizedSize(min=m, step=STEP))
                for a, m in zip(space, low, strict=True)
            ),
        ],
        test_tensor=bmz.FileDescr(source=files["test_input"]),
        sample_tensor=bmz.FileDescr(source=files["sample_input"]),
        data=bmz.IntervalOrRatioDataDescr(type="float32"),
    )

    def out_axis(a: str, h: int) -> Any:
        size = bmz.SizeReference(tensor_id=bmz.TensorId("raw"), axis_id=bmz.AxisId(a))
        if h > 0:
            return bmz.SpaceOutputAxisWithHalo(id=bmz.AxisId(a), size=size, halo=h)
        return bmz.SpaceOutputAxis(id=bmz.AxisId(a), size=size)

    outputs = bmz.OutputTensorDescr(
        id=bmz.TensorId("denoised"),
        description="denoised intensities, in the input's units",
        axes=[
            bmz.BatchAxis(),
            bmz.ChannelAxis(channel_names=[bmz.Identifier("channel0")]),
            *(out_axis(a, h) for a, h in zip(space, halo, strict=True)),
        ],
        test_tensor=bmz.FileDescr(source=files["test_output"]),
        sample_tensor=bmz.FileDescr(source=files["sample_output"]),
        data=bmz.IntervalOrRatioDataDescr(type="float32"),
    )
    torch_version = bmz.Version(torch.__version__)
    kwargs = {
        "backbone_kwargs": card.get("backbone_kwargs", {}),
        "spatial_dims": dims,
        "channels": 1,
        "wne": bool(card["wne"]),
        "wne_eps": float(card.get("wne_eps", 0.0)),
    }
    weights = bmz.WeightsDescr(
        pytorch_state_dict=bmz.PytorchStateDictWeightsDescr(
            source=files["state_dict"],
            architecture=bmz.ArchitectureFromFileDescr(
                source=files["architecture"],
                callable=bmz.Identifier("build_network"),
                kwargs=kwargs,
            ),
            pytorch_version=torch_version,
        ),
        torchscript=bmz.TorchscriptWeightsDescr(
            source=files["torchscript"],
            parent="pytorch_state_dict",
            pytorch_version=torch_version,
            comment="traced from the pytorch_state_dict network; checked at several sizes",
        ),
    )
    # Denoised intensities are in the input's units (hundreds here): tolerate float32
    # rounding of order 1e-5 relative, not an absolute 1e-3 meant for [0, 1] data.
    scale = float(np.abs(test_out).max())
    tolerance = bmz.ReproducibilityTolerance(
        relative_tolerance=1e-3, absolute_tolerance=max(1e-3, 1e-5 * scale)
    )
    training = {k: card[k] for k in ("mode", "steps", "noise", "scores", "config") if k in card}
    return bmz.ModelDescr(
        name=f"napari-wne {name}"[:64],
        description=(
            f"{card.get('description', card['backbone'])}. Denoises {dims}D single-channel "
            "microscopy; raw intensities in, denoised intensities out."
        )[:1000],
        authors=[bmz.Author(name="napari-wne developers")],
        cite=[bmz.CiteEntry(text=WNE_PAPER[0], doi=bmz.Doi(WNE_PAPER[1]))],
        license=bmz.LicenseId(LICENSE),
        documentation=bmz.FileDescr(source=files["readme"]),
        covers=[bmz.FileDescr(source=files["cover"])],
        tags=["denoising", "normalization-equivariance", f"{dims}d", "pytorch", "napari-wne"],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        version=bmz.Version(__version__),
        config=bmz.Config(
            bioimageio=bmz.BioimageioConfig(reproducibility_tolerance=[tolerance]),
            napari_wne={
                "version": __version__,
                "model": name,
                "backbone": card["backbone"],
                "wne": bool(card["wne"]),
                "halo": compact(halo),
                **{k: json.loads(json.dumps(v)) for k, v in training.items()},
            },
        ),
    )


def _save(descr: Any, path: Path) -> None:
    from bioimageio.spec import InvalidDescr, save_bioimageio_package

    if isinstance(descr, InvalidDescr):  # pragma: no cover - the builders raise first
        raise ValueError(f"the description is invalid: {descr.validation_summary}")
    save_bioimageio_package(descr, output_path=path)
