"""`napari_wne.denoise`: instances per axes, dtypes, dask, devices, and clear errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch

from napari_wne import UntrainedModelWarning, denoise, resolve_device
from napari_wne.models import MODELS

pytestmark = pytest.mark.filterwarnings("ignore::napari_wne.UntrainedModelWarning")


def _run(image, **kwargs):
    return denoise(image, verbose=False, **kwargs)


def test_2d_image_is_denoised_to_float32_of_the_same_shape(rng):
    image = rng.poisson(40, size=(48, 56)).astype(np.uint16)
    out = _run(image)
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_whole_pipeline_is_equivariant_to_brightness_and_contrast(rng):
    image = rng.normal(100, 15, size=(40, 44))
    # float32 computes exactly to 1e-4; low precision's bound is in tests/test_precision.py
    out = _run(image.astype(np.float32), precision="float32").astype(np.float64)
    a, b = 6.5, -240.0
    shifted = _run((a * image + b).astype(np.float32), precision="float32").astype(np.float64)
    np.testing.assert_allclose(shifted, a * out + b, rtol=0, atol=1e-4 * a * image.std())


def test_each_time_point_is_its_own_instance(rng):
    stack = rng.normal(100, 15, size=(3, 32, 36)).astype(np.float32)
    dimmed = stack.copy()
    dimmed[1] = 0.1 * stack[1] + 7  # one frame bleached and offset
    out = _run(stack, axes="TYX", precision="float32")  # exact to 1e-4 in float32
    out_dimmed = _run(dimmed, axes="TYX", precision="float32")
    np.testing.assert_allclose(out_dimmed[[0, 2]], out[[0, 2]], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out_dimmed[1], 0.1 * out[1] + 7, rtol=0, atol=1e-4 * 1.5)
    np.testing.assert_allclose(out[2], _run(stack[2], precision="float32"), rtol=1e-5, atol=1e-3)


def test_channels_are_separate_instances_of_a_3d_model(rng):
    stack = rng.normal(100, 15, size=(2, 6, 16, 20)).astype(np.float32)
    stack[1] *= 50
    out = _run(stack, axes="CZYX")
    assert out.shape == stack.shape
    np.testing.assert_allclose(out[1], _run(stack[1], axes="ZYX"), rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(out[0], _run(stack[0], axes="ZYX"), rtol=1e-5, atol=1e-3)


def test_axes_order_in_the_input_does_not_matter(rng):
    stack = rng.normal(100, 15, size=(3, 24, 28)).astype(np.float32)
    tyx = _run(stack, axes="TYX")
    yxt = _run(np.moveaxis(stack, 0, -1), axes="YXT")
    np.testing.assert_allclose(np.moveaxis(yxt, -1, 0), tyx, rtol=1e-5, atol=1e-3)


def test_five_dimensional_input(rng):
    stack = rng.normal(100, 15, size=(2, 2, 4, 12, 12)).astype(np.float32)
    assert _run(stack, axes="TCZYX").shape == stack.shape


def test_input_dtype_is_kept_when_asked(rng):
    image = rng.integers(0, 65535, size=(32, 32), dtype=np.uint16)
    out = _run(image, dtype="input")
    assert out.dtype == np.uint16
    reference = _run(image)
    np.testing.assert_array_equal(out, np.clip(np.rint(reference), 0, 65535).astype(np.uint16))


def test_dask_input_gives_a_lazy_result_equal_to_numpy(rng):
    stack = rng.normal(100, 15, size=(4, 32, 32)).astype(np.float32)
    lazy = _run(da.from_array(stack, chunks=(1, 16, 16)), axes="TYX")
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), _run(stack, axes="TYX"), rtol=1e-5, atol=1e-3)


def test_input_is_never_written(rng):
    image = rng.normal(100, 15, size=(32, 32)).astype(np.float32)
    before = image.copy()
    _run(image, dtype="input")
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_runs(name, rng):
    shape, axes = ((24, 24), "YX") if 2 in MODELS[name].dims else ((4, 24, 24), "ZYX")
    out = _run(rng.normal(100, 15, size=shape).astype(np.float32), model=name, axes=axes)
    assert out.shape == shape and np.isfinite(out).all()


def test_untrained_model_says_so_every_call(rng):
    image = rng.normal(size=(16, 16)).astype(np.float32)
    for _ in range(2):
        with pytest.warns(UntrainedModelWarning, match="no trained weights"):
            denoise(image, "ne-dncnn", verbose=False)


def test_device_choice_is_reported(rng, capsys):
    denoise(rng.normal(size=(16, 16)).astype(np.float32))
    err = capsys.readouterr().err
    assert "device" in err and "unet-wne" in err


def test_auto_device_prefers_a_gpu_and_reports_why():
    device, reason = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else device.type
    assert device.type == expected and "automatically" in reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.parametrize(
    ("image", "kwargs", "error", "match"),
    [
        (np.array([[1.0, np.nan], [3.0, 4.0]] * 4), {}, ValueError, "4 NaN"),
        (np.array([[1.0, np.inf], [3.0, 4.0]] * 4), {}, ValueError, "4 infinite"),
        (np.zeros((0, 16)), {}, ValueError, "empty"),
        (np.zeros((8, 8, 8)), {}, ValueError, "axes='ZYX'"),
        (np.zeros((8, 8)), {"axes": "ZYX"}, ValueError, "names 3 axes"),
        (np.zeros((8, 8)), {"axes": "YQ"}, ValueError, "unknown letter"),
        (np.zeros((8, 8)), {"axes": "YY"}, ValueError, "repeats"),
        (np.zeros((8, 8)), {"axes": "TY"}, ValueError, "both Y and X"),
        (np.zeros((1, 8, 8)), {"axes": "ZYX"}, ValueError, "at least 2"),
        (np.zeros((8, 8), dtype=bool), {}, TypeError, "boolean"),
        (np.zeros((8, 8), dtype=complex), {}, TypeError, "complex"),
        (np.zeros((8, 8), dtype=object), {}, TypeError, "object"),
        (object(), {}, TypeError, "numpy, dask or zarr"),
        ("missing.tif", {}, FileNotFoundError, "does not exist"),
        (np.zeros((8, 8)), {"model": "nope"}, ValueError, "unknown model"),
        (np.zeros((8, 8)), {"dtype": "uint8"}, ValueError, "dtype must be"),
        (np.zeros((8, 8)), {"device": "tpu"}, ValueError, "device"),
    ],
)
def test_bad_input_gets_a_clear_error(image, kwargs, error, match):
    with pytest.raises(error, match=match):
        _run(image, **kwargs)


def test_nan_in_a_dask_block_is_reported_at_compute(rng):
    stack = rng.normal(size=(2, 16, 16))
    stack[1, 3, 4] = np.nan
    lazy = _run(da.from_array(stack, chunks=(1, 16, 16)), axes="TYX")
    with pytest.raises(ValueError, match="NaN"):
        lazy.compute()


def test_volumes_can_be_denoised_plane_by_plane(rng):
    volume = rng.normal(100, 10, size=(3, 40, 48)).astype(np.float32)
    # An untrained model, so that it runs on 2-D and 3-D instances alike.
    by_plane = denoise(volume, "ne-dncnn", axes="ZYX", instances="planes", verbose=False)
    one_by_one = np.stack([denoise(p, "ne-dncnn", axes="YX", verbose=False) for p in volume])
    np.testing.assert_allclose(by_plane, one_by_one, rtol=1e-6, atol=1e-4)
    in_3d = denoise(volume, "ne-dncnn", axes="ZYX", instances="volumes", verbose=False)
    assert np.abs(in_3d - by_plane).max() > 1e-3  # a different network ran


def test_a_model_trained_in_2d_takes_volumes_plane_by_plane(tmp_path, rng, capsys):
    from napari_wne.training import TrainConfig, train

    folder = tmp_path / "tiny"
    config = TrainConfig(folder, backbone="dncnn", backbone_kwargs={"depth": 3, "features": 8},
                         steps=2, batch_size=2, patch_size=16, threads=1, device="cpu")  # fmt: skip
    train(config, clean_images=[rng.random((32, 32)).astype(np.float32)])
    volume = rng.normal(100, 10, size=(2, 24, 24)).astype(np.float32)
    result = denoise(volume, str(folder), axes="ZYX")
    assert "each Z plane on its own" in capsys.readouterr().err
    np.testing.assert_allclose(result[1], denoise(volume[1], str(folder), verbose=False), rtol=1e-6)
    with pytest.raises(ValueError, match="trained on 2-D instances"):
        denoise(volume, str(folder), axes="ZYX", instances="volumes", verbose=False)
