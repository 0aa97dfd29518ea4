"""`napari-wne doctor`: what a bug report needs, and a self-check that the install works.

It prints the versions that matter, every device torch can use with its memory and the
precisions it supports (and which one "auto" picks), a short speed probe of the default
model on each device in each precision, and checks of the default model on the bundled
3-D sample: that it is normalization equivariant (f(a*y + b) = a*f(y) + b) in every
precision the CPU runs, and that it improves a noisy plane against its clean reference.
Any failed check makes the exit status non-zero, so scripts can rely on it.
The sample checks say the install computes what it should; they are not a benchmark (the
0.1 default model saw the sample's source stack in training: docs/training.md).
"""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from typing import TextIO

import numpy as np
import torch

from .api import denoise
from .devices import available_devices
from .metrics import psnr
from .models import DEFAULT_MODEL, MODELS, get_model, load_model
from .precision import (
    DTYPES,
    cpu_has_units,
    resolve_precision,
    supported_precisions,
    with_precision,
)
from .routing import WHITE_NOISE_MODEL
from .sample_data import NOISE, add_poisson_gaussian_noise, load_sample

PROBED = WHITE_NOISE_MODEL if MODELS[DEFAULT_MODEL].routed else DEFAULT_MODEL
"""The network the speed and precision probes time: the default's own, or the white-noise
model for "auto" (both models it chooses between share one architecture)."""

__all__ = ["run_doctor"]

PACKAGES = ("napari-wne", "torch", "numpy", "zarr", "tifffile", "dask", "napari", "magicgui")
EQUIVARIANCE_TOLERANCE = 1e-4
"""Largest |f(a*y + b) - (a*f(y) + b)| allowed, relative to a*std(y)."""
MIN_GAIN_DB = 3.0
"""The default model must add at least this much PSNR to the sample's noisy plane."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def device_lines() -> list[str]:
    """One line per device: its name, memory, the precisions it can compute in, "auto"."""
    lines = []
    for name in available_devices():
        precisions = ", ".join(supported_precisions(name))
        auto = resolve_precision("auto", name, get_model(PROBED).backbone)[0]
        if name.startswith("cuda"):
            index = torch.device(name).index or 0
            free, total = torch.cuda.mem_get_info(index)
            what = (
                f"{torch.cuda.get_device_name(index)} (compute capability "
                f"{'.'.join(map(str, torch.cuda.get_device_capability(index)))}), "
                f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
            )
        elif name == "mps":
            what = "Apple GPU"
        else:
            units = [p for p in DTYPES if p != "float32" and cpu_has_units(p)]
            what = (
                f"{platform.processor() or platform.machine()}, "
                f"native {' and '.join(units) or 'float32 only'}, "
                f"{torch.get_num_threads()} torch threads"
            )
        lines.append(f"{name}: {what}; {precisions} (auto for {PROBED}: {auto})")
    return lines


def speed_probe(device: str, seconds: float, precision: str = "float32") -> float:
    """Voxels per second of the probed model's forward pass on 256x256 tiles."""
    model = with_precision(load_model(PROBED, 2, device), precision)
    x = torch.randn(1, 1, 256, 256, device=device)
    runs, start = 0, time.perf_counter()
    with torch.inference_mode():
        while True:
            model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            runs += 1
            if time.perf_counter() - start >= seconds:
                break
    return runs * x.numel() / (time.perf_counter() - start)


def self_checks() -> list[tuple[str, bool, str]]:
    """(name, passed, detail) of the equivariance checks (one per CPU precision) and the
    quality check ("auto" precision) on the bundled sample."""
    clean = load_sample("nuclei_3d")
    middle = len(clean) // 2
    noisy = add_poisson_gaussian_noise(clean[middle], **NOISE).astype(np.float64)
    reference = clean[middle].astype(np.float64)
    a, b = 3.7, -1200.0
    checks = []
    for precision in ("auto", *DTYPES):
        options = {"device": "cpu", "precision": precision, "verbose": False}
        out = denoise(noisy, DEFAULT_MODEL, dtype="float32", **options)
        moved = denoise(a * noisy + b, DEFAULT_MODEL, **options)
        error = float(np.abs(moved - (a * out.astype(np.float64) + b)).max() / (a * noisy.std()))
        name = "equivariance" if precision == "auto" else f"equivariance in {precision}"
        checks.append(
            (
                name,
                error < EQUIVARIANCE_TOLERANCE,
                f"max |f(a*y+b) - (a*f(y)+b)| / (a*std y) = {error:.2e} "
                f"(limit {EQUIVARIANCE_TOLERANCE:g})",
            )
        )
        if precision == "auto":
            auto = resolve_precision("auto", "cpu", get_model(PROBED).backbone)[0]
            gain = psnr(out, reference) - psnr(noisy, reference)
            quality = (
                "quality",
                gain >= MIN_GAIN_DB,
                f"PSNR gain on the bundled 3-D sample's middle plane {gain:+.2f} dB in {auto} "
                f"(at least {MIN_GAIN_DB:g})",
            )
    return [*checks, quality]


def run_doctor(seconds: float = 5.0, out: TextIO | None = None) -> int:
    """Print the report (to stdout by default); 0 when every check passed, 1 otherwise."""
    out = out or sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    say(f"python {platform.python_version()} on {platform.platform()}")
    for package in PACKAGES:
        say(f"{package} {_version(package)}")
    say("devices:")
    for line in device_lines():
        say(f"  {line}")
    failed = 0
    say(f"speed of {PROBED} (forward pass, 256x256 tiles, {seconds:g} s each):")
    for device in available_devices():
        for precision in supported_precisions(device):
            try:
                rate = speed_probe(device, seconds, precision)
            except Exception as err:  # a device that fails is what this report is for
                failed += 1
                say(f"  {device} {precision}: FAILED: {type(err).__name__}: {err}")
            else:
                say(f"  {device} {precision}: {rate / 1e6:.2f} Mvoxel/s")
    for name, passed, detail in self_checks():
        failed += not passed
        say(f"{name}: {'ok' if passed else 'FAILED'}: {detail}")
    say("all checks passed" if not failed else f"{failed} check(s) FAILED")
    return 0 if not failed else 1
