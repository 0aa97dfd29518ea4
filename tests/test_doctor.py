"""`napari-wne doctor`: a report with versions and devices, and checks that can fail."""

from __future__ import annotations

import io

from napari_wne import doctor
from napari_wne.cli import main


def test_the_report_names_versions_devices_speed_and_passes_its_checks():
    out = io.StringIO()
    assert doctor.run_doctor(seconds=0.1, out=out) == 0
    report = out.getvalue()
    for line in ("napari-wne ", "torch ", "devices:", "  cpu: ", "Mvoxel/s", "all checks passed"):
        assert line in report
    assert "equivariance: ok" in report and "quality: ok" in report
    for precision in ("float32", "bfloat16", "float16"):  # a probe and a check each
        assert f"  cpu {precision}: " in report and f"equivariance in {precision}: ok" in report
    assert "(auto for unet-wne: " in report


def test_a_failed_check_is_reported_and_exits_non_zero(monkeypatch):
    monkeypatch.setattr(doctor, "MIN_GAIN_DB", 99.0)  # no denoiser gains 99 dB on the sample
    out = io.StringIO()
    assert doctor.run_doctor(seconds=0.1, out=out) == 1
    assert "quality: FAILED" in out.getvalue() and "1 check(s) FAILED" in out.getvalue()


def test_the_command_line_runs_it(capsys):
    assert main(["doctor", "--seconds", "0.1"]) == 0
    assert "all checks passed" in capsys.readouterr().out
