"""The results page's one command still runs end to end (on a few images and steps)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_results_command_runs_in_quick_mode(shared_data, tmp_path):
    docs_before = {p: p.stat().st_mtime_ns for p in (BENCHMARKS.parent / "docs").rglob("*")}
    env = {**os.environ, "NAPARI_WNE_DATA": str(shared_data), "MPLCONFIGDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "results.py"), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    # Every experiment printed its table.
    for header in ("| sigma_test | input |", "| a, b |", "| method |", "| mode |", "| images |"):
        assert header in done.stdout, f"no table starting {header!r}"
    # A quick run leaves the docs alone.
    docs_after = {p: p.stat().st_mtime_ns for p in (BENCHMARKS.parent / "docs").rglob("*")}
    assert docs_after == docs_before
