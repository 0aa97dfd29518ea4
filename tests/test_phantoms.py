"""Procedural phantoms: clean, in range, reproducible, and each structure visible."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wne.phantoms import PHANTOM_KINDS, fluorescence_phantom, phantom_set


def test_a_phantom_set_is_the_same_for_one_seed_and_different_across_seeds():
    one, two, other = (
        phantom_set(3, (64, 64), 5),
        phantom_set(3, (64, 64), 5),
        phantom_set(3, (64, 64), 6),
    )
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not np.array_equal(one[0], other[0])


@pytest.mark.parametrize("shape", [(96, 80), (16, 48, 48)])
def test_phantoms_are_float32_in_unit_range_and_not_flat(shape):
    rng = np.random.default_rng(0)
    for _ in range(4):
        image = fluorescence_phantom(shape, rng)
        assert image.shape == shape and image.dtype == np.float32
        assert image.min() >= 0 and image.max() == pytest.approx(1.0)
        assert image.std() > 0.01


@pytest.mark.parametrize("kind", sorted(PHANTOM_KINDS))
def test_every_structure_draws_something(kind):
    part = PHANTOM_KINDS[kind]((64, 64), np.random.default_rng(1))
    assert part.max() > 0 and (part > 0.1 * part.max()).mean() < 0.9


def test_3d_phantoms_can_be_blurred_more_along_z_as_a_microscope_does():
    def roughness_y_over_z(volume):  # mean squared step along Y over that along Z
        return np.mean(np.diff(volume, axis=1) ** 2) / np.mean(np.diff(volume, axis=0) ** 2)

    isotropic = phantom_set(6, (24, 48, 48), seed=3)
    axial = phantom_set(6, (24, 48, 48), seed=3, axial_ratio=(3.0, 3.0))
    assert np.median([roughness_y_over_z(v) for v in isotropic]) < 2
    assert all(roughness_y_over_z(v) > 2 for v in axial)


def test_an_axial_ratio_needs_a_3d_phantom():
    with pytest.raises(ValueError, match="3-D phantoms only"):
        fluorescence_phantom((32, 32), np.random.default_rng(0), axial_ratio=(2.0, 3.0))


def test_a_phantom_can_be_built_from_chosen_structures_only():
    filaments = phantom_set(2, (96, 96), seed=4, kinds=["filaments"])
    spots = phantom_set(2, (96, 96), seed=4, kinds=["puncta"])
    assert not np.array_equal(filaments[0], spots[0])
    # a filament network covers more of the field than a sparse scatter of spots does
    assert all((f > 0.3).mean() > (s > 0.3).mean() for f, s in zip(filaments, spots, strict=True))
    with pytest.raises(ValueError, match="kinds must be some of"):
        fluorescence_phantom((32, 32), np.random.default_rng(0), kinds=["neurons"])
