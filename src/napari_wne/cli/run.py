"""`napari-wne demo`, `denoise` and `batch`: files in, files out, through `napari_wne.denoise`."""

from __future__ import annotations

import argparse
import errno
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..api import DenoisedImage, denoise
from ..model_io import atomic_write
from ..models import DEFAULT_MODEL
from ..output import (
    DiskFullError,
    IncompleteOutputError,
    OmeZarrOutput,
    OutputInUseError,
    check_output_path,
    default_output_name,
    output_lock,
    owner,
    remove_ours,
)
from ..pipeline import Cancelled, Progress
from ..precision import PRECISIONS
from ..sample_data import load_sample
from ..sources import DEFAULT_MISSING_CHUNKS, MISSING_CHUNKS, MISSING_CHUNKS_HELP


def add_parsers(commands) -> None:
    """The `demo`, `denoise` and `batch` commands."""
    demo = commands.add_parser("demo", help="denoise the bundled real sample (no download)")
    demo.add_argument("output_dir", nargs="?", default="napari-wne-demo", type=Path)
    add_model_options(demo)
    demo.set_defaults(run=_run_demo)

    one = commands.add_parser(
        "denoise",
        help="denoise one image (TIFF, zarr or OME-Zarr) into an OME-Zarr or a TIFF",
        description="Denoise INPUT block by block. OUTPUT ending in .zarr is written as an "
        "OME-Zarr image; OUTPUT ending in .tif or .tiff as a TIFF (staged in a resumable "
        "OME-Zarr beside it, then converted plane by plane).",
    )
    one.add_argument("input", type=Path)
    one.add_argument("output", type=Path)
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
    )
    many.add_argument("input_dir", type=Path)
    many.add_argument("output_dir", type=Path)
    many.add_argument(
        "--pattern",
        default="*",
        help="glob of the files to take (default: every .tif, .tiff and .zarr entry)",
    )
    many.add_argument("--format", default="zarr", choices=["zarr", "tif"], help="output format")
    add_run_options(many)
    many.set_defaults(run=_run_batch)


def add_model_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a name from `napari-wne models` (default {DEFAULT_MODEL}), or the folder "
        "of a model trained with `napari-wne train`",
    )
    sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    sub.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="what the network computes in (auto: bfloat16 on recent GPUs, what was measured "
        "faster at no visible loss on a CPU); WNE's statistics always stay in float64/float32",
    )
    sub.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "input"],
        help="float32, or the input's type (rounded and clipped)",
    )


def add_run_options(sub: argparse.ArgumentParser) -> None:
    add_model_options(sub)
    sub.add_argument(
        "--axes",
        help="e.g. YX, ZYX, TYX, CZYX (default: from the file); overrides what the file says",
    )
    sub.add_argument(
        "--missing-chunks",
        default=DEFAULT_MISSING_CHUNKS,
        choices=MISSING_CHUNKS,
        help=MISSING_CHUNKS_HELP,
    )
    sub.add_argument(
        "--instances",
        default="auto",
        choices=["auto", "planes", "volumes"],
        help="with Z: 3D volumes, or each Z plane on its own (auto: volumes unless the "
        "model was trained in 2D)",
    )
    sub.add_argument("--tile", type=int, nargs="+", help="tile side(s) in pixels")
    sub.add_argument(
        "--overlap",
        type=int,
        help="context kept around each tile, in pixels (default: the model's whole "
        "receptive field when at most 32 px, else its measured effective radius)",
    )
    sub.add_argument("--norm", default="tile", choices=["tile", "global"])
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
    image = load_sample("nuclei_2d")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    output = args.output_dir / "nuclei_2d_denoised.tif"
    start = time.perf_counter()
    result = denoise(
        image, args.model, axes="YX", device=args.device, dtype=args.dtype,
        precision=args.precision,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    _write_tiff(output, result, "YX", overwrite=True)
    _write_tiff(args.output_dir / "nuclei_2d_input.tif", image, "YX", overwrite=True)
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
    suffix = ".ome.zarr" if args.format == "zarr" else ".tif"
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


def _finished(target: Path) -> bool:
    """A TIFF appears only once complete; an OME-Zarr of ours says whether it is."""
    return target.is_file() if target.suffix == ".tif" else OmeZarrOutput(target).is_complete()


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
) -> DenoisedImage | None:
    """Denoise one file into `target` (OME-Zarr or TIFF), showing a progress bar.

    None when `resume` finds a finished TIFF there already: nothing was left to do.
    """
    if check_output_path(target, source=source) == "zarr":
        return _denoise_to(source, target, args, resume=resume, overwrite=overwrite)
    with output_lock(target):  # the TIFF and its staging: one run at a time
        return _denoise_to_tiff(source, target, args, resume, overwrite)


def _denoise_to_tiff(
    source: Path, target: Path, args: argparse.Namespace, resume: bool, overwrite: bool
) -> DenoisedImage | None:
    """Stage an OME-Zarr beside `target` (resumable), convert it, then remove it."""
    staging = target.with_name(f".{target.name}.partial.ome.zarr")
    found = owner(target)
    if found not in ("absent", "file"):
        raise FileExistsError(
            f"output {target} is a folder or a link; a TIFF output must be a file, and "
            "napari-wne never deletes what it did not write: choose another path"
        )
    if found == "file" and not overwrite:
        if not resume:
            raise FileExistsError(f"output {target} exists; pass --overwrite to replace it")
        if owner(staging) == "ours":  # killed between writing the TIFF and cleaning up
            remove_ours(staging)
        print(f"napari-wne: {target} is finished already; kept as it is", file=sys.stderr)
        return None
    fresh = not resume or owner(staging) in ("absent", "empty")
    try:
        written = _denoise_to(source, staging, args, resume=resume, overwrite=not resume)
    except (DiskFullError, OutputInUseError, IncompleteOutputError):
        raise  # resumable, or not ours to clean up
    except Exception:
        if fresh and owner(staging) == "ours":  # nothing worth resuming for a failed run
            remove_ours(staging)
        raise
    try:
        _zarr_to_tiff(written, target)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFullError(
            err.errno,
            f"the disk is full writing {target} ({err.strerror}); the denoised result is kept "
            f"in {staging}: free some space, then rerun the same command with --resume",
        ) from err
    remove_ours(staging)
    return written


def _denoise_to(
    source: Path, output: Path, args: argparse.Namespace, *, resume: bool, overwrite: bool
) -> DenoisedImage:
    options = dict(
        model=args.model,
        axes=args.axes,
        missing_chunks=args.missing_chunks,
        instances=args.instances,
        device=args.device,
        dtype=args.dtype,
        tile=_one_or_tuple(args.tile),
        halo=args.overlap,
        norm=args.norm,
        batch_size=args.batch_size,
        tta=args.tta,
        precision=args.precision,
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
            return denoise(source, output=output, progress=report, **options)
        except (KeyboardInterrupt, Cancelled):
            print(
                f"\nnapari-wne: interrupted; rerun with --resume to finish {output}",
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


def _zarr_to_tiff(written: DenoisedImage, path: Path) -> None:
    """Stream an OME-Zarr result into a TIFF, one plane at a time, then rename into place."""
    array = written.to_dask()
    planes = (np.asarray(array[index].compute()) for index in np.ndindex(*array.shape[:-2]))
    _write_tiff(path, planes, written.axes, overwrite=True, shape=array.shape, dtype=array.dtype)


def _write_tiff(
    path: Path, data: Any, axes: str, *, overwrite: bool, shape=None, dtype=None
) -> None:
    """Write next to `path` and rename into place, so no half-written file looks complete.

    `data` is an array, or an iterator of planes with the `shape` and `dtype` of the whole.
    """
    if path.exists() and not overwrite:
        raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
    nbytes = np.dtype(dtype or data.dtype).itemsize * np.prod(shape or data.shape)
    atomic_write(
        path,
        lambda partial: tifffile.imwrite(
            partial,
            data,
            shape=shape,
            dtype=dtype,
            photometric="minisblack",
            metadata={"axes": axes},
            bigtiff=bool(nbytes > 2**31),
        ),
    )
