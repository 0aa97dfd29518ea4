"""`napari-wne demo`, `denoise` and `batch`: files in, files out, through `napari_wne.denoise`."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..modes import (
    DEFAULT_MODEL,
    DTYPE,
    INSTANCES,
    MISSING_CHUNKS,
    NORM,
    OUTPUT_FORMAT,
    PRECISION,
    PYRAMID,
    SUFFIXES,
)
from ..strength import FULL_STRENGTH

if TYPE_CHECKING:  # the library (and torch) is imported only when a command runs
    from ..pipeline import Progress
    from ..writers import DenoisedImage


def add_parsers(commands) -> None:
    """The `demo`, `denoise` and `batch` commands."""
    demo = commands.add_parser(
        "demo",
        help="denoise the bundled real sample (no download)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument(
        "output_dir", nargs="?", default="napari-wne-demo", type=Path,
        help="where the input and its denoised copy are written as TIFFs",
    )  # fmt: skip
    add_model_options(demo)
    demo.set_defaults(run=_run_demo)

    one = commands.add_parser(
        "denoise",
        help="denoise one image (TIFF, zarr or OME-Zarr) into an OME-Zarr or a TIFF",
        description="Denoise INPUT block by block into OUTPUT, in the format its suffix "
        "names: " + OUTPUT_FORMAT.help + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    one.add_argument("input", type=Path, help="a TIFF, OME-TIFF, zarr array or OME-Zarr image")
    suffixes = ", ".join(s for names in SUFFIXES.values() for s in names)
    one.add_argument("output", type=Path, help=f"the result, ending in {suffixes}")
    add_run_options(one)
    one.set_defaults(run=_run_denoise)

    many = commands.add_parser(
        "batch",
        help="denoise every image of a folder; a bad file is reported and skipped",
        description="Denoise each file of INPUT_DIR that matches --pattern into OUTPUT_DIR "
        "as <name>_denoised.ome.zarr (or .tif with --format tif), <name> being the file name "
        "without its format suffix. Rerun it to finish an interrupted batch: finished "
        "outputs are skipped. Files that fail are reported and skipped; the exit code is 1 "
        "if any failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    many.add_argument("input_dir", type=Path, help="the folder of images to denoise")
    many.add_argument("output_dir", type=Path, help="where the results are written")
    many.add_argument(
        "--pattern",
        default="*",
        help="glob of the files to take (* takes every .tif, .tiff and .zarr entry)",
    )
    many.add_argument(
        "--format",
        default=OUTPUT_FORMAT.default,
        choices=[*OUTPUT_FORMAT.values, *BATCH_ALIASES],
        help=OUTPUT_FORMAT.help + " ('zarr' and 'tif' are short for ome-zarr and imagej-tiff)",
    )
    add_run_options(many)
    many.set_defaults(run=_run_batch)


def add_model_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="a name from `napari-wne models`, or the folder of a model trained with "
        "`napari-wne train`",
    )
    sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    sub.add_argument(
        PRECISION.option,
        default=PRECISION.default,
        choices=PRECISION.values,
        help=PRECISION.help,
    )
    sub.add_argument(DTYPE.option, default=DTYPE.default, choices=DTYPE.values, help=DTYPE.help)


def add_run_options(sub: argparse.ArgumentParser) -> None:
    add_model_options(sub)
    sub.add_argument(
        "--axes",
        help="e.g. YX, ZYX, TYX, CZYX (default: from the file); overrides what the file says",
    )
    for mode in (MISSING_CHUNKS, INSTANCES, PYRAMID):
        sub.add_argument(mode.option, default=mode.default, choices=mode.values, help=mode.help)
    sub.add_argument("--tile", type=int, nargs="+", help="tile side(s) in pixels")
    sub.add_argument(
        "--overlap",
        type=int,
        nargs="+",
        help="context kept around each tile, in pixels, one for every axis or one per axis "
        "(default: the model's whole receptive field when at most 32 px, else its effective "
        "radius measured along each axis)",
    )
    sub.add_argument(NORM.option, default=NORM.default, choices=NORM.values, help=NORM.help)
    sub.add_argument(
        "--batch-size", type=int, help="tiles per forward pass (default: what the device holds)"
    )
    sub.add_argument(
        "--cpu-fallback",
        action="store_true",
        help="when the GPU runs out of memory even for the smallest pieces of a tile, go on "
        "on the CPU (before that, the batch and then the tiles are halved, same result)",
    )
    sub.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 flips and turns (8x the time)",
    )
    sub.add_argument(
        "--strength",
        type=float,
        default=FULL_STRENGTH,
        help="how much of the denoiser's change to keep, 0 to 1; below 1 gives part of the "
        "input (noise and fine detail) back, for images with little noise",
    )
    sub.add_argument("--block", type=int, nargs="+", help="block (task and shard) side(s)")
    flags = sub.add_mutually_exclusive_group()
    flags.add_argument("--resume", action="store_true", help="finish an interrupted run")
    flags.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (only one that napari-wne wrote)",
    )
    sub.add_argument(
        "--allow-unfinished",
        action="store_true",
        help="denoise an unfinished output of an interrupted run as it is (refused by "
        "default: finish it with --resume first)",
    )
    sub.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the blocks on this dask.distributed scheduler (e.g. tcp://host:8786)",
    )
    sub.add_argument(
        "--gpu-per-task",
        action="store_true",
        help="with --scheduler: each task needs resource GPU=1 (workers started with "
        "--resources GPU=1)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from ..api import denoise
    from ..sample_data import load_sample
    from ..writers import save_tiff

    image = load_sample("nuclei_2d")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    output = args.output_dir / "nuclei_2d_denoised.tif"
    start = time.perf_counter()
    denoise(
        image, args.model, axes="YX", device=args.device, dtype=args.dtype, output=output,
        overwrite=True, precision=args.precision,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    save_tiff(args.output_dir / "nuclei_2d_input.tif", image, "YX")
    print(f"denoised the bundled sample {image.shape} {image.dtype} in {seconds:.2f} s -> {output}")
    return 0


def _run_denoise(args: argparse.Namespace) -> int:
    if not args.input.exists():
        raise FileNotFoundError(f"input {args.input} does not exist")
    start = time.perf_counter()
    written = _denoise_file(args.input, args.output, args, args.resume, args.overwrite)
    seconds = time.perf_counter() - start
    if written is not None:
        print(f"denoised {args.input} ({written.axes}) in {seconds:.1f} s -> {args.output}")
    return 0


def _run_batch(args: argparse.Namespace) -> int:
    if not args.input_dir.is_dir():
        raise FileNotFoundError(f"input folder {args.input_dir} does not exist")
    inputs = sorted(
        p
        for p in args.input_dir.glob(args.pattern)
        if p.suffix.lower() in BATCH_SUFFIXES and not p.name.startswith(".")
    )
    if not inputs:
        raise FileNotFoundError(
            f"no .tif, .tiff or .zarr entries match {args.pattern!r} in {args.input_dir}"
        )
    from ..writers import default_output_name

    suffix = SUFFIXES[BATCH_ALIASES.get(args.format, args.format)][0]
    targets = [args.output_dir / default_output_name(p, suffix) for p in inputs]
    _refuse_collisions(inputs, targets)
    failed = []
    for number, (source, target) in enumerate(zip(inputs, targets, strict=True), 1):
        finished = not args.overwrite and _finished(target)
        note = " (finished earlier: checked and kept)" if finished else ""
        print(f"[{number}/{len(inputs)}] {source.name} -> {target}{note}", file=sys.stderr)
        try:  # a rerun finishes what was interrupted and skips what is finished
            _denoise_file(source, target, args, not args.overwrite, args.overwrite)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one bad file must not stop the others
            failed.append(source.name)
            print(f"napari-wne: skipped {source}: {err}", file=sys.stderr)
    done = len(inputs) - len(failed)
    print(f"denoised {done} of {len(inputs)} files into {args.output_dir}")
    if failed:
        print(f"napari-wne: {len(failed)} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


BATCH_SUFFIXES = (".tif", ".tiff", ".zarr")
BATCH_ALIASES = {"zarr": "ome-zarr", "tif": "imagej-tiff"}
"""The short --format names batch took before OME-TIFF was an output."""


def _finished(target: Path) -> bool:
    """Whether the writer finds a finished result of ours there."""
    from ..writers import writer_for

    return writer_for(target).finished()


def _refuse_collisions(inputs: list[Path], targets: list[Path]) -> None:
    """Stop before anything is written if two inputs would write the same output.

    Names are compared case-insensitively: on macOS and Windows they are one file.
    """
    by_name: dict[str, list[str]] = {}
    for source, target in zip(inputs, targets, strict=True):
        by_name.setdefault(target.name.casefold(), []).append(source.name)
    clashes = [names for names in by_name.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(names) for names in clashes)
        raise ValueError(
            f"these inputs would write the same output name: {listed}; rename one of each "
            "group, or run them into separate folders (e.g. with --pattern)"
        )


def _denoise_file(
    source: Path, target: Path, args: argparse.Namespace, resume: bool, overwrite: bool
) -> DenoisedImage:
    """Denoise one file into `target` (any output format), showing a progress bar."""
    from ..api import denoise
    from ..pipeline import Cancelled

    options = dict(
        model=args.model,
        axes=args.axes,
        missing_chunks=args.missing_chunks,
        instances=args.instances,
        device=args.device,
        dtype=args.dtype,
        tile=_one_or_tuple(args.tile),
        halo=_one_or_tuple(args.overlap),
        norm=args.norm,
        batch_size=args.batch_size,
        tta=args.tta,
        strength=args.strength,
        precision=args.precision,
        pyramid=args.pyramid,
        cpu_fallback=args.cpu_fallback,
        block=_one_or_tuple(args.block),
        resume=resume,
        overwrite=overwrite,
        allow_unfinished=args.allow_unfinished,
        scheduler=args.scheduler,
        resources={"GPU": 1} if args.gpu_per_task else None,
    )
    with _progress_bar(source.name) as report:
        try:
            return denoise(source, output=target, progress=report, **options)
        except (KeyboardInterrupt, Cancelled):
            print(
                f"\nnapari-wne: interrupted; rerun with --resume to finish {target}",
                file=sys.stderr,
            )
            raise


def _one_or_tuple(values: list[int] | None) -> int | tuple[int, ...] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@contextmanager
def _progress_bar(label: str):
    """A tqdm bar of blocks done, fed by `denoise`'s progress callback."""
    from tqdm import tqdm

    bar = None

    def report(p: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, unit="block", desc=label, file=sys.stderr, leave=True)
        bar.n = p.done
        bar.set_postfix_str(f"{p.voxels_per_second / 1e6:.2f} Mvoxel/s", refresh=False)
        bar.refresh()

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()
