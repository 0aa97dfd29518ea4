"""Shared by the benchmarks: describe the machine; write a section of a docs page."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPORT = DOCS / "performance.md"
RESULTS = DOCS / "results.md"


def machine(device: torch.device) -> str:
    """The CPU model (or GPU name) and thread count, so a figure says where it came from."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def run_devices(names: Sequence[str] | None = None) -> list[torch.device]:
    """The devices a benchmark measures: the named ones ("cpu", "cuda"), or by default the
    CPU and, when torch sees one, CUDA (its current device). Naming CUDA without one stops."""
    if not names:
        names = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    if "cuda" in names and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: torch sees no CUDA device")
    return [torch.device(name) for name in names]


def section_name(script: str, devices: Sequence[torch.device]) -> str:
    """A script's docs section: its own name when the CPU is among the devices (the default
    run), else with the devices added, so a GPU-only run does not replace the CPU table."""
    if any(d.type == "cpu" for d in devices):
        return script
    return "_".join([script, *dict.fromkeys(d.type for d in devices)])


def write_section(name: str, lines: list[str], report: Path = REPORT) -> None:
    """Replace this script's section of a docs page (between its markers), or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = "\n".join([start, *lines, end])
    title = "# Performance" if report == REPORT else "# Results"
    text = report.read_text() if report.exists() else f"{title}\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + body + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    report.write_text(text)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: `header`, its rule, then one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def publish(name: str, lines: list[str], write: bool, report: Path = REPORT) -> None:
    """Print a section's lines, and when `write`, make them section `name` of `report`."""
    for line in lines:
        print(line)
    if write:
        write_section(name, lines, report)
