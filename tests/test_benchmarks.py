"""The results page's one command still runs end to end (on a few images and steps)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_a_cuda_only_benchmark_run_keeps_the_cpu_tables(monkeypatch):
    """`--devices cuda` writes a section of its own; naming CUDA without one stops."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _report

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _report.section_name("bench_devices", [cpu, cuda]) == "bench_devices"
    assert _report.section_name("bench_devices", [cuda]) == "bench_devices_cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _report.run_devices(None) == [cpu]
    with pytest.raises(SystemExit, match="no CUDA device"):
        _report.run_devices(["cuda"])
