"""Put a trained run into the package as a named model, with its model card.

    python scripts/ship_model.py runs/unet-wne unet-wne

Copies the run's weights to ``src/napari_wne/weights/NAME/`` and writes its ``model.json``:
the training record (architecture, parameters, steps, wall time, machine, configuration)
plus where the training data came from, the noise it was trained on, and its scores on the
real microscopy pairs in ../shared/data, measured here by this script.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import warnings
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _data import DATA, VALIDATION_PAIR, microscopy_pairs  # noqa: E402
from napari_wne import MODELS, denoise  # noqa: E402
from napari_wne.metrics import scores  # noqa: E402
from napari_wne.model_io import CARD_FILE, WEIGHTS_FILE  # noqa: E402


def measured_scores(run: Path) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM of the model and of the noisy input on each set of real pairs."""
    found: dict[str, list[tuple[tuple, tuple]]] = {}
    for name, noisy, clean in microscopy_pairs():
        if name == VALIDATION_PAIR:
            continue
        group = "w2s_widefield" if name.startswith("w2s") else name.replace(" ", "_")
        result = denoise(noisy.astype("float32"), str(run), device="cpu", verbose=False)
        found.setdefault(group, []).append((scores(result, clean), scores(noisy, clean)))
    return {
        group: {
            "images": len(pairs),
            "psnr": round(statistics.fmean(p[0][0] for p in pairs), 2),
            "ssim": round(statistics.fmean(p[0][1] for p in pairs), 4),
            "input_psnr": round(statistics.fmean(p[1][0] for p in pairs), 2),
            "input_ssim": round(statistics.fmean(p[1][1] for p in pairs), 4),
        }
        for group, pairs in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a folder written by `napari-wne train`")
    parser.add_argument("name", choices=sorted(MODELS))
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    card = json.loads((args.run / CARD_FILE).read_text())
    spec = MODELS[args.name]
    if (card["backbone"], card["wne"]) != (spec.backbone, spec.wne):
        raise SystemExit(f"{args.run} holds {card['backbone']} wne={card['wne']}, not {spec.name}")
    data_root = str(DATA.resolve())
    card.update(
        name=spec.name,
        description=spec.description,
        shipped=date.today().isoformat(),
        training_data=[p.replace(data_root, "shared/data") for p in card["config"]["data"]],
        noise=card["config"]["noise"],
        scores={
            "how": "benchmarks/quality_microscopy.py rules: gain fit of napari_wne.metrics, "
            f"whole images, pair {VALIDATION_PAIR} (validation) left out",
            **measured_scores(args.run),
        },
    )
    card["config"]["output_dir"] = f"runs/{spec.name}"
    card["config"]["data"] = card["training_data"]
    target = ROOT / "src" / "napari_wne" / "weights" / spec.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / WEIGHTS_FILE, target / WEIGHTS_FILE)
    (target / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["scores"], indent=2))
    print(f"shipped {args.run} as {spec.name} in {target}")


if __name__ == "__main__":
    main()
