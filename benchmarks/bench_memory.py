"""Does peak memory stay flat when the stack grows? Peak RSS for 1x and 4x the voxels.

Each size runs `denoise(zarr_path, output=...)` in a fresh process and reads that process's
peak resident memory (ru_maxrss). The network is a one-layer TorchScript convolution wrapped
with WNE (``"wne:PATH"``): the pipeline's memory does not depend on the model beyond one
batch of tiles, and a small one keeps a 1 GB run short on a CPU.

    python benchmarks/bench_memory.py            # 128 and 512 planes of 1024x1024 uint16
    python benchmarks/bench_memory.py --planes 8 --no-write
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import zarr

from _report import machine, write_section

SIDE = 1024


def write_model(path: Path) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 1, 3, padding=1)
    torch.jit.script(conv).save(str(path))


def write_volume(path: Path, planes: int) -> None:
    """A noisy uint16 ZYX volume written slab by slab, never whole in this process."""
    array = zarr.create_array(
        str(path), shape=(planes, SIDE, SIDE), chunks=(16, 256, 256), dtype="uint16"
    )
    rng = np.random.default_rng(0)
    for z in range(0, planes, 16):
        array[z : z + 16] = rng.poisson(200, size=(min(16, planes - z), SIDE, SIDE))


def child(source: str, model: str, output: str) -> None:
    from napari_wne import denoise

    start = time.perf_counter()
    denoise(source, f"wne:{model}", axes="ZYX", output=output, device="cpu", verbose=False)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak_mib, "seconds": time.perf_counter() - start}))


def measure(folder: Path, model: Path, planes: int) -> dict:
    source, output = folder / f"in_{planes}.zarr", folder / f"out_{planes}.ome.zarr"
    write_volume(source, planes)
    command = [sys.executable, __file__, "--child", str(source), str(model), str(output)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=128, help="Z planes of the 1x volume")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_model(folder / "conv.pt")
        rows = ["| volume (ZYX, uint16) | input | peak RSS (MiB) | time (s) |", "|---|---|---|---|"]
        peaks = []
        for planes in (args.planes, 4 * args.planes):
            found = measure(folder, folder / "conv.pt", planes)
            peaks.append(found["peak_mib"])
            gib = planes * SIDE * SIDE * 2 / 2**30
            rows.append(
                f"| {planes}x{SIDE}x{SIDE} | {gib:.2f} GiB | {found['peak_mib']:.0f} "
                f"| {found['seconds']:.1f} |"
            )
            print(rows[-1], flush=True)
    ratio = peaks[1] / peaks[0]
    print(f"4x the voxels: {ratio:.3f}x the peak RSS")
    if args.no_write:
        return
    write_section(
        "bench_memory",
        [
            "## Peak memory against stack size",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/bench_memory.py` "
            f"({machine(torch.device('cpu'))}): zarr in, OME-Zarr out (float32), default "
            "blocks and tiles, one-layer convolution wrapped with WNE, each size in a fresh "
            "process. Target: 4x the voxels at most 1.1x the peak RSS.",
            "",
            *rows,
            "",
            f"4x the voxels: **{ratio:.3f}x** the peak RSS.",
            "",
        ],
    )


if __name__ == "__main__":
    main()
