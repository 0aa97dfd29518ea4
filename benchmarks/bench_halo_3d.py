"""What the halo costs a 3-D model: denoise one 60x256x256 stack with default settings.

Prints the halo the engine chose per axis (Z, Y, X), the tile shape, the computed/output
voxel ratio and the wall time, on the CPU with one thread. Give a model name or a trained
model folder (e.g. the 2-D `unet-wne` inflated to 3-D, `napari_wne.inflation`):

    OMP_NUM_THREADS=1 python benchmarks/bench_halo_3d.py MODEL [--halo H ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_wne import denoise
from napari_wne.axes import parse_axes
from napari_wne.engine import TileSettings, cached_engine

SHAPE = (60, 256, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--halo", type=int, nargs="+", help="instead of the default halo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    halo = None if not args.halo else args.halo[0] if len(args.halo) == 1 else tuple(args.halo)
    rng = np.random.default_rng(0)
    grid = np.indices(SHAPE).sum(axis=0)
    image = rng.poisson(200 + 150 * np.sin(grid / 23.0)).astype(np.uint16)
    start = time.perf_counter()
    layout = parse_axes("ZYX", SHAPE)
    engine = cached_engine(args.model, layout, SHAPE, "cpu", TileSettings(halo=halo))
    measured = time.perf_counter() - start
    start = time.perf_counter()
    denoise(image, args.model, axes="ZYX", device="cpu", halo=halo, verbose=False)
    seconds = time.perf_counter() - start
    print(
        f"{args.model}: halo {engine.halo}, tiles {engine.grid.tile_shape} x "
        f"{engine.grid.counts}, computed/output {engine.grid.computed_fraction():.2f}, "
        f"halo measured in {measured:.1f} s, denoise {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
