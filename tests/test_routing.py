"""`model="auto"`: the noise of the image decides between the white- and correlated-noise
models, and a Z-stack denoised in 3-D with white noise gets the 3-D model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wne.camera import CameraNoise, simulate_camera
from napari_wne.phantoms import fluorescence_phantom
from napari_wne.routing import (
    CORRELATED_NOISE_MODEL,
    MIN_PLANES,
    VOLUME_MODEL,
    WHITE_NOISE_MODEL,
    choose_model,
    drop_excess,
    routing_sample,
)
from napari_wne.sample_data import NOISE, add_poisson_gaussian_noise, load_sample


def capture(kernel_sigma: float | None, photons: float = 20.0, seed: int = 0) -> np.ndarray:
    """A phantom with Poisson-Gaussian noise, smoothed by a Gaussian of `kernel_sigma` px."""
    clean = fluorescence_phantom((256, 256), np.random.default_rng(seed)).astype(np.float32)
    config = CameraNoise(
        p_gaussian_only=0.0,
        photons_range=(photons, photons),
        read_noise_range=(1.5, 1.5),
        p_scmos=0.0,
        p_hot=0.0,
        p_correlated=0.0 if kernel_sigma is None else 1.0,
        p_resample=0.0,
        kernel_sigma_range=(kernel_sigma or 0.5,) * 2,
        p_anisotropic=0.0,
        p_quantize=0.0,
    )
    noisy, _ = simulate_camera(
        torch.from_numpy(clean)[None, None], config, torch.Generator().manual_seed(seed)
    )
    return noisy[0, 0].numpy()


@pytest.mark.parametrize("photons", [5.0, 20.0, 100.0])
def test_white_noise_gets_the_white_noise_model(photons):
    choice = choose_model(capture(None, photons))
    assert choice.model == WHITE_NOISE_MODEL, choice.reason
    assert abs(choice.correlation[0]) < 0.15


@pytest.mark.parametrize("photons", [5.0, 20.0, 100.0])
def test_smoothed_noise_gets_the_correlated_noise_model(photons):
    choice = choose_model(capture(0.8, photons))
    assert choose_model(capture(0.5, photons, seed=1)).model == CORRELATED_NOISE_MODEL
    assert choice.model == CORRELATED_NOISE_MODEL, choice.reason
    assert "correlated" in choice.reason


@pytest.mark.parametrize("photons", [3000.0, 10000.0])
def test_fine_detail_under_little_white_noise_is_not_read_as_correlated_noise(photons):
    """With so little noise the flattest patches still hold structure, which lifts lag 1
    well above lag 2 (by 0.15-0.2 here); it falls as steadily to lag 3, unlike noise."""
    choice = choose_model(capture(None, photons))
    assert choice.model == WHITE_NOISE_MODEL, choice.reason
    assert choice.correlation[0] - choice.correlation[1] > 0.1  # the detail is measured


def test_drop_excess_is_blind_to_a_steady_decay_and_sees_a_sudden_one():
    assert drop_excess((0.6, 0.4, 0.2)) == pytest.approx(0.0)
    assert drop_excess((0.7, 0.5, 0.3)) == pytest.approx(0.0)  # an offset changes nothing
    assert drop_excess((0.68, 0.19, 0.09)) == pytest.approx(0.39)


def test_slowly_decaying_signal_is_not_read_as_correlated_noise():
    """The bundled 3-D sample: white noise on smooth nuclei, whose leftover signal lifts the
    measured correlation at every lag; it must keep a white-noise model."""
    noisy = add_poisson_gaussian_noise(load_sample("nuclei_3d"), **NOISE)
    choice = choose_model(noisy[routing_sample("ZYX", noisy.shape)], planes=len(noisy))
    assert choice.model == VOLUME_MODEL, choice.reason
    assert choice.correlation[2] > 0.05  # signal is there, yet it is not read as noise


def test_a_plane_too_small_to_measure_gets_the_white_noise_model_and_says_why():
    choice = choose_model(np.random.default_rng(0).normal(size=(32, 200)))
    assert choice.model == WHITE_NOISE_MODEL
    assert choice.correlation is None
    assert "too small" in choice.reason


def test_a_stack_denoised_in_3d_gets_the_3d_model_only_for_white_noise_and_enough_planes():
    white, smoothed = capture(None), capture(0.8)
    assert choose_model(white, planes=MIN_PLANES).model == VOLUME_MODEL
    assert "a stack of" in choose_model(white, planes=MIN_PLANES).reason
    assert choose_model(white, planes=MIN_PLANES - 1).model == WHITE_NOISE_MODEL
    assert choose_model(smoothed, planes=60).model == CORRELATED_NOISE_MODEL


def test_the_default_model_runs_z_stacks_in_3d_unless_asked_for_planes(capsys):
    from napari_wne import denoise

    rng = np.random.default_rng(4)
    stack = rng.poisson(40, (MIN_PLANES, 64, 64)).astype(np.float32)
    chosen = denoise(stack, axes="ZYX", precision="float32")
    assert f"model {VOLUME_MODEL} (chosen by auto:" in capsys.readouterr().err
    expected = denoise(stack, VOLUME_MODEL, axes="ZYX", precision="float32", verbose=False)
    np.testing.assert_array_equal(chosen, expected)
    denoise(stack, axes="ZYX", instances="planes", precision="float32")
    assert f"model {WHITE_NOISE_MODEL} (chosen by auto:" in capsys.readouterr().err


def test_only_planes_are_measured():
    with pytest.raises(ValueError, match="2-D plane"):
        choose_model(np.zeros((3, 64, 64)))


def test_the_sample_is_the_middle_plane_and_a_central_crop():
    index = routing_sample("TCYX", (10, 3, 4000, 300))
    assert index[:2] == (5, 1)
    assert index[2] == slice(1488, 2512)
    assert index[3] == slice(0, 1024)  # the whole of a short axis
    assert routing_sample("YXC", (64, 80, 3)) == (slice(0, 1024), slice(0, 1024), 1)
    with pytest.raises(ValueError, match="must name Y and X"):
        routing_sample("ZY", (4, 64))


def test_the_default_model_runs_what_the_noise_asks_for(capsys):
    """`denoise` without a model: white noise gets unet-wne, smoothed noise unet-wne-corr,
    pixel for pixel, and the run says which it chose and why."""
    from napari_wne import DEFAULT_MODEL, denoise

    assert DEFAULT_MODEL == "auto"
    for kernel, model in ((None, WHITE_NOISE_MODEL), (0.8, CORRELATED_NOISE_MODEL)):
        noisy = capture(kernel, seed=2)[:128, :160]
        chosen = denoise(noisy, precision="float32")
        said = capsys.readouterr().err
        assert f"model {model} (chosen by auto:" in said, said
        expected = denoise(noisy, model, precision="float32", verbose=False)
        np.testing.assert_array_equal(chosen, expected)
