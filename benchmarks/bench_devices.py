"""Which precision, memory layout and batch each device should run, measured.

For every shipped model and every precision the device supports, this denoises the real
microscopy pairs (benchmarks/_data.py, 512x512 each, one tile) with `denoise(...,
precision=...)` and reports throughput in output voxels/s, the network's FLOP per voxel,
the PSNR loss against float32 (mean over the pairs, gain-fitted as in docs/results.md) and
the equivariance error max |f(a*y+b) - (a*f(y)+b)| / (a*std y). On a CPU it also times the
backbones in channels_last against the default layout, sweeps the voxels per forward pass
(`napari_wne.devices.CPU_BATCH_VOXELS`). `--compile` instead times `torch.compile`
against eager mode, in a section of its own.

    python benchmarks/bench_devices.py                 # CPU (and CUDA when present)
    python benchmarks/bench_devices.py --quick         # 2 pairs, 2 models: a smoke run
    python benchmarks/bench_devices.py --compile       # torch.compile on the CPU only
    python benchmarks/bench_devices.py --equivariance  # float32-input equivariance only

Precisions alternate image by image, so load drift on a shared machine hits all alike.
The "auto pick" column is what `napari_wne.precision.CPU_AUTO` should say: the fastest
precision at a loss under 0.05 dB.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from datetime import date

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from _data import VALIDATION_PAIR, microscopy_pairs
from _report import machine, write_section
from napari_wne import denoise
from napari_wne.metrics import scores
from napari_wne.models import MODELS, load_model
from napari_wne.precision import MAX_AUTO_LOSS_DB, Autocast, supported_precisions

A, B = 3.7, -1200.0
"""The brightness/contrast change of the equivariance check (as in `napari-wne doctor`)."""


def cpu_flags() -> str:
    """The CPU's low-precision units, as /proc/cpuinfo names them."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    wanted = ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile")
    return ", ".join(f for f in wanted if f in flags) or "none of AVX-512/AMX"


def flop_per_voxel(model: str) -> float:
    """Forward FLOP (2 per multiply-add) per voxel of a 256x256 tile, counted by torch."""
    network = load_model(model, 2, "cpu")
    x = torch.randn(1, 1, 256, 256)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(x)
    return counter.get_total_flops() / x.numel()


def precision_table(device: str, models: list[str], pairs: list) -> tuple[list[str], dict]:
    """Rows of speed, loss and equivariance per model and precision; and the auto picks."""
    precisions = supported_precisions(device)
    rows, picks = [], {}
    for model in models:
        seconds = dict.fromkeys(precisions, 0.0)
        quality = {p: [] for p in precisions}
        equivariance = dict.fromkeys(precisions, 0.0)
        for p in precisions:  # warm-up: build the model, tune the kernels
            denoise(pairs[0][1][:256, :256], model, device=device, precision=p, verbose=False)
        voxels = 0
        for _name, noisy, clean in pairs:
            voxels += noisy.size
            for p in precisions:
                start = time.perf_counter()
                out = denoise(noisy, model, device=device, precision=p, verbose=False)
                seconds[p] += time.perf_counter() - start
                quality[p].append(scores(out, clean)[0])
                if _name == pairs[0][0]:
                    moved = denoise(A * noisy + B, model, device=device, precision=p, verbose=False)
                    error = np.abs(moved - (A * out.astype(np.float64) + B)).max()
                    equivariance[p] = float(error / (A * noisy.std()))
        flop = flop_per_voxel(model)
        best = "float32"
        for p in precisions:
            loss = float(np.mean(quality["float32"]) - np.mean(quality[p]))
            rate = voxels / seconds[p]
            if loss < MAX_AUTO_LOSS_DB and seconds[p] < seconds[best]:
                best = p
            rows.append(
                f"| `{model}` | {p} | {rate / 1e6:.3f} | {flop / 1e3:.1f} | "
                f"{rate * flop / 1e9:.2f} | {seconds['float32'] / seconds[p]:.2f}x | "
                f"{np.mean(quality[p]):.3f} | {loss:+.4f} | {equivariance[p]:.1e} |"
            )
            print(rows[-1], flush=True)
        picks[model] = best
        rows.append(f"| `{model}` | **auto pick: {best}** | | | | | | | |")
    return rows, picks


EQUIVARIANCE_CASES = [  # (mean, std, side, a, b): noise images with a camera-like offset
    (100, 15, 64, 6.5, -240.0),
    (100, 15, 64, 0.1, 7.0),
    (300, 30, 128, 6.5, -240.0),
    (1000, 10, 128, 6.5, -240.0),
    (1000, 10, 128, 0.1, 7.0),
]


def equivariance_rows(model: str) -> list[str]:
    """Equivariance error per precision for float32 input, whose a*y + b is rounded again."""
    rng = np.random.default_rng(0)
    rows = []
    for mean, std, side, a, b in EQUIVARIANCE_CASES:
        y = rng.normal(mean, std, (side, side)).astype(np.float32)
        moved = (a * y + b).astype(np.float32)
        errors = []
        for p in supported_precisions("cpu"):
            out = denoise(y, model, device="cpu", precision=p, verbose=False)
            shifted = denoise(moved, model, device="cpu", precision=p, verbose=False)
            error = np.abs(shifted - (a * out.astype(np.float64) + b)).max() / (a * y.std())
            errors.append(f"{error:.1e}")
        rows.append(f"| {mean}/{std} | {side}x{side} | {a} | {b} | {' | '.join(errors)} |")
        print(rows[-1], flush=True)
    return rows


def time_backbone(module: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Best of `repeats` inference passes, after one warm-up."""
    with torch.inference_mode():
        module(x)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            best = min(best, time.perf_counter() - start)
    return best


def layout_table(models: list[str], size: int, repeats: int) -> list[str]:
    """channels_last against the default layout, per backbone and precision (CPU)."""
    rows = []
    for model in models:
        backbone = load_model(model, 2, "cpu").backbone
        x = torch.randn(1, 1, size, size)
        last = x.contiguous(memory_format=torch.channels_last)
        for p in supported_precisions("cpu"):
            net = backbone if p == "float32" else Autocast(backbone, getattr(torch, p))
            plain, cl = time_backbone(net, x, repeats), time_backbone(net, last, repeats)
            rows.append(f"| `{model}` | {p} | {plain:.3f} | {cl:.3f} | {plain / cl:.2f}x |")
            print(rows[-1], flush=True)
    return rows


def batch_table(model: str, tile: int, budgets: list[int]) -> list[str]:
    """Throughput of the backbone against the voxels of one forward pass (CPU)."""
    backbone = load_model(model, 2, "cpu").backbone
    rows = []
    for voxels in budgets:
        batch = max(1, voxels // tile**2)
        x = torch.randn(batch, 1, tile, tile)
        seconds = time_backbone(backbone, x, 2)
        rows.append(f"| {batch * tile**2 / 1e6:.2f} | {batch} | {x.numel() / seconds / 1e6:.3f} |")
        print(rows[-1], flush=True)
    return rows


def compile_row(model: str, size: int) -> str:
    """torch.compile (inductor) against eager, float32, one tile, after compiling."""
    backbone = load_model(model, 2, "cpu").backbone
    x = torch.randn(1, 1, size, size)
    eager = time_backbone(backbone, x, 3)
    start = time.perf_counter()
    try:
        compiled = torch.compile(backbone)
        with torch.inference_mode():
            compiled(x)
    except Exception as err:  # a missing compiler is a result here
        return f"| `{model}` | {size}x{size} | {eager:.3f} | failed: {type(err).__name__} | | |"
    build = time.perf_counter() - start
    fast = time_backbone(compiled, x, 3)
    gain = eager / fast
    return f"| `{model}` | {size}x{size} | {eager:.3f} | {fast:.3f} | {gain:.2f}x | {build:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 pairs, 2 models, no sweeps")
    parser.add_argument("--compile", action="store_true", help="only time torch.compile")
    parser.add_argument(
        "--equivariance", action="store_true", help="only the float32-input equivariance table"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    if args.equivariance:
        write_section(
            "bench_devices_equivariance",
            [
                "## Equivariance error of each precision, float32 input",
                "",
                f"Measured {date.today()} with `python benchmarks/bench_devices.py "
                f"--equivariance` (torch {torch.__version__}, "
                f"{machine(torch.device('cpu'))}): `unet-wne`, max |f(a*y+b) - (a*f(y)+b)| "
                "/ (a*std y) on Gaussian noise images stored as float32, a*y + b rounded to "
                "float32 again.",
                "",
                "| mean/std | image | a | b | float32 | bfloat16 | float16 |",
                "|---|---|---|---|---|---|---|",
                *equivariance_rows("unet-wne"),
            ],
        )
        return
    if args.compile:
        row = compile_row("unet-wne", 512)
        write_section(
            "bench_devices_compile",
            [
                "## torch.compile",
                "",
                f"Measured {date.today()} with `python benchmarks/bench_devices.py --compile` "
                f"(torch {torch.__version__}, {machine(torch.device('cpu'))}): the "
                "`unet-wne` backbone, float32, one tile, best of 3 after compiling "
                "(inductor). Kept only where it gains.",
                "",
                "| model | tile | eager (s) | compiled (s) | gain | compile time (s) |",
                "|---|---|---|---|---|---|",
                row,
            ],
        )
        return
    pairs = [p for p in microscopy_pairs() if p[0] != VALIDATION_PAIR]
    models = [name for name, spec in MODELS.items() if spec.trained]
    if args.quick:
        pairs, models = pairs[:1] + pairs[-1:], ["dncnn-wne", "unet-wne"]
    devices = ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
    lines = [
        "## Precision, layout and batch by device",
        "",
        f"Measured {date.today()} with `python benchmarks/bench_devices.py"
        f"{' --quick' if args.quick else ''}` "
        f"(torch {torch.__version__}). CPU low-precision units: {cpu_flags()}. "
        f"{len(pairs)} real pairs (512x512, validation pair excluded), each one tile; "
        "throughput counts output voxels of the whole `denoise` call; FLOP counts the "
        "forward pass (2 per multiply-add); PSNR is gain-fitted as on the results page; "
        f"the equivariance error uses a = {A}, b = {B}. "
        f"Auto rule: fastest precision at a mean PSNR loss under {MAX_AUTO_LOSS_DB} dB.",
    ]
    for device in devices:
        rows, picks = precision_table(device, models, pairs)
        lines += [
            "",
            f"**{device}** ({machine(torch.device(device))}):",
            "",
            "| model | precision | Mvoxel/s | kFLOP/voxel | GFLOP/s | speed-up | PSNR (dB) "
            "| loss vs float32 (dB) | equivariance error |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
        print(f"{device} auto picks: {picks}", flush=True)
    if not args.quick:
        lines += [
            "",
            f"**channels_last** (CPU, {machine(torch.device('cpu'))}): backbone forward on "
            "one 512x512 tile, best of 3, seconds.",
            "",
            "| model | precision | default layout (s) | channels_last (s) | gain |",
            "|---|---|---|---|---|",
            *layout_table([m for m in models if m.endswith("-wne")], 512, 3),
            "",
            "**Voxels per forward pass** (CPU, `unet-wne` backbone, float32, 128x128 tiles):",
            "",
            "| voxels per pass (M) | tiles | Mvoxel/s |",
            "|---|---|---|",
            *batch_table("unet-wne", 128, [2**16, 2**18, 2**19, 2**20, 2**21, 2**22]),
        ]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += ["", f"{time.perf_counter() - began:.0f} s in all; load average at the end {load}."]
    write_section("bench_devices", lines)


if __name__ == "__main__":
    main()
