"""Write a model between a model and its own fine-tune: ``(1 - alpha) * FIRST + alpha * SECOND``.

    python scripts/interpolate_model.py candidates/unet-wne-fourth \\
        candidates/white-rcan16-smooth runs/unet-wne-soup --alpha 0.5
    python scripts/interpolate_model.py candidates/unet-wne-corr-sixth \\
        candidates/corr-wide candidates/corr-explore runs/corr-soup --alpha 0.5

A fine-tune on new content gains there and can lose what its starting weights did well
elsewhere (docs/training.md, "Measured in full, and not shipped"); a point between the two
often keeps most of both (`napari_wne.weight_average.interpolate_weights`). FIRST must be
an ancestor of SECOND (found by following the cards' ``init_weights``): weights of unrelated
runs do not average into a working network, so they are refused.

Several SECONDs, fine-tuned from the same weights (the same ``init_weights``), are averaged
uniformly first, and that average is the far end (a "model soup", Wortsman et al. 2022):
fine-tunes with other seeds or data settle at different points near their start, and
their mean is often better than each.

The output is a model folder like the ones `napari-wne train` writes, so `denoise`, the
benchmarks and `scripts/ship_model.py` take it. Its card is SECOND's (the training is all
SECOND's lineage; interpolating costs none) with an ``interpolation`` record added and
SECOND's validation scores removed, as they were measured on other weights. With several
SECONDs it is the first one's, and its ``steps`` and ``wall_time_s`` are all of theirs
added up: the whole budget that went into the far end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_wne.model_io import CARD_FILE, WEIGHTS_FILE, load_weights, save_weights
from napari_wne.models import trained_weights
from napari_wne.weight_average import interpolate_weights

SECOND_ONLY = ("final_val_psnr", "val_input_psnr", "held_out_loss", "selected_at_step")
"""Fields of SECOND's card that describe SECOND's weights alone."""


def ancestors(weights: Path) -> list[Path]:
    """The weights files `weights` was fine-tuned from, nearest first, as far as cards say.

    A stage may keep only its card (candidates/README.md): the walk goes on through it.
    """
    chain = []
    while (card := weights.with_name(CARD_FILE)).is_file():
        parent = json.loads(card.read_text())["config"].get("init_weights")
        if not parent:
            break
        weights = Path(parent).resolve()
        chain.append(weights)
    return chain


def far_end(seconds: list[Path]) -> dict:
    """The weights of SECOND, or the uniform mean of several (each new one weighs 1/k)."""
    mean = load_weights(seconds[0])
    for k, path in enumerate(seconds[1:], start=2):
        mean = interpolate_weights(mean, load_weights(path), 1.0 / k)
    return mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="a shipped model's name, or a model folder")
    parser.add_argument(
        "second", nargs="+",
        help="a model folder fine-tuned (at some remove) from FIRST; or several, fine-tuned "
        "from the same weights, whose mean is the far end",
    )  # fmt: skip
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--alpha", type=float, required=True, help="0 is FIRST, 1 is SECOND")
    args = parser.parse_args(argv)

    first = trained_weights(args.first, "FIRST").resolve()
    seconds = [trained_weights(s, "SECOND").resolve() for s in args.second]
    lineages = [ancestors(s) for s in seconds]
    for name, lineage in zip(args.second, lineages, strict=True):
        if first not in lineage:
            parser.error(
                f"{args.first} is not in the lineage of {name} (its cards' init_weights "
                "never lead to it): interpolate only a model and a fine-tune of it"
            )
    if len({lineage[0] for lineage in lineages}) > 1:  # each one's own init_weights
        parser.error(
            "the SECONDs start from different weights (their cards' init_weights differ): "
            "average only fine-tunes of one model"
        )
    if (args.output_dir / WEIGHTS_FILE).exists():
        parser.error(f"{args.output_dir} holds a model already; choose a new folder")
    mixed = interpolate_weights(load_weights(first), far_end(seconds), args.alpha)
    cards = [json.loads(s.with_name(CARD_FILE).read_text()) for s in seconds]
    card = cards[0]
    for field in SECOND_ONLY:
        card.pop(field, None)
    card["steps"] = sum(c["steps"] for c in cards)
    card["wall_time_s"] = round(sum(c["wall_time_s"] for c in cards), 2)
    card["config"]["output_dir"] = str(args.output_dir)
    ends = args.second[0] if len(args.second) == 1 else list(args.second)
    card["interpolation"] = {"first": args.first, "second": ends, "alpha": args.alpha}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    save_weights(mixed, args.output_dir / WEIGHTS_FILE)
    (args.output_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.output_dir}: {1 - args.alpha:g} x {args.first} + {args.alpha:g} x "
          f"{' and '.join(args.second)}{' (their mean)' if len(seconds) > 1 else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
