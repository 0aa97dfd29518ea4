"""Which precision, memory layout and batch each device should run, measured.

For every shipped model and every precision the device supports, this denoises the real
microscopy pairs (benchmarks/_data.py, 512x512 each, one tile) with `denoise(...,
precision=...)` and reports throughput in output voxels/s, the network's FLOP per voxel,
the PSNR loss against float32 (mean over the pairs, gain-fitted as in docs/results.md) and
the equivariance error max |f(a*y+b) - (a*f(y)+b)| / (a*std y). On a CPU it also sweeps
the voxels per forward pass (`napari_wne.devices.CPU_BATCH_VOXELS`). `--layout` times the
backbones in channels_last against the default layout, and `--compile` `torch.compile`
against eager mode, each alternately, in a section of its own.

    python benchmarks/bench_devices.py                 # CPU (and CUDA when present)
    python benchmarks/bench_devices.py --quick         # 2 pairs, 2 models: a smoke run
    python benchmarks/bench_devices.py --devices cuda  # CUDA alone, in a section of its own
    python benchmarks/bench_devices.py --compile       # torch.compile on the CPU only
    python benchmarks/bench_devices.py --layout        # channels_last on the CPU only
    python benchmarks/bench_devices.py --equivariance  # float32-input equivariance only
    python benchmarks/bench_devices.py --section bench_devices_epyc  # a second CPU kind

Precisions alternate image by image, so load drift on a shared machine hits all alike.
The "auto pick" column is the fastest precision at a loss under 0.05 dB on this CPU;
`napari_wne.precision.CPU_AUTO` ranks, per architecture, the picks of every CPU kind
measured (with `--section` for a second kind), so each CPU gets the first it has units for.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time
from datetime import date

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from _data import VALIDATION_PAIR, microscopy_pairs, shipped_2d_models
from _report import machine, run_devices, section_name, write_section
from napari_wne import denoise
from napari_wne.metrics import scores
from napari_wne.models import load_model
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


def alternate(first, second, x: torch.Tensor, rounds: int) -> tuple[float, float]:
    """Median seconds of two modules on `x`, timed alternately after one warm-up each, so
    a shared machine's load drift hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    with torch.inference_mode():
        first(x)
        second(x)
        for round_ in range(rounds):
            order = (0, 1) if round_ % 2 == 0 else (1, 0)
            for which in order:
                start = time.perf_counter()
                (first, second)[which](x)
                times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


class ChannelsLast(torch.nn.Module):
    """A module whose input arrives in channels_last (its weights converted beforehand)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.contiguous(memory_format=torch.channels_last))


def layout_table(models: list[str], size: int, rounds: int) -> list[str]:
    """channels_last (weights and input) against the default layout, per backbone and
    precision, on the CPU."""
    rows = []
    for model in models:
        backbone = load_model(model, 2, "cpu").backbone
        last = copy.deepcopy(backbone).to(memory_format=torch.channels_last)
        x = torch.randn(1, 1, size, size)
        for p in ("float32", "float16"):
            plain, cl = backbone, ChannelsLast(last)
            if p != "float32":
                plain, cl = Autocast(plain, getattr(torch, p)), Autocast(cl, getattr(torch, p))
            t_plain, t_cl = alternate(plain, cl, x, rounds)
            rows.append(f"| `{model}` | {p} | {t_plain:.3f} | {t_cl:.3f} | {t_plain / t_cl:.2f}x |")
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


def compile_rows(model: str, size: int, rounds: int) -> list[str]:
    """torch.compile (inductor) against eager, one tile, timed alternately after compiling."""
    rows = []
    for p in ("float32", "float16"):
        backbone = load_model(model, 2, "cpu").backbone
        eager = backbone if p == "float32" else Autocast(backbone, getattr(torch, p))
        x = torch.randn(1, 1, size, size)
        start = time.perf_counter()
        try:
            compiled = torch.compile(eager, dynamic=False)
            with torch.inference_mode():
                compiled(x)
        except Exception as err:  # a missing compiler is a result here
            rows.append(f"| `{model}` | {p} | {size}x{size} | | failed: {type(err).__name__} | | |")
            continue
        build = time.perf_counter() - start
        t_eager, t_compiled = alternate(eager, compiled, x, rounds)
        with torch.inference_mode():
            error = float((compiled(x) - eager(x)).abs().max() / eager(x).std())
        rows.append(
            f"| `{model}` | {p} | {size}x{size} | {t_eager:.3f} | {t_compiled:.3f} | "
            f"{t_eager / t_compiled:.2f}x | {build:.0f} | {error:.1e} |"
        )
        print(rows[-1], flush=True)
    return rows


def _shared_note() -> str:
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        "2 cores shared with a training job at 1 thread and other work, load average "
        f"{load} at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 pairs, 2 models, no sweeps")
    parser.add_argument("--compile", action="store_true", help="only time torch.compile")
    parser.add_argument(
        "--equivariance", action="store_true", help="only the float32-input equivariance table"
    )
    parser.add_argument("--layout", action="store_true", help="only the channels_last table")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --layout, --compile")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--devices", nargs="+", choices=("cpu", "cuda"),
        help="what the precision table measures (default: the CPU, and CUDA when present); "
        "without the CPU it writes a section of its own and no batch sweep",
    )  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--section", help="write the precision table under this name (another CPU kind), "
        "leaving the default one in place",
    )  # fmt: skip
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
        write_section(
            "bench_devices_compile",
            [
                "## torch.compile",
                "",
                f"Measured {date.today()} with `python benchmarks/bench_devices.py --compile` "
                f"(torch {torch.__version__}, {machine(torch.device('cpu'))}; "
                f"{_shared_note()}): the `unet-wne` backbone on one tile, compiled with "
                "inductor (`dynamic=False`), then eager and compiled timed alternately, "
                f"medians of {args.rounds}. Error: max |compiled - eager| / std(eager).",
                "",
                "| model | precision | tile | eager (s) | compiled (s) | gain "
                "| compile time (s) | error |",
                "|---|---|---|---|---|---|---|---|",
                *compile_rows("unet-wne", 512, args.rounds),
            ],
        )
        return
    if args.layout:
        models = [name for name in shipped_2d_models() if name.endswith("-wne")]
        write_section(
            "bench_devices_layout",
            [
                "## channels_last",
                "",
                f"Measured {date.today()} with `python benchmarks/bench_devices.py --layout` "
                f"(torch {torch.__version__}, {machine(torch.device('cpu'))}; "
                f"{_shared_note()}): each WNE backbone on one 512x512 tile, weights and input "
                "in channels_last against the default layout, timed alternately, medians of "
                f"{args.rounds}, seconds.",
                "",
                "| model | precision | default layout (s) | channels_last (s) | gain |",
                "|---|---|---|---|---|",
                *layout_table(models, 512, args.rounds),
            ],
        )
        return
    run_on = run_devices(args.devices)
    devices = [str(d) for d in run_on]
    pairs = [p for p in microscopy_pairs() if p[0] != VALIDATION_PAIR]
    models = shipped_2d_models()
    if args.quick:
        pairs, models = pairs[:1] + pairs[-1:], ["dncnn-wne", "unet-wne"]
    with_cpu = "cpu" in devices
    flags = (
        (" --quick" if args.quick else "")
        + (f" --devices {' '.join(args.devices)}" if args.devices else "")
        + (f" --section {args.section}" if args.section else "")
    )
    units = f"CPU low-precision units: {cpu_flags()}. " if with_cpu else ""
    lines = [
        "## Precision on CUDA"
        if not with_cpu
        else "## Precision and batch on another CPU kind"
        if args.section
        else "## Precision, layout and batch by device",
        "",
        f"Measured {date.today()} with `python benchmarks/bench_devices.py{flags}` "
        f"(torch {torch.__version__}). {units}"
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
    if with_cpu and not args.quick:
        lines += [
            "",
            "**Voxels per forward pass** (CPU, `unet-wne` backbone, float32, 128x128 tiles):",
            "",
            "| voxels per pass (M) | tiles | Mvoxel/s |",
            "|---|---|---|",
            *batch_table("unet-wne", 128, [2**16, 2**18, 2**19, 2**20, 2**21, 2**22]),
        ]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines += ["", f"{time.perf_counter() - began:.0f} s in all; load average at the end {load}."]
    if not args.no_write:
        write_section(args.section or section_name("bench_devices", run_on), lines)


if __name__ == "__main__":
    main()
