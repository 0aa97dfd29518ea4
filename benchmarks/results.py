"""Regenerate every table and figure of docs/results.md, one script after another.

    python benchmarks/results.py           # trains what is missing, measures, writes the docs
    python benchmarks/results.py --quick   # every script on a few images/steps; no docs

Each script keeps its own section of the page (and says there how it was run); this one
only runs them in order and records the machine and the total time at the top.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

from _report import RESULTS, machine, write_section

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "paper_mismatch.py",
    "quality_microscopy.py",
    "quality_tiling.py",
    "quality_adaptation.py",
    "quality_recorrupted.py",
    "quality_correlated.py",
    "quality_tta.py",
    "quality_routing.py",
    "quality_3d.py",
    "quality_reference_noise.py",
    "quality_photons.py",
    "quality_phantoms.py",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of every script")
    args = parser.parse_args()
    start = time.perf_counter()
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        command = [sys.executable, str(HERE / script), *(["--quick"] if args.quick else [])]
        subprocess.run(command, check=True)
    minutes = (time.perf_counter() - start) / 60
    print(f"all results in {minutes:.1f} min")
    if args.quick:
        return
    write_section(
        "results",
        [
            f"Last regenerated {date.today().isoformat()} by `python benchmarks/results.py` "
            f"in {minutes:.0f} min ({machine(torch.device('cpu'))}), models already trained "
            "under runs/ reused.",
        ],
        report=RESULTS,
    )


if __name__ == "__main__":
    main()
