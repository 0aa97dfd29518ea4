"""Which compressor should the OME-Zarr output use? Speed and size on real denoised images.

    python benchmarks/bench_codecs.py            # writes its section of docs/performance.md
    python benchmarks/bench_codecs.py --no-write

The data is what the writer stores: `unet-wne`'s float32 results of the first real W2S
and FMD pairs (the noisy captures), tiled to 2x1536x1536 per image and written in the
writer's 512x512 chunks. Each codec writes and reads the same arrays; times are the
medians of alternating rounds, on one zarr array per round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from _data import microscopy_pairs
from _report import machine, write_section
from napari_wne import denoise

CODECS = {
    "Zstandard level 0, no shuffle (zarr's default)": (ZstdCodec(level=0),),
    "none": None,
    "Blosc Zstandard level 3, byte shuffle": (
        BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    ),
    "Blosc LZ4 level 5, byte shuffle (the writer's)": (
        BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    ),
}


def denoised_stacks() -> list[tuple[str, np.ndarray]]:
    """One W2S and one FMD result, each tiled 3x3 and stacked twice (2x1536x1536)."""
    picked: dict[str, np.ndarray] = {}
    for name, noisy, _ in microscopy_pairs():
        kind = name.split()[0]
        if kind not in picked:
            picked[kind] = denoise(noisy.astype("float32"), "unet-wne", verbose=False)
    return [(k, np.stack([np.tile(v.astype(np.float32), (3, 3))] * 2)) for k, v in picked.items()]


def time_codec(data: np.ndarray, codec, folder: Path) -> tuple[float, float, int]:
    """Seconds to write, seconds to read, bytes stored."""
    if folder.exists():
        shutil.rmtree(folder)
    start = time.perf_counter()
    array = zarr.create_array(
        str(folder), shape=data.shape, chunks=(1, 512, 512), dtype="float32", compressors=codec
    )
    array[:] = data
    wrote = time.perf_counter() - start
    start = time.perf_counter()
    zarr.open_array(str(folder))[:]
    read = time.perf_counter() - start
    return wrote, read, sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rows = [
        "| image | compressor | write (ms) | read (ms) | stored / raw size |",
        "|---|---|---|---|---|",
    ]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for kind, data in denoised_stacks():
            found = {name: [] for name in CODECS}
            for round_ in range(args.rounds):
                names = list(CODECS) if round_ % 2 == 0 else list(reversed(CODECS))
                for name in names:
                    found[name].append(time_codec(data, CODECS[name], Path(tmp) / "a.zarr"))
            for name, runs in found.items():
                wrote = statistics.median(r[0] for r in runs) * 1000
                read = statistics.median(r[1] for r in runs) * 1000
                rows.append(
                    f"| {kind} | {name} | {wrote:.0f} | {read:.0f} | "
                    f"{runs[0][2] / data.nbytes:.3f} |"
                )
                print(rows[-1], flush=True)
    if args.no_write:
        return
    write_section(
        "bench_codecs",
        [
            "## The output's compressor",
            "",
            f"Measured {date.today().isoformat()} with `python benchmarks/bench_codecs.py` "
            f"({machine(torch.device('cpu'))}, zarr {zarr.__version__}; median of "
            f"{args.rounds} alternating rounds, {time.perf_counter() - began:.0f} s in all). "
            "`unet-wne`'s float32 result of the first real W2S and FMD capture, tiled to "
            "2x1536x1536 (18.9 MB), in 512x512 chunks: what the OME-Zarr writer stores.",
            "",
            *rows,
            "",
        ],
    )


if __name__ == "__main__":
    main()
