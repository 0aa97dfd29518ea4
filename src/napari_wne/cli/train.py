"""`napari-wne train`: the options of `napari_wne.training.TrainConfig`, on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..modes import LOSS, NOISE

HELP = "train a denoiser on your images (rerun the same command to resume)"


def add_parser(commands) -> None:
    """`napari-wne train`: the options of `napari_wne.training.TrainConfig`, on the CLI."""
    from ..backbones import BACKBONES

    sub = commands.add_parser(
        "train",
        help=HELP,
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
    sub.add_argument(NOISE.option, default=NOISE.default, choices=NOISE.values, help=NOISE.help)
    sub.add_argument(LOSS.option, default=LOSS.default, choices=LOSS.values, help=LOSS.help)
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
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="processes that draw batches while the device trains (on a GPU, about one per "
        "free core); 0: drawn in this process",
    )
    sub.add_argument(
        "--backbone-kwargs",
        type=json.loads,
        default={},
        metavar="JSON",
        help="backbone settings, e.g. '{\"widths\": [16, 32, 64]}'",
    )
    sub.add_argument(
        "--average",
        type=float,
        metavar="DECAY",
        help="validate and save a moving average of the weights (e.g. 0.999: about the last "
        "1,000 steps) instead of the last weights; steadier for long fine-tunes",
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

    from ..datasets import (
        NoiseConfig,
        load_clean_images,
        load_noisy_images,
        load_pairs,
        make_synthetic_pairs,
    )
    from ..training import TrainConfig, TrainProgress, checkpoint_step, train

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
        loss=args.loss,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.val_every,
        threads=args.threads,
        device=args.device,
        workers=args.workers,
        init_weights=str(_trained_weights(args.init)) if args.init else None,
        average_decay=args.average,
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
            last = "" if p.last_val_psnr is None else f" (last weights {p.last_val_psnr:.2f})"
            bar.write(f"step {p.step}: validation PSNR {p.val_psnr:.2f} dB{last}", file=sys.stderr)

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


def _trained_weights(model: str):
    from ..models import trained_weights  # late: torch is imported only when a command runs

    return trained_weights(model)
