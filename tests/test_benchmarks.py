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


def test_the_bm3d_oracle_stabilizes_photon_noise_and_follows_its_spectrum(monkeypatch):
    """The BM3D oracle of the quality tables removes more of smoothed Poisson noise than
    BM3D told only a white sigma: it is given the noise's spectrum (and its curve)."""
    pytest.importorskip("bm3d")
    import numpy as np
    from scipy.ndimage import gaussian_filter

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _baselines import bm3d_oracle, stabilize, unstabilize
    from napari_wne.metrics import scores

    rng = np.random.default_rng(1)
    scene = gaussian_filter(rng.random((96, 96)), 3)
    clean = 5 + 60 * (scene - scene.min()) / np.ptp(scene)  # a smooth scene, in photons
    photons = rng.poisson(clean).astype(np.float64)
    noise = gaussian_filter(photons - clean, 0.8)
    noisy = clean + noise * (photons - clean).std() / noise.std()  # smoothed, variance kept
    white = pytest.importorskip("bm3d").bm3d(noisy, sigma_psd=float((noisy - clean).std()))
    oracle = bm3d_oracle(noisy, clean)
    assert scores(oracle, clean)[0] > scores(white, clean)[0] + 0.5
    assert scores(oracle, clean)[0] > scores(noisy, clean)[0] + 3
    # the inverse is the algebraic one but for the bias correction: gain / 4 here
    z = np.linspace(5, 40, 8)
    assert np.allclose(unstabilize(stabilize(z, 2.0, 3.0), 2.0, 3.0), z + 0.5, atol=1e-9)


def test_the_blur_oracle_finds_the_best_sigma_between_the_grids_steps(monkeypatch):
    """The blur oracle of the quality tables is the best Gaussian blur, not the best of a
    few: its sigma is refined between grid steps, so a model that beats it beats them all."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _baselines import best_blur
    from napari_wne.metrics import fitted_psnr

    rng = np.random.default_rng(2)
    clean = gaussian_filter(rng.random((128, 128)), 1.0)
    noisy = clean + rng.normal(0, 0.3 * clean.std(), clean.shape)
    grid = (0.5, 1.0, 2.0)
    on_grid = {s: fitted_psnr(gaussian_filter(noisy, s), clean) for s in grid}
    fine = {s: fitted_psnr(gaussian_filter(noisy, s), clean) for s in np.arange(0.3, 2.5, 0.01)}
    found = fitted_psnr(best_blur(noisy, clean, grid), clean)
    assert found > max(on_grid.values()) + 0.01  # the optimum lies between grid steps
    assert found == pytest.approx(max(fine.values()), abs=0.01)


def test_the_blur_oracle_looks_past_the_grids_end_for_strong_noise(monkeypatch):
    """Strong noise on a smooth scene wants a blur far wider than the grid's widest."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _baselines import best_blur
    from napari_wne.metrics import fitted_psnr

    rng = np.random.default_rng(3)
    clean = gaussian_filter(rng.random((128, 128)), 6.0)
    noisy = clean + rng.normal(0, 3 * clean.std(), clean.shape)
    fine = {s: fitted_psnr(gaussian_filter(noisy, s), clean) for s in np.arange(1, 12, 0.05)}
    assert max(fine, key=fine.get) > 3  # the optimum is past the grid below
    found = fitted_psnr(best_blur(noisy, clean, (0.5, 1.0)), clean)
    assert found == pytest.approx(max(fine.values()), abs=0.01)


def test_a_stored_baseline_score_is_reused_only_for_the_same_inputs(monkeypatch, tmp_path):
    """A slow baseline runs once per distinct input; other data, or `refresh`, reruns it."""
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _cache

    monkeypatch.setattr(_cache, "STORE", tmp_path / "scores.json")
    calls = []

    def compute(value: float):
        return lambda: calls.append(value) or value

    noisy, clean = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    first = _cache.cached_score("m", "numpy", (noisy, clean), compute(1.0), "here")
    again = _cache.cached_score("m", "numpy", (noisy, clean), compute(2.0), "here")
    assert first[0] == again[0] == 1.0 and calls == [1.0]
    assert first[1] == again[1]  # the time measured when it was computed
    changed = noisy.copy()
    changed[0, 0] = 1e-6
    assert _cache.cached_score("m", "numpy", (changed, clean), compute(3.0), "here")[0] == 3.0
    assert _cache.cached_score("m", "numpy", (noisy, clean), compute(4.0), "here", True)[0] == 4.0
    assert _cache.cached_score("m", "numpy", (noisy, clean), compute(5.0), "here")[0] == 4.0
    assert calls == [1.0, 3.0, 4.0]


def test_tables_reuse_bm3d_scores_but_rerun_models_and_kept_results(monkeypatch, tmp_path):
    """BM3D's stored scores stand in for a rerun; a model always runs, and so does every
    method whose result the caller keeps (for a figure)."""
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _baselines
    import _cache

    monkeypatch.setattr(_cache, "STORE", tmp_path / "scores.json")
    calls = []

    def method(name: str, value: float):
        return lambda: calls.append(name) or np.full((8, 8), value)

    clean = np.linspace(0, 1, 64).reshape(8, 8)
    noisy = clean + 0.1
    methods = {_baselines.BM3D_ORACLE: method("bm3d", 0.5), "`model`": method("model", 0.4)}
    first = _baselines.scored_methods(methods, noisy, clean, "here")
    again = _baselines.scored_methods(methods, noisy, clean, "here")
    assert calls == ["bm3d", "model", "model"]
    assert first[_baselines.BM3D_ORACLE] == again[_baselines.BM3D_ORACLE]
    kept = {}
    _baselines.scored_methods(methods, noisy, clean, "here", results=kept)
    assert calls[3:] == ["bm3d", "model"] and set(kept) == set(methods)


def test_recorrupted_targets_carry_noise_independent_of_the_inputs(monkeypatch):
    """R2R's premise, for the noise `quality_recorrupted.py` draws: with z of the noise's
    own level and spectrum, the input's noise (n + alpha z) and the target's (n - z / alpha)
    are uncorrelated, pixel with pixel and with their neighbours, so training on them is
    training against the clean image. A z of the wrong level, or white where the noise is
    correlated, leaves them correlated."""
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from quality_recorrupted import Noise

    rng = np.random.default_rng(3)
    std = np.linspace(0.5, 2.0, 192)[None, :].repeat(192, axis=0)
    noise = Noise(std, 0.67)
    n = noise.draw(rng)

    def correlation(z: np.ndarray, lag: int = 0, alpha: float = 0.5) -> float:
        seen, target = n + alpha * z, n - z / alpha
        pair = seen[:, lag:].ravel(), target[:, : target.shape[1] - lag].ravel()
        return float(np.corrcoef(*pair)[0, 1])

    for lag in (0, 1):
        matched = [correlation(noise.draw(rng), lag) for _ in range(20)]
        assert abs(np.mean(matched)) < 0.02
    assert correlation(Noise(std * 0.7, 0.67).draw(rng)) > 0.2  # too little recorruption
    white = Noise(std, 0.0).draw(rng)
    assert abs(correlation(white)) < 0.05  # right level: fine pixel by pixel,
    assert correlation(white, lag=1) > 0.2  # but neighbours share the noise it lacks


def test_the_estimated_noise_level_follows_the_signal(monkeypatch):
    """From a noisy image and a clean-looking result, the estimate of `quality_recorrupted.py`
    finds the photon-noise line (variance = gain * mean + read) within 20 %."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from quality_recorrupted import noise_estimated

    rng = np.random.default_rng(4)
    scene = gaussian_filter(rng.random((256, 256)), 30)
    clean = 10 + 200 * (scene - scene.min()) / np.ptp(scene)
    gain, read = 0.5, 4.0
    noisy = clean + rng.standard_normal(clean.shape) * np.sqrt(gain * clean + read)
    found = noise_estimated(noisy, clean)
    truth = np.sqrt(gain * clean + read)
    assert np.median(np.abs(found.std / truth - 1)) < 0.2
    assert found.lag1 < 0.1


def test_a_known_camera_gives_the_noise_level_and_its_correlation(monkeypatch):
    """With the camera's line known (here measured against the clean image, as flat fields
    would give it), `quality_recorrupted.py` reads the level at the start's result and
    estimates the correlation from the noisy image: both land near the truth."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from quality_recorrupted import Noise, noise_camera_known

    rng = np.random.default_rng(5)
    scene = gaussian_filter(rng.random((256, 256)), 30)
    clean = 10 + 200 * (scene - scene.min()) / np.ptp(scene)
    truth = np.sqrt(0.5 * clean + 4.0)
    noisy = clean + Noise(truth, 0.67).draw(rng)
    found = noise_camera_known(noisy, clean, clean)
    assert np.median(np.abs(found.std / truth - 1)) < 0.1
    assert abs(found.lag1 - 0.67) < 0.1
