"""The paper's noise-level mismatch experiment, and its intensity-shift check, on our code.

Trains each model below at one noise level (Gaussian, sigma 25 on the 0-255 scale, no
intensity jitter) on the 400 natural training images (train400), with one budget for all,
then tests on Set12 (sigma 5 to 100, eight levels) and BSD68 (five of them): plain
against WNE-wrapped for a CNN (DnCNN) and for the transformer (Restormer-style), and the
architectural NE baseline for the CNN. Then the intensity check: the same noisy images
mapped to a*y + b, denoised and mapped back, against the untouched score.

    python benchmarks/paper_mismatch.py           # train (resumes), test, write docs
    python benchmarks/paper_mismatch.py --quick   # a few steps and images: the script runs

Runs and per-model results are kept under runs/paper/ so an interrupted run resumes; delete
that folder to redo everything from scratch.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from _data import DATA
from _report import DOCS, RESULTS, machine, write_section
from napari_wne.datasets import NoiseConfig, find_images, load_clean_images, read_image
from napari_wne.models import load_model
from napari_wne.training import TrainConfig, TrainProgress, train

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "paper"
FIGURE = DOCS / "images" / "mismatch.png"
TRAIN_SIGMA = 25
TEST_SIGMAS = {"set12": (5, 10, 15, 25, 35, 50, 75, 100), "bsd68": (5, 15, 25, 50, 100)}
"""BSD68 (68 images, 6x Set12's pixels) at five of the levels: a CPU's test budget."""
CONTRASTS = (0.01, 0.25, 4.0, 100.0)
OFFSETS = (0.0, 100.0, 1000.0)
STEPS = 2000
PATCH = 40
BATCH = 16


@dataclass(frozen=True)
class Model:
    label: str
    slug: str
    backbone: str
    wne: bool
    kwargs: dict


MODELS = (
    Model("DnCNN-WNE", "dncnn-wne", "dncnn", True, {"features": 32}),
    Model("DnCNN", "dncnn", "dncnn", False, {"features": 32}),
    Model("Restormer-WNE", "restormer-wne", "restormer", True, {"width": 16}),
    Model("Restormer", "restormer", "restormer", False, {"width": 16}),
    Model("NE-DnCNN (architectural NE)", "ne-dncnn", "ne-dncnn", False, {"features": 32}),
)
"""Half-width DnCNN-17 (32 features) and a 16-wide transformer: sized for a 2-core CPU."""


def train_config(model: Model, runs: Path, quick: bool) -> TrainConfig:
    return TrainConfig(
        output_dir=runs / model.slug,
        backbone=model.backbone,
        wne=model.wne,
        backbone_kwargs=model.kwargs,
        patch_size=PATCH if not quick else 16,
        batch_size=BATCH if not quick else 2,
        steps=STEPS if not quick else 3,
        noise=NoiseConfig(kind="fixed", sigma_255=TRAIN_SIGMA, jitter=False),
        checkpoint_every=250,
        threads=1,
        data=(str(DATA / "natural" / "train400"),),
    )


def train_model(model: Model, runs: Path, images: list[np.ndarray], quick: bool) -> Path:
    config = train_config(model, runs, quick)

    def report(p: TrainProgress) -> None:
        if p.step % 250 == 0 or p.step == p.steps:
            print(f"  {model.slug} step {p.step}/{p.steps} loss {p.loss:.5f}", flush=True)

    print(f"training {model.label} in {config.output_dir}", flush=True)
    return train(config, clean_images=images, progress=report)


def test_set(name: str, quick: bool) -> list[np.ndarray]:
    """Clean test images in [0, 1] (8-bit / 255); quick: two 64-px crops."""
    paths = find_images(DATA / "natural" / name)
    images = [read_image(p).astype(np.float64) / 255 for p in paths[: 2 if quick else None]]
    return [x[:64, :64] for x in images] if quick else images


def noisy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """The same noise for every model: seeded by image index and sigma; not clipped."""
    rng = np.random.default_rng([seed, int(sigma)])
    return clean + sigma / 255 * rng.standard_normal(clean.shape)


def psnr(estimate: np.ndarray, clean: np.ndarray) -> float:
    """The usual 8-bit PSNR: peak 1 on the [0, 1] scale, no clipping of the estimate."""
    return 10 * math.log10(1.0 / float(np.mean((estimate - clean) ** 2)))


def forward(net: torch.nn.Module, image: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """One whole image through the network (no tiling), as the paper tests."""
    x = torch.from_numpy(image).to(dtype)[None, None]
    with torch.inference_mode():
        return net.to(dtype)(x)[0, 0].double().numpy()


def mean_psnr(estimates: Iterable[np.ndarray], images: list[np.ndarray]) -> float:
    return statistics.fmean(psnr(e, x) for e, x in zip(estimates, images, strict=True))


def mismatch(net: torch.nn.Module, quick: bool) -> dict[str, dict[str, float]]:
    """Mean input and output PSNR per test set and sigma."""
    found = {}
    for name in ("set12", "bsd68"):
        images = test_set(name, quick)
        for sigma in (25, 75) if quick else TEST_SIGMAS[name]:
            inputs = [noisy(x, sigma, i) for i, x in enumerate(images)]
            found[f"{name} {sigma}"] = {
                "input": mean_psnr(inputs, images),
                "output": mean_psnr((forward(net, y, torch.float32) for y in inputs), images),
            }
            print(f"  {name} sigma {sigma}: {found[f'{name} {sigma}']}", flush=True)
    return found


def shifts(net: torch.nn.Module, quick: bool) -> dict[str, float]:
    """Mean PSNR on Set12 (sigma 25) untouched, and after y -> a*y + b and back.

    Float64 here, so that storing a*y + b (a = 0.01, b = 1000 keeps ~4 digits in float32)
    does not blur what the network itself does; on 128-px centre crops, since float64
    convolutions are slow on a CPU.
    """
    images = [x[x.shape[0] // 2 - 64 :, x.shape[1] // 2 - 64 :][:128, :128] for x in
              test_set("set12", quick)]  # fmt: skip
    inputs = [noisy(x, TRAIN_SIGMA, i) for i, x in enumerate(images)]
    found = {"none": mean_psnr((forward(net, y, torch.float64) for y in inputs), images)}
    for a in CONTRASTS[:2] if quick else CONTRASTS:
        for b in OFFSETS[:2] if quick else OFFSETS:
            mapped_back = ((forward(net, a * y + b, torch.float64) - b) / a for y in inputs)
            found[f"{a:g} {b:g}"] = mean_psnr(mapped_back, images)
    return found


def results(runs: Path, quick: bool, only: list[str] | None = None) -> dict[str, dict]:
    """Train (or resume) and evaluate every model (or those in `only`); results are cached
    beside each run, so two processes can share the work on different models."""
    images = None
    found = {}
    for model in (m for m in MODELS if not only or m.slug in only):
        run = runs / model.slug
        if not (run / "model.json").is_file():
            if images is None:
                images = load_clean_images(DATA / "natural" / "train400")
                images = images[:4] if quick else images
            train_model(model, runs, images, quick)
        cached = run / "paper_results.json"
        result = json.loads(cached.read_text()) if cached.is_file() else {}
        net = load_model(str(run), 2, "cpu")
        for part, measure in (("mismatch", mismatch), ("shifts", shifts)):
            if part not in result:
                print(f"testing {model.label}: {part}", flush=True)
                result[part] = measure(net, quick)
                cached.write_text(json.dumps(result, indent=1))
        found[model.label] = {**result, "card": json.loads((run / "model.json").read_text())}
    return found


def mismatch_table(found: dict[str, dict], test: str) -> list[str]:
    labels = list(found)
    keys = [k for k in next(iter(found.values()))["mismatch"] if k.startswith(test)]
    rows = [
        "| sigma_test | input | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for key in keys:
        first = found[labels[0]]["mismatch"][key]
        cells = [f"{found[m]['mismatch'][key]['output']:.2f}" for m in labels]
        rows.append(f"| {key.split()[1]} | {first['input']:.2f} | " + " | ".join(cells) + " |")
    return rows


def shift_table(found: dict[str, dict]) -> list[str]:
    labels = list(found)
    shifts = [k for k in next(iter(found.values()))["shifts"] if k != "none"]
    rows = [
        "| a, b | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        "| untouched (PSNR) | "
        + " | ".join(f"{found[m]['shifts']['none']:.2f}" for m in labels)
        + " |",
    ]
    for key in shifts:
        a, b = key.split()
        cells = [f"{found[m]['shifts'][key] - found[m]['shifts']['none']:+.2f}" for m in labels]
        rows.append(f"| a = {a}, b = {b} | " + " | ".join(cells) + " |")
    return rows


def plot(found: dict[str, dict], path: Path) -> None:
    """Output PSNR against input PSNR, one panel per test set (the paper's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, test in zip(axes, ("set12", "bsd68"), strict=True):
        for label, result in found.items():
            points = [v for k, v in result["mismatch"].items() if k.startswith(test)]
            style = "-" if "WNE" in label or "NE-" in label else "--"
            ax.plot(
                [p["input"] for p in points],
                [p["output"] for p in points],
                style,
                marker="o",
                label=label,
            )
        trained = 20 * math.log10(255 / TRAIN_SIGMA)
        ax.axvline(trained, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{'Set12' if test == 'set12' else 'BSD68'}, trained at sigma 25")
        ax.set_xlabel("input PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("output PSNR (dB)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 steps, 2 images (CI smoke run)")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where the runs are kept")
    parser.add_argument("--no-write", action="store_true", help="print only, leave the docs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for testing")
    parser.add_argument("--only", nargs="+", choices=[m.slug for m in MODELS], help="these")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (DATA / "natural" / "train400").is_dir():
        sys.exit(f"no natural images at {DATA / 'natural'}; set NAPARI_WNE_DATA")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) if args.quick else args.runs
        found = results(runs, args.quick, args.only)
        for test in ("set12", "bsd68"):
            print("\n".join(mismatch_table(found, test)))
        print("\n".join(shift_table(found)))
        plot(found, Path(scratch) / "mismatch.png" if args.quick else FIGURE)
    if args.quick or args.no_write or args.only:
        return
    write_docs(found, time.perf_counter() - start)


def write_docs(found: dict[str, dict], seconds: float) -> None:
    cards = {label: r["card"] for label, r in found.items()}
    budget = ", ".join(
        f"{label} {card['parameters']:,} parameters, {card['wall_time_s'] / 60:.0f} min"
        for label, card in cards.items()
    )
    write_section(
        "paper_mismatch",
        [
            "## Noise-level mismatch (the paper's experiment)",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/paper_mismatch.py` "
            f"({machine(torch.device('cpu'))}; {seconds / 60:.1f} min, reusing what runs/paper/ "
            "held; training times below). Every model is trained once at sigma 25 (0-255 scale, "
            f"Gaussian, no intensity jitter) on train400, with one budget: **{STEPS} Adam "
            f"steps of {BATCH} patches of {PATCH} px** on a CPU thread (the paper: 500k "
            f"steps on a GPU). Training wall time and size: {budget}. Whole images, no "
            "clipping; PSNR with peak 255; noise seeded per image, the same for every model. "
            "BSD68 is tested at five of Set12's eight noise levels, to fit the CPU budget.",
            "",
            "![Output PSNR against input PSNR](images/mismatch.png)",
            "",
            "### Set12 (mean PSNR, dB)",
            "",
            *mismatch_table(found, "set12"),
            "",
            "### BSD68 (mean PSNR, dB)",
            "",
            *mismatch_table(found, "bsd68"),
            "",
            "### Intensity shifts",
            "",
            "Set12 at sigma 25; each noisy image y becomes a*y + b, is denoised, and the "
            "result is mapped back, (f(a*y + b) - b) / a. The table gives the change in mean "
            "PSNR against the untouched images, in dB (float64 throughout, so that storing "
            "a*y + b in float32 does not blur the comparison).",
            "",
            *shift_table(found),
            "",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
