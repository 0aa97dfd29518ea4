"""Does a 20000 x 20000 result pan smoothly in napari? With and without its pyramid.

Three phases, each in a fresh process so its time and peak memory are its own:

1. ``write``: a 20k x 20k uint16 OME-Zarr written by our writer (`OmeZarrWriter`, 4096 px
   blocks = shards of 1024 px chunks, as a run writes it), level 0 only. Its pixels are a
   cheap synthetic pattern (smooth rings plus 8 bits of hashed texture), not a denoised
   image: denoising 400 Mpx on a CPU takes hours and would measure the network, not the
   viewer.
2. ``pyramid``: the pyramid pass (`writers.pyramid.build_pyramid`) on that store, then its
   metadata: the pass's time and peak RSS, to show memory stays flat.
3. ``view``: napari opens the store (under ``xvfb-run -a`` on a headless machine) and the
   camera moves: 20 pans at a zoom that shows the whole image, then 30 pans at 1:1 (one
   screen pixel per image pixel) along a path across it. A frame is the move plus the
   repaints until napari has drawn the new view (chunks are read synchronously while
   drawing). Once with the pyramid (napari's multiscale layer, from our reader) and once
   with level 0 only (what an output without a pyramid gives), each capped in time.

    xvfb-run -a python benchmarks/bench_pyramid.py            # 20000 px, writes docs
    xvfb-run -a python benchmarks/bench_pyramid.py --side 4096 --no-report
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

BLOCK = 4096
CAP_S = 600


def pattern(y0: int, x0: int, shape: tuple[int, int]) -> np.ndarray:
    """uint16 pixels of the synthetic image at (y0, x0): rings of a 3000 px period plus a
    hashed texture, computed 512 rows at a time (never more than a block in memory)."""
    out = np.empty(shape, dtype=np.uint16)
    xx = np.arange(x0, x0 + shape[1], dtype=np.int64)[None, :]
    for r in range(0, shape[0], 512):
        yy = np.arange(y0 + r, y0 + min(r + 512, shape[0]), dtype=np.int64)[:, None]
        rings = ((yy - 10000) ** 2 + (xx - 10000) ** 2) // 9000 % 1000
        texture = ((yy * 2654435761) ^ (xx * 40503)) >> 5 & 255
        out[r : r + yy.shape[0]] = 2000 + 30 * rings + texture
    return out


def write(path: Path, side: int) -> dict:
    from napari_wne.writers import OmeZarrWriter, OutputPlan

    corners = [(y, x) for y in range(0, side, BLOCK) for x in range(0, side, BLOCK)]
    plan = OutputPlan(
        shape=(side, side), axes="YX", dtype=np.dtype(np.uint16), block={"Y": BLOCK, "X": BLOCK},
        blocks=tuple(f"y{y}_x{x}" for y, x in corners), record={"bench": "pyramid"},
        fingerprint=None, name="bench", scale={"Y": 0.1, "X": 0.1},
        units={"Y": "micrometer", "X": "micrometer"},
    )  # fmt: skip

    def fill(store) -> None:
        target = store.array()
        for y, x in corners:
            shape = (min(BLOCK, side - y), min(BLOCK, side - x))
            pixels = pattern(y, x, shape)
            box = (slice(y, y + shape[0]), slice(x, x + shape[1]))
            store.save_block(f"y{y}_x{x}", lambda: target.__setitem__(box, pixels))  # noqa: B023

    start = time.perf_counter()
    OmeZarrWriter(path).write(plan, fill, resume=False, overwrite=True)
    return {"seconds": time.perf_counter() - start, "peak_mib": _peak_mib()}


def pyramid(path: Path, smallest: int) -> dict:
    import zarr

    from napari_wne.writers import OmeZarrOutput
    from napari_wne.writers.pyramid import build_pyramid, level_shapes, plan_levels

    store = OmeZarrOutput(path)
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    shape = group["0"].shape
    levels = plan_levels(shape, "YX", {"Y": 0.1, "X": 0.1}, "on", smallest=smallest)
    before = _peak_mib()
    start = time.perf_counter()
    build_pyramid(store, levels)
    seconds = time.perf_counter() - start
    peak = _peak_mib()
    store.finalize(  # the metadata, now listing the levels, as the writer's last step
        blocks=(), axes="YX", scale={"Y": 0.1, "X": 0.1},
        units={"Y": "micrometer", "X": "micrometer"}, name="bench",
        info={k: v for k, v in attrs["napari_wne"].items() if k != "complete"}, levels=levels,
    )  # fmt: skip
    return {
        "seconds": seconds, "peak_mib": peak, "peak_before_mib": before,
        "shapes": [list(s) for s in level_shapes(shape, levels)],
    }  # fmt: skip


def view(path: Path, mode: str) -> dict:
    """Open the store in napari and time each camera move until its frame is drawn."""
    import dask.array as da
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_wne._reader import read_image

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 960)
    app = QApplication.instance()
    canvas = viewer.window._qt_viewer.canvas._scene_canvas.native

    def draw() -> None:
        for _ in range(2):  # the move's paint (which loads what it needs), then its result
            app.processEvents()
            canvas.repaint()
        app.processEvents()

    start = time.perf_counter()
    ((data, meta, _),) = read_image(str(path))
    if mode == "level0":
        data, meta = da.from_zarr(str(path / "0")), {**meta, "multiscale": False}
    layer = viewer.add_image(data, contrast_limits=(0, 40000), **meta)
    viewer.reset_view()
    draw()
    first = time.perf_counter() - start
    side = layer.data[0].shape[-1] if mode == "pyramid" else layer.data.shape[-1]
    step = 0.1 * side * 0.1  # world units: 0.1 um pixels
    centre = np.array(viewer.camera.center[-2:])
    whole = _frames(
        viewer, draw, [centre + step * np.array([i % 3 - 1, i % 5 - 2]) for i in range(20)]
    )
    viewer.camera.zoom = 1 / 0.1  # one screen pixel per image pixel
    hop = 0.85 * side / 30  # about half the canvas: every move needs new chunks
    path_1to1 = [0.1 * np.array([0.1 * side + hop * i, 0.05 * side + hop * i]) for i in range(30)]
    one = _frames(viewer, draw, path_1to1)
    idle = _frames(viewer, draw, [path_1to1[-1]] * 10)  # the same two paints, nothing moved
    level = getattr(layer, "data_level", 0)
    viewer.close()
    return {
        "first_frame_s": first, "whole_ms": whole, "one_to_one_ms": one, "idle_ms": idle,
        "level_at_1to1": level, "peak_mib": _peak_mib(),
    }  # fmt: skip


def _frames(viewer, draw, centres) -> list[float]:
    times = []
    for centre in centres:
        start = time.perf_counter()
        viewer.camera.center = tuple(float(c) for c in centre)
        draw()
        times.append(1000 * (time.perf_counter() - start))
    return times


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(phase: str, *args: str, cap: float = CAP_S) -> dict | None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--phase", phase, *args], env=env, timeout=cap,
            capture_output=True, text=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms (max {max(values):.0f})"


def report(side: int, wrote: dict, built: dict, views: dict[str, dict | None]) -> list[str]:
    import torch

    from _report import machine

    shapes = " → ".join("x".join(map(str, s)) for s in built["shapes"])
    lines = [
        "## Pyramids: panning a 20k x 20k result in napari",
        "",
        f"`xvfb-run -a python benchmarks/bench_pyramid.py`, {date.today()}, "
        f"{machine(torch.device('cpu'))}, napari under Xvfb (software OpenGL), canvas "
        f"about 1280 x 960. A {side} x {side} uint16 OME-Zarr written by our writer (level 0 "
        f"in {wrote['seconds']:.0f} s); levels {shapes}.",
        "",
        f"The pyramid pass took {built['seconds']:.0f} s with a peak RSS of "
        f"{built['peak_mib']:.0f} MiB ({built['peak_before_mib']:.0f} MiB before it: Python, "
        f"numpy and zarr), for an image of {side * side * 2 / 1e6:.0f} MB: memory stays flat, "
        "one shard at a time.",
        "",
        "| layer | first frame | pan, whole image in view | pan at 1:1 | no move | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for mode, words in (("pyramid", "with pyramid (multiscale)"), ("level0", "level 0 only")):
        got = views[mode]
        if got is None:
            lines.append(f"| {words} | not drawn within {CAP_S} s | - | - | - | - |")
            continue
        lines.append(
            f"| {words} | {got['first_frame_s']:.1f} s | {_median(got['whole_ms'])} | "
            f"{_median(got['one_to_one_ms'])} | {_median(got['idle_ms'])} | "
            f"{got['peak_mib']:.0f} MiB |"
        )
    lines += [
        "",
        "A frame is one camera move plus two repaints (napari 0.9 reads the chunks a view "
        "needs while painting it, then paints them), so disk reads and decompression are "
        "included; 'no move' is the same two repaints without a move, the floor set by "
        "software OpenGL here. Medians of 20 moves (whole image), 30 moves (1:1), 10 idle. "
        "The machine's 2 cores are shared with other jobs: medians vary between runs by up "
        "to 2x, so compare the rows of one run.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--smallest", type=int, default=1024)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--phase", choices=["write", "pyramid", "view-pyramid", "view-level0"])
    parser.add_argument("--path", type=Path)
    args = parser.parse_args()
    if args.phase == "write":
        print(json.dumps(write(args.path, args.side)))
    elif args.phase == "pyramid":
        print(json.dumps(pyramid(args.path, args.smallest)))
    elif args.phase:
        print(json.dumps(view(args.path, args.phase.removeprefix("view-"))))
    else:
        with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
            path = Path(tmp) / "big.ome.zarr"
            wrote = _child("write", "--path", str(path), "--side", str(args.side))
            print("level 0 written:", wrote, flush=True)
            built = _child("pyramid", "--path", str(path), "--smallest", str(args.smallest))
            print("pyramid:", built, flush=True)
            views = {m: _child(f"view-{m}", "--path", str(path)) for m in ("pyramid", "level0")}
            print("views:", json.dumps(views), flush=True)
        lines = report(args.side, wrote, built, views)
        print("\n".join(lines))
        if not args.no_report:
            from _report import write_section

            write_section("bench_pyramid", lines)


if __name__ == "__main__":
    main()
