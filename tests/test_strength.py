"""Denoising strength: part of the input given back, exactly, in every face and mode."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

from napari_wne import denoise
from napari_wne.cli import main
from napari_wne.pipeline import Cancelled
from napari_wne.strength import check_strength, keep_strength


@pytest.fixture
def image(rng) -> np.ndarray:
    return rng.poisson(rng.uniform(20, 200, (160, 96))).astype(np.uint16)


def test_a_strength_below_one_is_the_blend_of_result_and_input(image):
    full = denoise(image, "dncnn-wne", verbose=False)
    part = denoise(image, "dncnn-wne", strength=0.7, verbose=False)
    np.testing.assert_allclose(part, 0.7 * full + 0.3 * image, rtol=1e-5, atol=1e-3)
    assert not np.allclose(part, full, atol=1e-2)


def test_strength_zero_returns_the_input_and_one_the_full_result(image):
    np.testing.assert_allclose(denoise(image, "dncnn-wne", strength=0.0, verbose=False), image)
    np.testing.assert_array_equal(
        denoise(image, "dncnn-wne", strength=1.0, verbose=False),
        denoise(image, "dncnn-wne", verbose=False),
    )


def test_tiled_results_still_equal_whole_image_ones(image):
    # one normalization per image, so tiling is exact (per-tile statistics differ by design)
    whole = denoise(image, "dncnn-wne", strength=0.6, norm="global", verbose=False)
    tiled = denoise(image, "dncnn-wne", strength=0.6, norm="global", tile=76, verbose=False)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(("a", "b"), [(3.0, -70.0), (0.01, 1e4)])
def test_the_blend_keeps_wne_equivariant(image, a, b):
    y = image.astype(np.float64)
    out = denoise(y, "dncnn-wne", strength=0.5, dtype="input", verbose=False)
    moved = denoise(a * y + b, "dncnn-wne", strength=0.5, dtype="input", verbose=False)
    np.testing.assert_allclose(moved, a * out + b, rtol=1e-9, atol=1e-9 * max(1.0, abs(b)))


def test_the_input_is_never_written_into(image):
    kept = image.copy()
    denoise(image, "dncnn-wne", strength=0.3, verbose=False)
    np.testing.assert_array_equal(image, kept)
    noisy = np.ones((4, 4), np.float32)
    result = np.zeros((4, 4), np.float32)
    keep_strength(result, noisy, 0.25)
    np.testing.assert_array_equal(noisy, 1.0)
    np.testing.assert_allclose(result, 0.75)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_a_strength_outside_zero_to_one_is_refused_with_the_range(image, bad):
    with pytest.raises(ValueError, match="strength must be"):
        check_strength(bad)
    with pytest.raises(ValueError, match="strength must be"):
        denoise(image, "dncnn-wne", strength=bad, verbose=False)


def test_the_cli_takes_strength(image, tmp_path):
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(source, image, photometric="minisblack")
    assert main(["denoise", str(source), str(target), "--model", "dncnn-wne",
                 "--strength", "0.4"]) == 0  # fmt: skip
    expected = denoise(image, "dncnn-wne", strength=0.4, verbose=False)
    np.testing.assert_allclose(tifffile.imread(target), expected, rtol=1e-6, atol=1e-4)
    assert main(["denoise", str(source), str(tmp_path / "o.tif"), "--strength", "2"]) == 2


def test_a_resume_must_ask_for_the_same_strength(tmp_path, rng):
    stack = rng.normal(100, 10, (3, 32, 32)).astype(np.float32)
    out, stop = tmp_path / "out.ome.zarr", threading.Event()
    settings = {"model": "dncnn-wne", "axes": "TYX", "output": out, "block": 32, "verbose": False}
    with pytest.raises(Cancelled):  # interrupted after its first block
        denoise(stack, strength=0.5, cancel=stop, progress=lambda p: stop.set(), **settings)
    with pytest.raises(ValueError, match="other settings"):
        denoise(stack, resume=True, **settings)
    finished = denoise(stack, strength=0.5, resume=True, **settings)
    expected = denoise(stack, "dncnn-wne", axes="TYX", strength=0.5, verbose=False)
    np.testing.assert_allclose(finished.to_dask().compute(), expected, rtol=1e-5, atol=1e-3)
