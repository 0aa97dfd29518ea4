"""Extreme intensities and dtypes: the result is right, saturated, or a clear error; never NaN.

A WNE model computes its statistics, normalizes and maps back in float64; only the
normalized values (of order one) reach the network as float32. So an image's offset and
scale may be anything float64 holds, and integer outputs saturate at their dtype's range.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wne import denoise
from napari_wne.pipeline import cast
from napari_wne.wne import instance_stats

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")

WNE_MODEL = {"model": "dncnn-wne", "tile": 32, "halo": 8, "blend": 4, "verbose": False}
PLAIN_MODEL = {**WNE_MODEL, "model": "dncnn"}
INTEGERS = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
NORMS = ["tile", "global"]


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    """Unit-std noise on a smooth pattern: something for the denoiser to keep and remove."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:48, 0:40]
    return np.sin(xx / 6.0) * np.cos(yy / 9.0) + rng.normal(0, 1, (48, 40))


def _finite(result: np.ndarray) -> np.ndarray:
    assert np.isfinite(np.asarray(result, dtype=np.float64)).all()
    return result


# Integer outputs: round, then saturate at the dtype's range; never wrap around.


@pytest.mark.parametrize("dtype", INTEGERS)
def test_constant_image_at_each_integer_extreme_round_trips_exactly(dtype):
    info = np.iinfo(dtype)
    for value in (info.max, info.min):
        image = np.full((32, 32), value, dtype=dtype)
        result = denoise(image, dtype="input", **WNE_MODEL)
        assert result.dtype == np.dtype(dtype)
        assert (result == value).all(), (value, np.unique(result)[:4])


@pytest.mark.parametrize("dtype", INTEGERS)
def test_step_between_integer_extremes_saturates_and_never_wraps(dtype, noise):
    """Half the image at the minimum, half at the maximum, with noise pushing past both."""
    info = np.iinfo(dtype)
    span = float(info.max) - float(info.min)
    wiggle = np.abs(noise[:, :20]) * span / 50
    high = np.clip(float(info.max) - wiggle, info.min, float(np.nextafter(info.max, 0.0)))
    low = float(info.min) + wiggle
    image = np.concatenate([low, high], axis=1).astype(dtype)
    result = denoise(image, dtype="input", **WNE_MODEL)
    assert result.dtype == np.dtype(dtype)
    middle = float(info.min) + span / 2
    # A wrap would send values at the top to the bottom of the range (or back).
    assert (result[:, 24:].astype(np.float64) > middle).all()
    assert (result[:, :16].astype(np.float64) < middle).all()


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
@pytest.mark.parametrize("norm", NORMS)
def test_signal_near_the_top_of_64_bit_integers_is_denoised_not_lost(dtype, noise, norm):
    """The statistics of values near 9.2e18 or 1.8e19 must not overflow: compare with the
    same signal denoised near zero, moved up afterwards (float64 carries 2**-52 of it)."""
    top = float(np.iinfo(dtype).max)
    signal = 1e12 * (noise - noise.max() - 1.0)  # all below the top, spread over ~5e12
    image = (top + signal).astype(dtype)
    result = _finite(denoise(image, dtype="input", norm=norm, **WNE_MODEL))
    near_zero = denoise(image.astype(np.float64) - top, dtype="input", norm=norm, **WNE_MODEL)
    expected = cast(near_zero + top, np.dtype(dtype))
    difference = np.abs(result.astype(np.float64) - expected.astype(np.float64))
    assert difference.max() <= 1e-4 * signal.std()


def test_cast_saturates_at_the_exact_integer_bounds():
    for dtype in INTEGERS:
        info = np.iinfo(dtype)
        # float32(2**31 - 1) is 2**31 and float64(2**63 - 1) is 2**63: both are just out of range.
        values = np.array([info.max, 2.0 * float(info.max) + 10, info.min - 1e30, info.min])
        for float_type in (np.float32, np.float64):
            out = cast(values.astype(float_type), np.dtype(dtype))
            assert out.tolist() == [info.max, info.max, info.min, info.min], (dtype, float_type)


def test_cast_rounds_to_nearest_and_refuses_nan():
    assert cast(np.array([1.4, 1.6, -1.6, 254.5, 255.7]), np.dtype("uint8")).tolist() == [
        1,
        2,
        0,
        254,  # ties to even, like numpy.rint
        255,
    ]
    with pytest.raises(ValueError, match="NaN"):
        cast(np.array([1.0, np.nan]), np.dtype("int16"))


def test_cast_refuses_floats_the_output_type_cannot_hold():
    with pytest.raises(ValueError, match=r"float32.*dtype='input'"):
        cast(np.array([1.0, 1e40]), np.dtype("float32"))
    with pytest.raises(ValueError, match="lose their precision"):
        cast(np.array([0.0, 1e-45]), np.dtype("float32"))
    with pytest.raises(ValueError, match="float16"):
        cast(np.array([1.0, 7e4], dtype=np.float32), np.dtype("float16"))
    ordinary = np.array([0.0, -1.5, 3e38])
    assert cast(ordinary, np.dtype("float32")).tolist() == ordinary.astype(np.float32).tolist()


# Float inputs far from 1: the statistics and the mapping back run in float64.


@pytest.mark.parametrize("norm", NORMS)
def test_offset_of_1e9_keeps_a_signal_of_std_15(noise, norm):
    """float32 spaces values 64 apart at 1e9: the signal only survives in float64."""
    small = 15 * noise
    result = _finite(denoise(1e9 + small, dtype="input", norm=norm, **WNE_MODEL))
    assert result.dtype == np.float64
    reference = denoise(small, dtype="input", norm=norm, **WNE_MODEL)
    assert np.abs((result - 1e9) - reference).max() <= 1e-3 * 15
    assert np.abs(result - (1e9 + small)).std() > 1.0  # it did denoise, not copy the input


@pytest.mark.parametrize("norm", NORMS)
def test_float64_beyond_the_float32_range_is_denoised_in_float64(noise, norm):
    scale = 2.0**133  # about 1.1e40; a power of two keeps every rounding the same
    image = scale * (10 + noise)
    result = _finite(denoise(image, dtype="input", norm=norm, **WNE_MODEL))
    reference = denoise(10 + noise, dtype="input", norm=norm, **WNE_MODEL)
    np.testing.assert_allclose(result / scale, reference, rtol=0, atol=1e-6)


def test_float64_beyond_the_float32_range_refuses_a_float32_output(noise):
    with pytest.raises(ValueError, match=r"float32 .*cannot hold.*dtype='input'"):
        denoise(1e40 * (10 + noise), **WNE_MODEL)


@pytest.mark.parametrize("norm", NORMS)
def test_float32_near_1e19_has_finite_statistics(noise, norm):
    """Squares of 1e19 overflow float32 (max 3.4e38); the mean and std are taken in float64."""
    image = (1e19 + 1e18 * noise).astype(np.float32)
    result = _finite(denoise(image, norm=norm, **WNE_MODEL))
    assert result.dtype == np.float32
    unit = denoise(image.astype(np.float64) / 1e18, dtype="input", norm=norm, **WNE_MODEL)
    np.testing.assert_allclose(result / 1e18, unit, rtol=0, atol=1e-3)


@pytest.mark.parametrize("value", [0.0, 1e9, -3e200, 1e-300])
def test_constant_images_of_any_magnitude_return_their_constant(value):
    image = np.full((32, 32), value)
    result = denoise(image, dtype="input", **WNE_MODEL)
    np.testing.assert_allclose(result, value, rtol=1e-12, atol=0)


def test_float32_near_its_maximum_is_denoised_in_range(noise):
    image = (3.0e38 + 1e37 * noise).astype(np.float32)
    result = _finite(denoise(image, **WNE_MODEL))
    unit = denoise(image.astype(np.float64) / 1e37, dtype="input", **WNE_MODEL)
    np.testing.assert_allclose(result / 1e37, unit, rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_result_beyond_the_largest_float_is_a_clear_error(dtype):
    """A saturated image with one dark pixel: the denoised bright pixels overshoot the
    largest float a little, so they have no value to return; the error says what to do."""
    image = np.full((32, 32), np.finfo(dtype).max, dtype=dtype)
    image[16, 16] = 0
    advice = "float64 .with dtype='input'" if dtype == "float32" else "divide it by 1e6"
    with pytest.raises(ValueError, match=f"not fit in {dtype}; rescale the image.*{advice}"):
        denoise(image, dtype="input", **WNE_MODEL)


def test_float16_round_trips_and_refuses_what_it_cannot_hold(noise):
    image = (1000 + 15 * noise).astype(np.float16)
    result = _finite(denoise(image, dtype="input", **WNE_MODEL))
    assert result.dtype == np.float16
    reference = denoise(image.astype(np.float32), **WNE_MODEL)
    np.testing.assert_allclose(result, reference, rtol=1e-3)  # float16 keeps 11 bits
    bright = np.full((32, 32), np.finfo(np.float16).max, dtype=np.float16)
    bright[16, 16] = 0
    with pytest.raises(ValueError, match=r"float16 .*cannot hold.*rescale the image"):
        denoise(bright, dtype="input", **WNE_MODEL)


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")
def test_extended_precision_is_refused_with_a_conversion_hint():
    with pytest.raises(TypeError, match=r"computes in at most float64.*astype\(numpy.float64\)"):
        denoise(np.ones((32, 32), dtype=np.longdouble), **WNE_MODEL)


def test_statistics_survive_intensities_near_the_float64_limits():
    for scale in (1e300, 1e-300):
        y = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64) * scale
        mean, std = instance_stats(y)
        assert float(mean) == pytest.approx(2.5 * scale, rel=1e-15)
        assert float(std) == pytest.approx(1.25**0.5 * scale, rel=1e-15)


# Plain models compute on raw intensities in float32: they fail clearly, never with NaN.


def test_plain_model_refuses_float64_beyond_the_float32_range(noise):
    with pytest.raises(ValueError, match=r"float32 range.*plain model 'dncnn'.*rescale"):
        denoise(1e40 * (10 + noise), dtype="input", **PLAIN_MODEL)


def test_plain_model_on_huge_float32_values_says_why_it_fails(noise):
    """Its float32 activations overflow: that is an error naming the cause, never NaN."""
    image = (3e38 * (1 + 0.01 * noise)).clip(0, 3.4e38).astype(np.float32)
    with pytest.raises(ValueError, match=r"'dncnn' gave .* NaN or infinite.*plain model.*rescale"):
        denoise(image, **PLAIN_MODEL)


def test_plain_model_on_64_bit_integers_keeps_its_float32_behaviour(noise):
    image = (8e18 + 1e17 * noise).astype(np.int64)
    result = _finite(denoise(image, **PLAIN_MODEL))
    assert result.dtype == np.float32 and 7e18 < result.mean() < 9e18


def test_integer_output_through_an_ome_zarr_store_saturates_too(tmp_path):
    image = np.full((32, 32), np.iinfo(np.int32).max, dtype=np.int32)
    written = denoise(image, output=tmp_path / "o.ome.zarr", dtype="input", **WNE_MODEL)
    stored = np.asarray(written.to_dask())
    assert stored.dtype == np.int32 and (stored == np.iinfo(np.int32).max).all()
