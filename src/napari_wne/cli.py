"""`napari-wne` on the command line: a thin shell over `napari_wne.denoise`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from .api import denoise
from .models import DEFAULT_MODEL, MODELS, UntrainedModelWarning
from .sample_data import load_sample

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.simplefilter("always", UntrainedModelWarning)
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, PermissionError) as err:
        print(f"napari-wne: error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-wne", description="Normalization-equivariant deep denoising of microscopy."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add_model_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS))
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
        sub.add_argument("--dtype", default="float32", choices=["float32", "input"])

    demo = commands.add_parser("demo", help="denoise the bundled real sample (no download)")
    demo.add_argument("output_dir", nargs="?", default="napari-wne-demo", type=Path)
    add_model_options(demo)
    demo.set_defaults(run=_run_demo)

    one = commands.add_parser("denoise", help="denoise one TIFF file into a new TIFF file")
    one.add_argument("input", type=Path)
    one.add_argument("output", type=Path)
    one.add_argument("--axes", help="e.g. YX, ZYX, TYX, CZYX (default: from the file)")
    one.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_model_options(one)
    one.set_defaults(run=_run_denoise)

    listing = commands.add_parser("models", help="list the models and whether they are trained")
    listing.set_defaults(run=_run_models)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    image = load_sample("nuclei_2d")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    output = args.output_dir / "nuclei_2d_denoised.tif"
    start = time.perf_counter()
    result = denoise(image, args.model, axes="YX", device=args.device, dtype=args.dtype)
    seconds = time.perf_counter() - start
    _write_tiff(output, result, "YX", overwrite=True)
    _write_tiff(args.output_dir / "nuclei_2d_input.tif", image, "YX", overwrite=True)
    print(f"denoised the bundled sample {image.shape} {image.dtype} in {seconds:.2f} s -> {output}")
    return 0


def _run_denoise(args: argparse.Namespace) -> int:
    source, target = args.input, args.output
    if not source.is_file():
        raise FileNotFoundError(f"input {source} does not exist or is not a file")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"output {target} is the input file; choose another path")
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"output {target} exists; pass --overwrite to replace it")
    with tifffile.TiffFile(source) as tif:
        image = tif.series[0].asarray()
        axes = args.axes or _tiff_axes(tif.series[0].axes, image.ndim)
    start = time.perf_counter()
    result = denoise(image, args.model, axes=axes, device=args.device, dtype=args.dtype)
    seconds = time.perf_counter() - start
    _write_tiff(target, result, axes, overwrite=args.overwrite)
    print(f"denoised {source} {image.shape} ({axes}) in {seconds:.2f} s -> {target}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    for spec in MODELS.values():
        status = "trained" if spec.trained else "UNTRAINED"
        default = " (default)" if spec.name == DEFAULT_MODEL else ""
        print(f"{spec.name:16s} {status:9s} {spec.description}{default}")
    return 0


def _tiff_axes(tiff_axes: str, ndim: int) -> str | None:
    """Our axes from tifffile's, or None (2D only) when the file does not say."""
    axes = tiff_axes.upper()
    if len(axes) == ndim and set(axes) <= set("TCZYX"):
        return axes
    if ndim == 2:
        return "YX"
    raise ValueError(
        f"the file's axes {tiff_axes!r} are not all of T, C, Z, Y, X; pass --axes, e.g. ZYX"
    )


def _write_tiff(path: Path, data: np.ndarray, axes: str, *, overwrite: bool) -> None:
    """Write next to `path` and rename into place, so no half-written file looks complete."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        tifffile.imwrite(partial, data, photometric="minisblack", metadata={"axes": axes})
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"napari-wne: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
