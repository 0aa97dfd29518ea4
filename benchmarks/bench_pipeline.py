"""Is the whole zarr-to-zarr pipeline as fast as the network it feeds?

For a 2D time-lapse and a 3D volume stored in zarr, this times `denoise(zarr_path,
output=...)` end to end (reading, tiling, normalization, forward, blending, writing) and the
raw model forward alone on exactly the tiles the pipeline computes (same count, shape and
batch size). Their throughputs on those computed voxels give the pipeline's efficiency; the
computed/output voxel ratio is the cost of the halo.

    python benchmarks/bench_pipeline.py               # default model, CPU (and CUDA)
    python benchmarks/bench_pipeline.py --repeats 1 --no-write
    python benchmarks/bench_pipeline.py --precisions float32 float16
    python benchmarks/bench_pipeline.py --devices cuda   # CUDA alone, in a section of its own
    python benchmarks/bench_pipeline.py --host-only      # a near-empty network: the host's share

The raw forward runs the engine's own network, in the run's precision and memory layout,
so the ratio measures the pipeline around it and nothing else. `--host-only` swaps the
model for a WNE DnCNN of 2 layers and 4 features, whose forward costs next to nothing: the
pipeline's time is then what the host spends reading, tiling, normalizing, blending and
writing, the ceiling a fast GPU meets.

Rounds alternate pipeline and raw forward; figures are medians, the efficiency the median of
per-round ratios, so a shared machine's load drift hits both alike.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch
import zarr

from _report import machine, run_devices, section_name, write_section
from napari_wne import DEFAULT_MODEL, build_backbone, denoise
from napari_wne.axes import parse_axes
from napari_wne.engine import Engine, TileSettings
from napari_wne.halo import compact
from napari_wne.model_io import CARD_FILE, CARD_FORMAT, WEIGHTS_FILE, save_weights
from napari_wne.models import get_model
from napari_wne.modes import PRECISION

CASES = {  # name: (axes, shape, zarr chunks)
    "2D time-lapse": ("TYX", (2, 1536, 1536), (1, 512, 512)),
    "3D volume": ("ZYX", (48, 384, 384), (16, 128, 128)),
}


def make_input(folder: Path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> Path:
    """A noisy uint16 stack with structure, stored as zarr v3."""
    rng = np.random.default_rng(0)
    grid = np.indices(shape[-2:]).sum(axis=0)
    clean = 200 + 150 * np.sin(grid / 23.0)
    data = rng.poisson(np.broadcast_to(clean, shape)).astype(np.uint16)
    path = folder / f"input_{'x'.join(map(str, shape))}.zarr"
    zarr.create_array(str(path), shape=shape, chunks=chunks, dtype="uint16")[:] = data
    return path


def random_unet(folder: Path, spatial_dims: int) -> str:
    """The plain UNet architecture with seed-0 random weights: speed does not need training."""
    torch.manual_seed(0)
    path = folder / f"unet_{spatial_dims}d.safetensors"
    save_weights(build_backbone("unet", spatial_dims=spatial_dims).state_dict(), path)
    return f"unet:{path}"


NEAR_EMPTY = "near-empty DnCNN"
"""How the tables name `--host-only`'s network."""


def near_empty_model(folder: Path, spatial_dims: int) -> str:
    """A model folder holding a WNE DnCNN of 2 layers of 4 features (seed-0 weights)."""
    size = {"depth": 2, "features": 4}
    target = folder / f"near_empty_{spatial_dims}d"
    target.mkdir(exist_ok=True)
    torch.manual_seed(0)
    network = build_backbone("dncnn", spatial_dims=spatial_dims, **size)
    save_weights(network.state_dict(), target / WEIGHTS_FILE)
    card = {"format": CARD_FORMAT, "backbone": "dncnn", "wne": True,
            "spatial_dims": spatial_dims, "backbone_kwargs": size}  # fmt: skip
    (target / CARD_FILE).write_text(json.dumps(card))
    return str(target)


def computed_tiles(engine: Engine, batch_shape: tuple[int, ...], block: tuple) -> int:
    """How many tiles the pipeline runs through the network (tiles shared by blocks twice)."""
    blocks = engine.blocks(batch_shape, block)
    return sum(len(engine.plan(b)[1]) for b in blocks)


def time_raw_forward(model, tile_shape, tiles: int, batch: int, device) -> float:
    x = torch.randn((batch, 1, *tile_shape), device=device) * 30 + 200
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        model(x)  # warm-up
        sync()
        start = time.perf_counter()
        for first in range(0, tiles, batch):
            model(x[: min(batch, tiles - first)])
        sync()
    return time.perf_counter() - start


def run_case(
    name: str,
    model: str | None,
    device: torch.device,
    repeats: int,
    folder: Path,
    precision: str,
) -> str:
    """One table row; `model` None: the near-empty network (`--host-only`)."""
    axes, shape, chunks = CASES[name]
    source = make_input(folder, shape, chunks)
    layout = parse_axes(axes, shape)
    label = NEAR_EMPTY if model is None else model.split(":")[0]
    if model is None:
        model = near_empty_model(folder, layout.spatial_dims)
    elif layout.spatial_dims not in get_model(model).dims:  # the shipped weights are 2D
        model = random_unet(folder, layout.spatial_dims)
    settings = TileSettings(precision=precision)
    engine = Engine(model, layout, layout.spatial_shape(shape), device, settings)
    block = (4096, 4096) if layout.spatial_dims == 2 else (128, 512, 512)
    block = tuple(min(b, n) for b, n in zip(block, engine.grid.shape, strict=True))
    tiles = computed_tiles(engine, layout.batch_shape(shape), block)
    computed = tiles * math.prod(engine.grid.tile_shape)
    network = engine.model  # in the run's precision and layout, as the pipeline runs it

    def pipeline() -> float:
        target = folder / "output.ome.zarr"
        start = time.perf_counter()
        denoise(source, model, axes=axes, output=target, device=device, overwrite=True,
                precision=precision, verbose=False)  # fmt: skip
        seconds = time.perf_counter() - start
        shutil.rmtree(target)
        return seconds

    pipeline()  # warm-up: model build, receptive-field probe, allocator
    runs, raws, ratios = [], [], []
    for round_ in range(repeats):
        order = ("pipeline", "raw") if round_ % 2 == 0 else ("raw", "pipeline")
        seconds = {}
        for what in order:
            seconds[what] = (
                pipeline()
                if what == "pipeline"
                else time_raw_forward(
                    network, engine.grid.tile_shape, tiles, engine.batch_size, device
                )
            )
        runs.append(seconds["pipeline"])
        raws.append(seconds["raw"])
        ratios.append(seconds["raw"] / seconds["pipeline"])
    t_pipe, t_raw = statistics.median(runs), statistics.median(raws)
    row = (
        f"| {name} {axes} {'x'.join(map(str, shape))} | `{label}` | "
        f"{device.type} | {engine.precision} | "
        f"{'x'.join(map(str, engine.grid.tile_shape))} (halo {compact(engine.halo)}) | "
        f"{computed / math.prod(shape):.3f} | {t_pipe:.2f} | {t_raw:.2f} | "
        f"{computed / t_pipe / 1e6:.3f} | {computed / t_raw / 1e6:.3f} | "
        f"{statistics.median(ratios):.3f} |"
    )
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--host-only", action="store_true",
        help="a near-empty network instead of --model: what the host's work alone costs",
    )  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all)")
    parser.add_argument(
        "--precisions", nargs="+", default=["auto"], choices=PRECISION.values,
        help="each a row per case (default: auto, what a run picks)",
    )  # fmt: skip
    parser.add_argument(
        "--devices", nargs="+", choices=("cpu", "cuda"),
        help="default: the CPU, and CUDA when present; without the CPU the section is its own",
    )  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # an untrained model is as fast as a trained one
    devices = run_devices(args.devices)
    rows = [
        "| input | model | device | precision | tile | computed / output voxels "
        "| pipeline (s) | raw forward (s) | pipeline Mvoxel/s | raw Mvoxel/s "
        "| pipeline / raw throughput |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for precision in args.precisions:
                for name in CASES:
                    folder = Path(tmp) / f"{device.type}-{precision}"
                    folder.mkdir(exist_ok=True)
                    model = None if args.host_only else args.model
                    rows.append(run_case(name, model, device, args.repeats, folder, precision))
    if args.no_write:
        return
    machines = "; ".join(f"{d.type}: {machine(d)}" for d in devices)
    command = " ".join(["python benchmarks/bench_pipeline.py", *sys.argv[1:]])
    shown = NEAR_EMPTY if args.host_only else args.model
    detail = (
        "Both cases run a WNE DnCNN of 2 layers and 4 features (seed-0 weights), whose forward "
        "costs next to nothing: pipeline minus raw forward is the host's work (reading, "
        "tiling, statistics, blending, writing), and the pipeline's throughput the most any "
        "device can get from it on this host. Throughputs count computed voxels (tiles x "
        "tile size)."
        if args.host_only
        else "The shipped model is 2D, so the 3D case runs the same UNet architecture in 3D, "
        "untrained and unwrapped (speed does not depend on the weights; the wrapper's own "
        "cost is measured above). Throughputs count computed voxels (tiles x tile size). "
        "Targets: pipeline / raw >= 0.9; computed / output <= 1.3 in 2D."
    )
    write_section(
        section_name("bench_pipeline_host" if args.host_only else "bench_pipeline", devices),
        [
            (
                "## The pipeline's host work: a near-empty network"
                if args.host_only
                else "## Whole pipeline against the raw network forward"
            )
            + ("" if any(d.type == "cpu" for d in devices) else " on CUDA"),
            "",
            f"Measured {date.today().isoformat()} with `{command}` "
            f"(model {shown}, default tiling, median of {args.repeats} alternating rounds, "
            f"{time.perf_counter() - start:.0f} s in all; {machines}). The pipeline reads zarr, "
            "tiles, normalizes, runs the network, blends and writes an OME-Zarr; the raw "
            "forward runs the engine's network (in the run's precision and layout) alone on "
            "the same number of tiles of the same shape. " + detail,
            "",
            *rows,
            "",
        ],
    )


if __name__ == "__main__":
    main()
