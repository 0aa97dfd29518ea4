"""Layered volumes: 3-D training content whose planes carry real 2-D texture."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_wne.layered_volumes import layered_volume, layered_volume_set


def _texture(seed: int, size: int = 120) -> np.ndarray:
    """A clean-looking image: noise smoothed a little, in [0, 1]."""
    image = gaussian_filter(np.random.default_rng(seed).random((size, size)), 1.5)
    return ((image - image.min()) / np.ptp(image)).astype(np.float32)


def test_a_volume_has_the_shape_asked_for_in_unit_range():
    images = [_texture(0), _texture(1)]
    for volume in layered_volume_set(images, 4, (10, 48, 40), seed=3):
        assert volume.shape == (10, 48, 40) and volume.dtype == np.float32
        assert volume.min() >= 0 and volume.max() == pytest.approx(1.0)


def test_one_seed_gives_one_set_and_another_seed_another():
    images = [_texture(0), np.stack([_texture(2), _texture(3)])]
    one, two, other = (layered_volume_set(images, 3, (8, 32, 32), seed=s) for s in (5, 5, 6))
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not np.array_equal(one[0], other[0])


def test_each_plane_is_the_source_texture_and_neighbouring_planes_agree():
    texture = _texture(4)
    volume = layered_volume([texture], (12, 40, 40), np.random.default_rng(0))
    lit = [z for z in range(12) if volume[z].std() > 0.02]
    assert lit, "some plane carries the layer"
    # neighbouring planes show the same structure, a little shifted and dimmed
    steps = [np.corrcoef(volume[z].ravel(), volume[z + 1].ravel())[0, 1] for z in lit[:-1]]
    assert min(steps) > 0.7

    # and the structure is the texture's: its pixel-to-pixel roughness, not a blur of it
    def roughness(image):
        return np.mean(np.diff(image, axis=1) ** 2) / image.var()

    brightest = volume[int(np.argmax(volume.std(axis=(1, 2))))]
    assert roughness(brightest) == pytest.approx(roughness(texture), rel=0.35)


def test_images_too_small_or_of_the_wrong_rank_are_refused():
    with pytest.raises(ValueError, match="too small"):
        layered_volume_set([_texture(0, size=30)], 1, (8, 32, 32), seed=0)
    with pytest.raises(ValueError, match="2-D images or stacks"):
        layered_volume_set([np.zeros(50, np.float32)], 1, (8, 32, 32), seed=0)
    with pytest.raises(ValueError, match="2-D images or stacks"):
        layered_volume_set([], 1, (8, 32, 32), seed=0)
