"""Precision: the modes and their rules, and that only the backbone leaves float32.

The equivariance error of each precision is tested here (figures in docs/performance.md).
WNE normalizes in float64 before the backbone sees anything: float64 input reaches the
backbone as the same normalized values after a brightness and contrast change, in every
precision. float32 input carries its own rounding (a*y + b is rounded again), which moves
the normalized values by about 1e-7; rounded to float16 or bfloat16 in the backbone, a
few of them land on the neighbouring value, and the output moves by up to about 2e-3
(float16) or 2e-2 (bfloat16) of the spread, against 1e-5 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wne import denoise
from napari_wne.models import MODELS
from napari_wne.precision import (
    CPU_AUTO,
    PRECISIONS,
    Autocast,
    resolve_precision,
    supported_precisions,
    with_precision,
)
from napari_wne.wne import WNE

LOW = ("bfloat16", "float16")


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    rng = np.random.default_rng(7)
    rows = 300 + 200 * np.sin(np.arange(96) / 7.0)[:, None]
    return rng.poisson(rows, (96, 96)).astype(np.float64)


def test_modes_and_what_each_device_supports():
    assert PRECISIONS == ("auto", "float32", "bfloat16", "float16")
    assert supported_precisions("cpu") == ("float32", "bfloat16", "float16")
    assert "bfloat16" not in supported_precisions(torch.device("mps"))


def test_unknown_or_unsupported_precisions_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"auto, float32, bfloat16, float16.*'half'"):
        resolve_precision("half", "cpu", "unet")
    with pytest.raises(ValueError, match=r"'bfloat16' is not supported on mps.*float32, float16"):
        resolve_precision("bfloat16", torch.device("mps"), "unet")
    chosen, why = resolve_precision("float16", "cpu", "unet")
    assert (chosen, why) == ("float16", "precision float16, as asked")


def test_cpu_auto_follows_the_measured_table(monkeypatch):
    backbones = {spec.backbone for spec in MODELS.values()}
    for backbone, ranked in CPU_AUTO.items():
        assert backbone in backbones and set(ranked) <= set(supported_precisions("cpu"))
        assert "float32" not in ranked  # only what beat it
    table = {"unet": ("bfloat16",), "dncnn": ("float16", "bfloat16")}
    monkeypatch.setattr("napari_wne.precision.CPU_AUTO", table)
    monkeypatch.setattr("napari_wne.precision.cpu_has_units", lambda precision: True)
    chosen, why = resolve_precision("auto", "cpu", "unet")
    assert chosen == "bfloat16" and "measured faster" in why
    assert resolve_precision("auto", "cpu", "restormer")[0] == "float32"  # not measured faster
    assert resolve_precision("auto", "cpu", "dncnn")[0] == "float16"
    chosen, why = resolve_precision("auto", "cpu", "dncnn", normalized=False)  # raw intensities
    assert chosen == "float32" and "overflow float16" in why


def test_cpu_auto_takes_the_fastest_precision_this_cpu_has_units_for(monkeypatch):
    monkeypatch.setattr("napari_wne.precision.CPU_AUTO", {"unet": ("float16", "bfloat16")})
    monkeypatch.setattr("napari_wne.precision.cpu_has_units", lambda p: p != "float16")
    chosen, why = resolve_precision("auto", "cpu", "unet")  # an EPYC: BF16 units, no FP16
    assert chosen == "bfloat16" and "no float16 units" in why
    monkeypatch.setattr("napari_wne.precision.cpu_has_units", lambda p: p == "float32")
    chosen, why = resolve_precision("auto", "cpu", "unet")
    assert chosen == "float32" and "no float16 or bfloat16 units" in why


def test_only_the_backbone_runs_in_low_precision():
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            seen.append((x.dtype, y.dtype))
            return y

    shared = WNE(Probe())
    model = with_precision(shared, "bfloat16")
    assert model is not shared and model.backbone.module is shared.backbone
    assert isinstance(model, WNE) and isinstance(model.backbone, Autocast)
    y = torch.linspace(1e6, 1e6 + 5, 64, dtype=torch.float64).reshape(1, 1, 8, 8)
    out = model(y)
    assert seen == [(torch.float32, torch.bfloat16)]  # normalized in float64, then cast
    assert out.dtype == torch.float64  # denormalized in float64: the 1e6 offset survives
    assert with_precision(shared, "float32").backbone is shared.backbone


EQUIVARIANCE_FLOAT32_INPUT = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 1e-2}
"""Bounds on max |f(a*y+b) - (a*f(y)+b)| / (a*std y) for float32 input; measured 1e-5,
1.6e-2 and 2.0e-3 (docs/performance.md)."""


def equivariance_error(y: np.ndarray, precision: str, a: float, b: float) -> float:
    moved = (a * y + b).astype(y.dtype)
    out = denoise(y, "unet-wne", device="cpu", precision=precision, verbose=False)
    shifted = denoise(moved, "unet-wne", device="cpu", precision=precision, verbose=False)
    return float(np.abs(shifted - (a * out.astype(np.float64) + b)).max() / (a * y.std()))


@pytest.mark.parametrize("precision", ["float32", *LOW])
def test_equivariance_error_of_each_precision(noisy, precision):
    """float64 input: the same normalized values reach the backbone, in every precision.
    float32 input: the documented bound of each precision."""
    assert equivariance_error(noisy, precision, 3.7, -1200.0) < 1e-5
    offset = (noisy / 20 + 1000).astype(np.float32)  # a camera baseline: mean/std about 100
    error = equivariance_error(offset, precision, 0.1, 7.0)
    assert error < EQUIVARIANCE_FLOAT32_INPUT[precision]


@pytest.mark.parametrize("precision", LOW)
def test_low_precision_changes_the_result_a_little(noisy, precision):
    """It really computes in low precision (the result moves), and stays close to float32."""
    reference = denoise(noisy, "unet-wne", device="cpu", precision="float32", verbose=False)
    out = denoise(noisy, "unet-wne", device="cpu", precision=precision, verbose=False)
    difference = np.abs(out - reference).max() / noisy.std()
    assert 1e-5 < difference < 0.1


def test_a_float16_overflow_is_computed_again_in_float32():
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1e5)  # beyond float16's largest value, 65504
    x = torch.ones(1, 1, 4, 4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        assert torch.isinf(conv(x)).all()  # what float16 alone would give
    with torch.inference_mode():
        y = Autocast(conv, torch.float16)(x)
    assert y.dtype == torch.float32 and torch.equal(y, torch.full_like(y, 1e5))


def test_the_api_and_the_command_line_take_the_precision(tmp_path, capsys):
    import tifffile

    from napari_wne.cli import main

    image = np.random.default_rng(2).poisson(30, (40, 48)).astype(np.uint16)
    with pytest.raises(ValueError, match="precision must be one of"):
        denoise(image, device="cpu", precision="half", verbose=False)
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, image, metadata={"axes": "YX"})
    args = ["denoise", str(source), str(target), "--device", "cpu"]
    assert main([*args, "--precision", "bfloat16"]) == 0
    assert "precision bfloat16, as asked" in capsys.readouterr().err
    expected = denoise(image, device="cpu", precision="bfloat16", verbose=False)
    np.testing.assert_array_equal(tifffile.imread(target), expected)
    with pytest.raises(SystemExit):
        main([*args, "--overwrite", "--precision", "half"])
    assert "invalid choice: 'half'" in capsys.readouterr().err
