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
import re
import shutil
import statistics
import sys
import warnings
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _data import (  # noqa: E402
    DATA,
    VALIDATION_PAIR,
    correlated_benchmark,
    microscopy_pairs,
)
from _report import DOCS, write_section  # noqa: E402
from napari_wne import MODELS, denoise  # noqa: E402
from napari_wne.metrics import scores  # noqa: E402
from napari_wne.model_io import CARD_FILE, WEIGHTS_FILE, load_weights, save_weights  # noqa: E402
from napari_wne.sample_data import load_sample  # noqa: E402


def measured_scores(run: Path) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM of the model and of the noisy input on each set of real pairs."""
    found: dict[str, list[tuple[tuple, tuple]]] = {}
    if json.loads((run / CARD_FILE).read_text())["spatial_dims"] == 3:
        return _summary(volume_scores(run))
    for name, noisy, clean in microscopy_pairs():
        if name == VALIDATION_PAIR:
            continue
        group = "w2s_widefield" if name.startswith("w2s") else name.replace(" ", "_")
        result = denoise(noisy.astype("float32"), str(run), device="cpu", verbose=False)
        found.setdefault(group, []).append((scores(result, clean), scores(noisy, clean)))
    for level, _, noisy, clean in correlated_benchmark():
        result = denoise(noisy, str(run), device="cpu", verbose=False)
        found.setdefault(f"correlated_{level}", []).append(
            (scores(result, clean), scores(noisy, clean))
        )
    return _summary(found)


def volume_scores(run: Path) -> dict[str, list[tuple[tuple, tuple]]]:
    """A 3-D model on the held-out volumes of `benchmarks/quality_3d.py`, in 3-D."""
    from quality_3d import volumes

    found: dict[str, list[tuple[tuple, tuple]]] = {}
    for name, level, noisy, clean in volumes(quick=False):
        result = denoise(noisy, str(run), axes="ZYX", device="cpu", verbose=False)
        group = f"{name.replace(' ', '_').replace('-', '')}_{level}"
        found.setdefault(group, []).append((scores(result, clean), scores(noisy, clean)))
    return found


def _summary(found: dict[str, list[tuple[tuple, tuple]]]) -> dict[str, dict[str, float]]:
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


def card_lines(card: dict) -> list[str]:
    """One model's card as Markdown."""
    config, noise = card["config"], card["noise"]
    machine = card["machine"]
    lines = [
        f"### `{card['name']}`",
        "",
        f"- **Architecture:** {card['description']}; {card['parameters']:,} parameters"
        + "".join(f", {k} {v}" for k, v in card["backbone_kwargs"].items())
        + f"; {card['spatial_dims']}D, {config['batch_size']} patches of "
        f"{config['patch_size']} px per step.",
        f"- **Training:** {card['mode']}, {card['steps']:,} steps of Adam (lr {config['lr']:.3g} "
        f"{config['schedule']} to {config['lr_min']:.3g}"
        + ("; loss: each patch's log MSE, averaged" if config.get("loss") == "log-mse" else "")
        + (
            f"; the shipped weights are a moving average, decay {config['average_decay']}"
            if config.get("average_decay") is not None
            else ""
        )
        + f"), {card['wall_time_s'] / 3600:.2f} h on "
        f"{machine.get('gpu', machine['device'])} ({machine['processor']}, "
        f"{machine['cpu_count']} cores, {machine['torch_threads']} torch thread(s)), "
        f"shipped {card['shipped']}.",
        *interpolation_lines(card),
        *lineage_lines(card),
        f"- **Data:** {len(card['training_data'])} sources: "
        + ", ".join(f"`{d}`" for d in card["training_data"])
        + ".",
        f"- **Noise:** {noise_text(noise)}",
        *validation_lines(card),
        "",
        "| real data (never trained on) | images | input PSNR / SSIM | model PSNR / SSIM |",
        "|---|---|---|---|",
    ]
    for group, s in card["scores"].items():
        if group == "how":
            continue
        lines.append(
            f"| {group} | {s['images']} | {s['input_psnr']:.2f} / {s['input_ssim']:.3f} "
            f"| {s['psnr']:.2f} / {s['ssim']:.3f} |"
        )
    return [*lines, "", f"Scores: {card['scores']['how']}.", ""]


def validation_lines(card: dict) -> list[str]:
    """The training run's last validation score (none for interpolated weights)."""
    if "final_val_psnr" not in card:
        return []
    return [
        f"- **Validation** ({card.get('validation', 'W2S pair 010_0')}; PSNR after the "
        f"pair's gain fit): {card['final_val_psnr']:.2f} dB at the last step "
        f"(input {card['val_input_psnr']:.2f} dB)"
        + (
            f"; the weights shipped are step {card['selected_at_step']:,}'s, the best there."
            if "selected_at_step" in card
            else "."
        )
    ]


def interpolation_lines(card: dict) -> list[str]:
    """For weights from scripts/interpolate_model.py: which ends, and how much of each."""
    if "interpolation" not in card:
        return []
    mix = card["interpolation"]
    mixed = f"- **Interpolated:** {1 - mix['alpha']:g} x `{mix['first']}` + {mix['alpha']:g} x "
    if isinstance(mix["second"], str):
        return [
            f"{mixed}`{mix['second']}`, weight by weight (scripts/interpolate_model.py); the "
            "training above and below is the second's, and the first is in its lineage."
        ]
    ends = " and ".join(f"`{s}`" for s in mix["second"])
    return [
        f"{mixed}the mean of {ends}, fine-tunes of the same weights, weight by weight "
        "(scripts/interpolate_model.py). The steps and time are all the fine-tunes' together; "
        "the other settings (learning rate, data, noise) are the first fine-tune's, and the "
        "first end is in the lineage."
    ]


def lineage_lines(card: dict) -> list[str]:
    """Where a fine-tuned model started, and the budget of the whole chain."""
    if "lineage" not in card:
        return []
    steps = []
    for stage in card["lineage"]:
        camera = stage.get("camera")
        share = f", {camera['p_correlated']:.0%} correlated" if camera else ""
        steps.append(f"{stage['model']}: {stage['steps']:,} steps, {stage['noise']} noise{share}")
    return [
        "- **Fine-tuned from:** " + "; from ".join(steps) + f". Whole budget "
        f"{card['total_steps']:,} steps, {card['total_wall_time_s'] / 3600:.2f} h."
    ]


def noise_text(noise: dict) -> str:
    """The training noise in a sentence (the camera model's parts are in docs/training.md)."""
    jitter = (
        f"; random contrast {noise['contrast_range'][0]}-{noise['contrast_range'][1]} and offset"
        if noise["jitter"]
        else ""
    )
    share, (low, high) = noise.get("p_smoothed", 0.0), noise.get("smoothed_sigma_range", (0, 0))
    smoothed = (
        f"; in {share:.0%} of patches the noise smoothed by a Gaussian of {low:g}-{high:g} px"
        if share
        else ""
    )
    if noise["kind"] == "camera":
        cam = noise["camera"]
        return (
            f"the camera model (docs/training.md): {cam['photons_range'][0]:g}-"
            f"{cam['photons_range'][1]:g} photons at full scale, read noise up to "
            f"{cam['read_noise_range'][1]:g} e-, correlated noise in {cam['p_correlated']:.0%} "
            f"of patches, sCMOS pixels, hot pixels, {'/'.join(map(str, cam['bit_depths']))}"
            f"-bit quantization and saturation{jitter}."
        )
    return (
        f"{noise['kind']}: Gaussian sigma {noise['sigma_range'][0]}-{noise['sigma_range'][1]} "
        f"of the [0, 1] range, or Poisson with {noise['photons_range'][0]:g}-"
        f"{noise['photons_range'][1]:g} photons at full scale plus read noise up to "
        f"{noise['read_noise_max']}{smoothed}{jitter}."
    )


def comparison(cards: list[dict]) -> list[str]:
    """One row per shipped model: its scores on each set of real pairs, and its budget."""
    groups = list(dict.fromkeys(g for c in cards for g in c["scores"] if g != "how"))
    rows = [
        "| model | " + " | ".join(f"{g} PSNR / SSIM" for g in groups) + " | steps | CPU time |",
        "|---|" + "---|" * (len(groups) + 2),
    ]
    first = {g: c["scores"][g] for c in reversed(cards) for g in c["scores"] if g != "how"}
    inputs = [f"{first[g]['input_psnr']:.2f} / {first[g]['input_ssim']:.3f}" for g in groups]
    rows.append("| noisy input | " + " | ".join(inputs) + " | | |")
    for card in cards:
        cells = [
            f"{card['scores'][g]['psnr']:.2f} / {card['scores'][g]['ssim']:.3f}"
            if g in card["scores"]
            else "not measured"
            for g in groups
        ]
        rows.append(
            f"| `{card['name']}` | "
            + " | ".join(cells)
            + f" | {card['steps']:,} | {card['wall_time_s'] / 3600:.1f} h |"
        )
    return [*rows, "", f"Scores: {cards[0]['scores']['how']}."]


def write_cards() -> None:
    """Every shipped model's card, and a table comparing them, into docs/models.md."""
    folder = ROOT / "src" / "napari_wne" / "weights"
    cards = [json.loads(f.read_text()) for f in sorted(folder.glob(f"*/{CARD_FILE}"))]
    write_section("model_comparison", comparison(cards), report=DOCS / "models.md")
    write_section("model_cards", [line for c in cards for line in card_lines(c)],
                  report=DOCS / "models.md")  # fmt: skip


def already_shipped(card: dict, target: Path) -> bool:
    """Whether `target` holds this run's card already (a second `ship_model` of one run):
    the same steps, wall time and seed. Stored weights may be rounded, so cards compare."""
    shipped = target / CARD_FILE
    if not shipped.exists():
        return False
    old = json.loads(shipped.read_text())
    mark = lambda c: (  # noqa: E731
        c.get("steps"), c.get("wall_time_s"), c["config"].get("seed"), c.get("interpolation")
    )  # fmt: skip
    return mark(old) == mark(card)


def init_lineage(init: Path) -> list[dict]:
    """`lineage`, also for a shipped model inflated to 3-D by scripts/train_3d.py or
    deepened by scripts/train_campaign.py (`--blocks`)."""
    grown = re.fullmatch(r"init-(.+)-(3d|blocks(\d+))\.safetensors", init.name)
    if grown is None:
        return lineage(init)
    chain = lineage(ROOT / "src" / "napari_wne" / "weights" / grown[1] / WEIGHTS_FILE)
    chain[0]["model"] += (
        ", inflated to 3-D plane by plane (napari_wne.inflation)"
        if grown[2] == "3d"
        else f", deepened to {grown[3]} blocks per scale by identity blocks (napari_wne.deepening)"
    )
    return chain


def lineage(start: Path) -> list[dict]:
    """The runs a fine-tuned model started from, newest first, down to one trained from
    scratch: what each trained on, for how long, so the card states the whole budget."""
    chain = []
    while True:
        card = json.loads(start.with_name(CARD_FILE).read_text())
        # shipped: in the package, or a copy of a shipped card kept under candidates/
        shipped = start.parent.parent == ROOT / "src" / "napari_wne" / "weights" or (
            "shipped" in card
        )
        noise = card["config"]["noise"]
        chain.append(
            {
                "model": f"{card.get('name', start.parent.name)} "
                f"(shipped {card.get('shipped', 'in 0.1')})"
                if shipped
                else f"run {start.parent.name}",
                "steps": card["steps"],
                "wall_time_s": card["wall_time_s"],
                "noise": noise["kind"],
                **({"camera": noise["camera"]} if noise["kind"] == "camera" else {}),
                "lr": card["config"]["lr"],
            }
        )
        parent = card["config"].get("init_weights")
        if shipped or not parent:  # a shipped card carries its own lineage already
            return chain + card.get("lineage", [])
        start = Path(parent)


def rounding_note(run: Path, shipped: Path, spatial_dims: int) -> str:
    """How far float16-stored weights move a float32 run, on the bundled sample."""
    sample = load_sample("nuclei_3d" if spatial_dims == 3 else "nuclei_2d").astype("float32")
    axes = "ZYX" if spatial_dims == 3 else "YX"
    kwargs = dict(axes=axes, device="cpu", precision="float32", verbose=False)
    diff = abs(denoise(sample, str(run), **kwargs) - denoise(sample, str(shipped), **kwargs))
    std = float(sample.std())
    return (
        "weights stored in float16 to keep the package under 25 MB; a float32 run differs "
        f"from the float32 weights by at most {diff.max() / std:.1e} of the input's standard "
        f"deviation (mean {diff.mean() / std:.0e}), measured on the bundled "
        f"{spatial_dims}-D sample"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a folder written by `napari-wne train`")
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--validation", help="what the run was selected on, for the card")
    parser.add_argument(
        "--store", choices=("float32", "float16"), default="float32",
        help="weight storage: float16 halves the file (the package stays under 25 MB); the "
        "card records how far a float32 run moves with the rounded weights",
    )  # fmt: skip
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    card = json.loads((args.run / CARD_FILE).read_text())
    spec = MODELS[args.name]
    if (card["backbone"], card["wne"]) != (spec.backbone, spec.wne):
        raise SystemExit(f"{args.run} holds {card['backbone']} wne={card['wne']}, not {spec.name}")
    target = ROOT / "src" / "napari_wne" / "weights" / spec.name
    if already_shipped(card, target):
        raise SystemExit(
            f"{args.run} is already shipped as {spec.name}: shipping it again would walk its "
            "lineage into its own card and count its training twice. Restore the previous "
            f"card and weights first (git checkout -- {target.relative_to(ROOT)})."
        )
    data_root = str(DATA.resolve())
    card.update(
        name=spec.name,
        description=spec.description,
        shipped=date.today().isoformat(),
        training_data=[p.replace(data_root, "shared/data") for p in card["config"]["data"]],
        noise=card["config"]["noise"],
        scores={
            "how": "benchmarks/quality_microscopy.py rules: gain fit of napari_wne.metrics, "
            f"whole images, pair {VALIDATION_PAIR} (validation) left out"
            if card["spatial_dims"] == 2
            else "benchmarks/quality_3d.py volumes (never trained on), denoised in 3-D, gain "
            "fit of napari_wne.metrics",
            **measured_scores(args.run),
        },
    )
    card["config"]["output_dir"] = f"runs/{spec.name}"
    if card["spatial_dims"] == 3:  # scripts/train_3d.py
        card["validation"] = "two 3-D phantoms from seed 1, Poisson-Gaussian noise"
    elif card["noise"]["kind"] == "camera":  # scripts/train_campaign.py: two pairs
        card["validation"] = "W2S pair 010_0, and its clean image with correlated noise"
    if args.validation:
        card["validation"] = args.validation
    if "held_out_loss" in card:  # exported the best weights on a held-out loss, not the last
        card["selected_at_step"] = card["held_out_loss"]["step"]
    if card["config"].get("init_weights"):  # a path on the training machine: name its model
        card["lineage"] = init_lineage(Path(card["config"]["init_weights"]))
        card["config"]["init_weights"] = card["fine_tuned_from"] = card["lineage"][0]["model"]
        card["total_steps"] = card["steps"] + sum(s["steps"] for s in card["lineage"])
        card["total_wall_time_s"] = round(
            card["wall_time_s"] + sum(s["wall_time_s"] for s in card["lineage"]), 2
        )
    card["config"]["data"] = card["training_data"]
    target.mkdir(parents=True, exist_ok=True)
    if args.store == "float16":
        weights = load_weights(args.run / WEIGHTS_FILE)
        save_weights({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
                     target / WEIGHTS_FILE)  # fmt: skip
        # the folder must hold the new card before `rounding_note` loads the model from it
        (target / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        card["stored_dtype"] = "float16"
        card["stored_dtype_note"] = rounding_note(args.run, target, card["spatial_dims"])
    else:
        shutil.copyfile(args.run / WEIGHTS_FILE, target / WEIGHTS_FILE)
    (target / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["scores"], indent=2))
    write_cards()
    print(f"shipped {args.run} as {spec.name} in {target}; card in docs/models.md")


if __name__ == "__main__":
    main()
