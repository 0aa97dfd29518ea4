"""`napari-wne adapt`: fine-tune a trained model on the user's own noisy images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..modes import DEFAULT_MODEL

HELP = "fine-tune a trained model on your own noisy images (no clean data needed)"


def add_parser(commands) -> None:
    """`napari-wne adapt`: the options of `napari_wne.adaptation.AdaptSettings`, on the CLI."""
    from ..adaptation import AdaptSettings

    d = AdaptSettings()
    sub = commands.add_parser(
        "adapt",
        help=HELP,
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
    sub.add_argument(
        "--allow-correlated",
        action="store_true",
        help="adapt also on spatially correlated noise, where the held-out check can miss "
        "losses (off: the original is kept there, without training)",
    )
    sub.add_argument("--overwrite", action="store_true", help="replace a model in OUT_MODEL_DIR")
    sub.set_defaults(run=_run_adapt)


def _run_adapt(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..adaptation import AdaptSettings, adapt
    from ..datasets import find_images, read_image

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
        allow_correlated=args.allow_correlated,
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
