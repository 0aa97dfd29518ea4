"""What does the WNE wrapper cost? Forward time of each backbone, plain vs wrapped.

Also the architectural NE baseline against its plain twin (same depth and width, ordinary
convolutions and ReLU), which is what the paper's 1.5x-1.9x slowdown refers to.

    python benchmarks/bench_wrapper.py            # CPU, and CUDA when present
    python benchmarks/bench_wrapper.py --repeats 3 --no-write   # quick look

Timings alternate between the two variants in each round and the ratio is the median of the
per-round ratios, so drift in a shared machine's load hits both sides alike. Results go to
docs/performance.md between this script's markers, with the machine they ran on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch

from _report import machine, write_section
from napari_wne import WNE, build_backbone
from napari_wne.backbones.dncnn import DnCNN

PAPER_SHAPES = ((16, 1, 128, 128), (32, 1, 64, 64))


def _pairs() -> list[tuple[str, Callable[[], torch.nn.Module], Callable[[], torch.nn.Module]]]:
    """(label, baseline builder, variant builder); both built from the same seed."""

    def seeded(build: Callable[[], torch.nn.Module]) -> Callable[[], torch.nn.Module]:
        def make() -> torch.nn.Module:
            torch.manual_seed(0)
            return build()

        return make

    pairs = []
    for name in ("dncnn", "unet", "restormer"):
        plain = seeded(lambda name=name: build_backbone(name))
        wrapped = seeded(lambda name=name: WNE(build_backbone(name)))
        pairs.append((f"{name}: WNE vs plain", plain, wrapped))
    twin = seeded(lambda: DnCNN(batchnorm=False))
    ne_arch = seeded(lambda: build_backbone("ne-dncnn"))
    pairs.append(("ne-dncnn (NE-arch) vs its plain twin", twin, ne_arch))
    return pairs


def _time_once(model: torch.nn.Module, x: torch.Tensor) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    sync()
    return time.perf_counter() - start


def measure(base: torch.nn.Module, variant: torch.nn.Module, x: torch.Tensor, repeats: int):
    """Median times of both and the median per-round ratio variant/base."""
    for model in (base, variant):  # warm-up: allocator, cuDNN autotune, lazy init
        _time_once(model, x)
    base_times, variant_times, ratios = [], [], []
    for round_ in range(repeats):
        order = (base, variant) if round_ % 2 == 0 else (variant, base)
        times = {id(m): _time_once(m, x) for m in order}
        base_times.append(times[id(base)])
        variant_times.append(times[id(variant)])
        ratios.append(times[id(variant)] / times[id(base)])
    return (
        statistics.median(base_times),
        statistics.median(variant_times),
        statistics.median(ratios),
    )


def run(device: torch.device, repeats: int) -> list[str]:
    rows = [
        f"**{device.type.upper()}** ({machine(device)}), float32 inference "
        f"(eval + inference_mode), median of {repeats} alternating rounds:",
        "",
        "| comparison | batch | baseline (s) | variant (s) | variant / baseline "
        "| wrapper alone / baseline |",
        "|---|---|---|---|---|---|",
    ]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    wrapper_alone = WNE(torch.nn.Identity()).to(device).eval()
    for label, make_base, make_variant in _pairs():
        base, variant = make_base().to(device).eval(), make_variant().to(device).eval()
        for shape in PAPER_SHAPES:
            x = torch.randn(shape, device=device) * 30 + 100
            t_base, t_variant, ratio = measure(base, variant, x, repeats)
            alone = "—"
            if isinstance(variant, WNE):  # the wrapper's own work, free of the backbone's noise
                t_alone = statistics.median(_time_once(wrapper_alone, x) for _ in range(repeats))
                alone = f"{100 * t_alone / t_base:.3f} %"
            batch = "x".join(map(str, shape))
            row = f"| {label} | {batch} | {t_base:.4f} | {t_variant:.4f} | {ratio:.3f}x | {alone} |"
            print(row, flush=True)
            rows.append(row)
    return rows


def write_report(sections: list[list[str]], seconds: float) -> None:
    body = [
        "## WNE wrapper overhead",
        "",
        f"Measured {date.today().isoformat()} with `python benchmarks/bench_wrapper.py` "
        f"(torch {torch.__version__}, {seconds:.0f} s in all). Target: WNE/plain <= 1.01 for "
        "every backbone; the paper measured 1.01 (FDnCNN, CPU) and 1.08 (SwinIR, CPU) for WNE, "
        "and 1.5x-1.9x for the architectural NE baseline. End-to-end ratios carry the "
        "machine's timing noise (a few per cent on a shared CPU); the last column times the "
        "wrapper's own work (statistics, normalize, denormalize: `WNE(Identity())`) on the "
        "same input, as a fraction of the plain forward, which that noise cannot hide.",
        "",
    ]
    for rows in sections:
        body += [*rows, ""]
    write_section("bench_wrapper", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    start = time.perf_counter()
    sections = [run(device, args.repeats) for device in devices]
    if not args.no_write:
        write_report(sections, time.perf_counter() - start)


if __name__ == "__main__":
    main()
