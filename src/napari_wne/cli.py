"""`napari-wne` on the command line: a thin shell over `napari_wne.denoise`."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .api import DenoisedImage, denoise
from .datasets import NOISE_KINDS
from .model_io import atomic_write
from .models import DEFAULT_MODEL, MODELS, UntrainedModelWarning, trained_weights
from .output import (
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
from .pipeline import Cancelled, Progress
from .sample_data import load_sample
from .sources import DEFAULT_MISSING_CHUNKS, MISSING_CHUNKS, MISSING_CHUNKS_HELP

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.simplefilter("always", UntrainedModelWarning)
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, ConnectionError, IncompleteOutputError) as err:
        print(f"napari-wne: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-wne", description="Normalization-equivariant deep denoising of microscopy."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add_model_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--model",
            default=DEFAULT_MODEL,
            help=f"a name from `napari-wne models` (default {DEFAULT_MODEL}), or the folder "
            "of a model trained with `napari-wne train`",
        )
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
        sub.add_argument(
            "--dtype",
            default="float32",
            choices=["float32", "input"],
            help="float32, or the input's type (rounded and clipped)",
        )

    demo = commands.add_parser("demo", help="denoise the bundled real sample (no download)")
    demo.add_argument("output_dir", nargs="?", default="napari-wne-demo", type=Path)
    add_model_options(demo)
    demo.set_defaults(run=_run_demo)

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
            "--batch-size", type=int, help="tiles per forward pass (default: ~2 M voxels)"
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

    listing = commands.add_parser("models", help="list the models and whether they are trained")
    listing.set_defaults(run=_run_models)

    doctor = commands.add_parser(
        "doctor",
        help="versions, devices, a speed probe and a self-check, for bug reports",
        description="Print what a bug report needs and check that the default model works "
        "(equivariance and quality on the bundled sample); exits 1 if any check fails.",
    )
    doctor.add_argument(
        "--seconds", type=float, default=5.0, help="length of each speed probe (default 5)"
    )
    doctor.set_defaults(run=_run_doctor)

    _add_train_parser(commands)
    _add_adapt_parser(commands)
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


def _run_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(seconds=args.seconds)


def _run_models(args: argparse.Namespace) -> int:
    for spec in MODELS.values():
        status = "trained" if spec.trained else "UNTRAINED"
        default = " (default)" if spec.name == DEFAULT_MODEL else ""
        print(f"{spec.name:16s} {status:9s} {spec.description}{default}")
    return 0


def _add_train_parser(commands) -> None:
    """`napari-wne train`: the options of `napari_wne.training.TrainConfig`, on the CLI."""
    from .backbones import BACKBONES

    sub = commands.add_parser(
        "train",
        help="train a denoiser on your images (rerun the same command to resume)",
        description="Train a denoiser into OUTPUT_DIR. If OUTPUT_DIR holds a checkpoint of "
        "the same settings, training resumes from it. The result loads with "
        "denoise(image, model='OUTPUT_DIR').",
    )
    sub.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    sub.add_argument("--backbone", default="unet", choices=sorted(BACKBONES))
    wrap = sub.add_mutually_exclusive_group()
    wrap.add_argument(
        "--wne",
        dest="wne",
        action="store_true",
        default=True,
        help="wrap the backbone with WNE (default)",
    )
    wrap.add_argument("--plain", dest="wne", action="store_false", help="train it unwrapped")
    sub.add_argument(
        "--mode",
        default="supervised",
        choices=["supervised", "pairs", "n2v"],
        help="clean images + synthetic noise; noisy/clean pairs; or noisy only",
    )
    sub.add_argument(
        "--data",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="image files or folders: clean (supervised) or noisy (n2v)",
    )
    sub.add_argument(
        "--pairs",
        nargs=2,
        type=Path,
        action="append",
        default=[],
        metavar=("NOISY", "CLEAN"),
        help="training pairs (mode pairs); repeatable",
    )
    sub.add_argument("--dims", type=int, default=2, choices=[2, 3], help="2-D or 3-D patches")
    sub.add_argument(
        "--patch",
        type=int,
        nargs="+",
        default=[64],
        help="patch side, or one side per axis (e.g. 16 64 64)",
    )
    sub.add_argument("--batch", type=int, default=16)
    sub.add_argument("--steps", type=int, default=10_000)
    sub.add_argument("--lr", type=float, default=1e-3)
    sub.add_argument("--lr-min", type=float, default=1e-5)
    sub.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
    sub.add_argument("--noise", default="mixed", choices=NOISE_KINDS)
    sub.add_argument(
        "--sigma", type=float, default=25.0, help="noise 'fixed': sigma in 8-bit units (default 25)"
    )
    sub.add_argument(
        "--sigma-range",
        type=float,
        nargs=2,
        default=[0.01, 0.4],
        metavar=("LOW", "HIGH"),
        help="Gaussian sigma range in [0, 1] units",
    )
    sub.add_argument(
        "--no-jitter",
        action="store_true",
        help="no random brightness/contrast (the paper's protocol)",
    )
    sub.add_argument("--mask-fraction", type=float, default=0.003, help="n2v: masked share")
    sub.add_argument(
        "--scale",
        default="auto",
        choices=["auto", "dtype", "percentile"],
        help="how images map to [0, 1]: uint8 by 255, others by percentiles",
    )
    sub.add_argument(
        "--val-pairs",
        nargs=2,
        type=Path,
        action="append",
        default=[],
        metavar=("NOISY", "CLEAN"),
        help="validation pairs; repeatable",
    )
    sub.add_argument(
        "--val-data",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="clean validation images, noised once with a fixed seed",
    )
    sub.add_argument("--val-every", type=int, default=500)
    sub.add_argument("--checkpoint-every", type=int, default=500)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--threads", type=int, help="CPU threads (default: every core)")
    sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    sub.add_argument(
        "--backbone-kwargs",
        type=json.loads,
        default={},
        metavar="JSON",
        help="backbone settings, e.g. '{\"widths\": [16, 32, 64]}'",
    )
    sub.add_argument(
        "--init",
        metavar="MODEL",
        help="start from a trained model (fine-tune): a shipped name such as unet-wne, a "
        "trained model folder, or a weights file",
    )
    sub.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .datasets import (
        NoiseConfig,
        load_clean_images,
        load_noisy_images,
        load_pairs,
        make_synthetic_pairs,
    )
    from .training import TrainConfig, TrainProgress, checkpoint_step, train

    noise = NoiseConfig(
        kind=args.noise,
        sigma_range=tuple(args.sigma_range),
        sigma_255=args.sigma,
        jitter=not args.no_jitter,
    )
    patch = args.patch[0] if len(args.patch) == 1 else tuple(args.patch)
    sources = [*args.data, *(p for pair in args.pairs for p in pair)]
    config = TrainConfig(
        output_dir=args.output_dir,
        backbone=args.backbone,
        wne=args.wne,
        spatial_dims=args.dims,
        backbone_kwargs=args.backbone_kwargs,
        mode=args.mode,
        patch_size=patch,
        batch_size=args.batch,
        steps=args.steps,
        lr=args.lr,
        lr_min=args.lr_min,
        schedule=args.schedule,
        seed=args.seed,
        noise=noise,
        mask_fraction=args.mask_fraction,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.val_every,
        threads=args.threads,
        device=args.device,
        init_weights=str(trained_weights(args.init)) if args.init else None,
        data=tuple(str(p.resolve()) for p in sources),
    )
    if args.mode in ("supervised", "n2v") and not args.data:
        raise ValueError(f"mode {args.mode} needs --data: image files or folders")
    if args.mode == "pairs" and not args.pairs:
        raise ValueError("mode pairs needs --pairs NOISY CLEAN (files or folders)")
    data: dict[str, object] = {}
    if args.mode == "supervised":
        data["clean_images"] = load_clean_images(args.data, args.scale)
    elif args.mode == "n2v":
        data["noisy_images"] = load_noisy_images(args.data, args.scale)
    else:
        data["pairs"] = [p for noisy, clean in args.pairs for p in load_pairs(noisy, clean)]
    validation = [p for noisy, clean in args.val_pairs for p in load_pairs(noisy, clean)]
    if args.val_data:
        clean = load_clean_images(args.val_data, args.scale)
        validation += make_synthetic_pairs(clean, noise, seed=args.seed + 1)
    counts = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in data.items() if v)
    print(
        f"napari-wne: training {args.backbone} ({'WNE' if args.wne else 'plain'}, "
        f"{args.dims}-D, {args.mode}) on {counts or 'no images'}"
        + (f", validating on {len(validation)} pair(s)" if validation else ""),
        file=sys.stderr,
    )

    bar = None
    smoothed = None

    def report(p: TrainProgress) -> None:
        nonlocal bar, smoothed
        if bar is None:
            bar = tqdm(
                total=p.steps,
                initial=p.start_step,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        smoothed = p.loss if smoothed is None else 0.95 * smoothed + 0.05 * p.loss
        bar.set_postfix(loss=f"{smoothed:.3g}", lr=f"{p.lr:.2g}", refresh=False)
        bar.update(1)
        if p.val_psnr is not None:
            bar.write(f"step {p.step}: validation PSNR {p.val_psnr:.2f} dB", file=sys.stderr)

    resume_at = checkpoint_step(args.output_dir)
    if resume_at is not None:
        print(f"napari-wne: resuming from the checkpoint at step {resume_at}", file=sys.stderr)
    try:
        out = train(config, validation=validation or None, progress=report, **data)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(
            f"napari-wne: interrupted; the checkpoint in {args.output_dir} is kept: rerun the "
            "same command to resume from it",
            file=sys.stderr,
        )
        return 130
    if bar is not None:
        bar.close()
    print(f"trained model in {out}; use it with denoise(image, model={str(out)!r})")
    return 0


def _add_adapt_parser(commands) -> None:
    """`napari-wne adapt`: the options of `napari_wne.adaptation.AdaptSettings`, on the CLI."""
    from .adaptation import AdaptSettings

    d = AdaptSettings()
    sub = commands.add_parser(
        "adapt",
        help="fine-tune a trained model on your own noisy images (no clean data needed)",
        description="Fine-tune a trained model on the noisy IMAGEs themselves (self-supervised, "
        "with a blind-spot mask as wide as the measured noise correlation) and write it to "
        "OUT_MODEL_DIR. A band of every image is held out: the adapted weights are kept only "
        "if they lower the masked loss there; otherwise the starting model is written "
        "unchanged. Use the result with --model OUT_MODEL_DIR.",
    )
    sub.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="files or folders")
    sub.add_argument("output_dir", type=Path, metavar="OUT_MODEL_DIR")
    sub.add_argument(
        "--init",
        default=DEFAULT_MODEL,
        metavar="MODEL",
        help=f"the model to start from: a shipped name or a model folder (default {DEFAULT_MODEL})",
    )
    sub.add_argument("--steps", type=int, default=d.steps, help=f"at most (default {d.steps})")
    sub.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    sub.add_argument(
        "--mask-radius",
        type=int,
        help="hidden neighbourhood around each masked pixel (default: from the measured noise "
        "correlation)",
    )
    sub.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help=f"held-out checks without improvement before stopping (default {d.patience})",
    )
    sub.add_argument("--check-every", type=int, default=d.check_every, metavar="STEPS")
    sub.add_argument("--seed", type=int, default=d.seed)
    sub.add_argument("--threads", type=int, default=d.threads, help="CPU threads (default 1)")
    sub.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    sub.add_argument("--overwrite", action="store_true", help="replace a model in OUT_MODEL_DIR")
    sub.set_defaults(run=_run_adapt)


def _run_adapt(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .adaptation import AdaptSettings, adapt
    from .datasets import find_images, read_image

    files = find_images(args.images)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, args.images))}")
    settings = AdaptSettings(
        steps=args.steps,
        lr=args.lr,
        mask_radius=args.mask_radius,
        patience=args.patience,
        check_every=args.check_every,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
    )
    print(f"napari-wne: adapting {args.init} on {len(files)} image(s)", file=sys.stderr)
    with tqdm(total=args.steps, unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        result = adapt(
            [read_image(f) for f in files],
            args.output_dir,
            init=args.init,
            settings=settings,
            sources=[str(f.resolve()) for f in files],
            overwrite=args.overwrite,
            progress=lambda p: bar.update(1),
        )
    print(
        f"napari-wne: noise correlation at lags 1-3: "
        f"{', '.join(f'{c:.2f}' for c in result.correlation)}; mask radius {result.mask_radius}",
        file=sys.stderr,
    )
    print(f"{result.message}; model in {result.folder} (use --model {str(result.folder)!r})")
    return 0


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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"napari-wne: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
