"""Out-of-memory back-off: smaller batches, then smaller pieces, the same result; said aloud.

The error is injected on the CPU by a real module in the forward path: it raises
`torch.OutOfMemoryError` (what CUDA raises) whenever it is handed more voxels than a cap,
as a GPU with that much memory would.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_wne.axes import parse_axes
from napari_wne.backoff import MemoryBackoffWarning, split_tile
from napari_wne.engine import Block, Engine, TileSettings
from napari_wne.wne import WNE


class MemoryCap(nn.Module):
    """A backbone on a device that holds at most `voxels` input voxels per pass."""

    def __init__(self, backbone: nn.Module, voxels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.voxels = voxels
        self.refused = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > self.voxels:
            self.refused += 1
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {x.numel() * 4096} bytes (test cap)"
            )
        return self.backbone(x)


def engine_for(shape, cap: int | None, **settings) -> tuple[Engine, MemoryCap | None]:
    settings = {"tile": 96, "batch_size": 8, "precision": "float32", **settings}
    engine = Engine("dncnn-wne", parse_axes("YX", shape), shape, torch.device("cpu"),
                    TileSettings(**settings))  # fmt: skip
    capped = None
    if cap is not None:
        capped = MemoryCap(engine.model.backbone, cap)
        engine.model = WNE(capped, residual=engine.model.residual, eps=engine.model.eps)
    return engine, capped


def run(engine: Engine, image: np.ndarray, stats=None) -> np.ndarray:
    block = Block((), tuple(slice(0, n) for n in image.shape))
    box, tiles = engine.plan(block)
    return engine.compute(image[box], box, tiles, block.region, stats)


def make_image(rng, side: int) -> np.ndarray:
    rows = 40 + 30 * np.sin(np.arange(side) / 9.0)[:, None]
    return rng.poisson(rows, (side, side)).astype(np.uint16)


@pytest.fixture
def image(rng) -> np.ndarray:
    return make_image(rng, 150)  # 3x3 tiles of 88x88


@pytest.fixture
def wide_image(rng) -> np.ndarray:
    return make_image(rng, 250)  # 96x96 tiles, 8 in a full batch


def test_split_tile_covers_every_voxel_once_with_context():
    shape, halo = (100, 70), 17
    pieces = split_tile(shape, 1, halo)
    count = np.zeros(shape, int)
    for out_box, in_box in pieces:
        count[out_box] += 1
        for o, i, n in zip(out_box, in_box, shape, strict=True):
            assert i.start == max(0, o.start - 32) and i.stop == min(n, o.stop + 32)
            assert o.start % 16 == 0
    assert (count == 1).all()
    assert len(pieces) == 4
    assert len(split_tile(shape, 0, halo)) == 1


def test_a_full_batch_is_halved_and_the_result_is_unchanged(wide_image):
    image = wide_image
    reference = run(engine_for(image.shape, None)[0], image)
    engine, capped = engine_for(image.shape, cap=3 * 96 * 96)  # 3 tiles of 96x96 fit
    with pytest.warns(MemoryBackoffWarning, match=r"out of memory on cpu.*2 tile\(s\) per pass"):
        result = run(engine, image)
    assert engine.batch_size == 2
    assert capped.refused >= 2  # 8, then 4 tiles refused
    np.testing.assert_array_equal(result, reference)


def test_one_tile_too_large_is_computed_in_pieces_with_the_same_result(image):
    reference = run(engine_for(image.shape, None)[0], image)
    engine, _ = engine_for(image.shape, cap=80 * 80)  # not even one 88x88 tile
    with pytest.warns(MemoryBackoffWarning) as said:
        result = run(engine, image)
    messages = [str(w.message) for w in said]
    assert any("1 tile(s) per pass" in m for m in messages)
    assert any("pieces" in m and "same result" in m for m in messages)
    assert engine.backoff.level >= 1
    # Each piece keeps DnCNN's whole receptive field and the tile's own normalization.
    scale = float(image.std())
    assert np.abs(result - reference).max() / scale < 1e-5


def test_pieces_use_the_global_statistics_when_asked(image):
    stats = (float(image.mean()), float(image.std()))
    reference = run(engine_for(image.shape, None, norm="global")[0], image, stats)
    engine, _ = engine_for(image.shape, cap=80 * 80, norm="global")
    with pytest.warns(MemoryBackoffWarning):
        result = run(engine, image, stats)
    assert np.abs(result - reference).max() / float(image.std()) < 1e-5


def test_nothing_fits_is_a_clear_error_naming_what_to_do(image):
    engine, _ = engine_for(image.shape, cap=10)
    with (
        pytest.warns(MemoryBackoffWarning),
        pytest.raises(MemoryError, match=r"smaller tile.*device='cpu'.*cpu_fallback"),
    ):
        run(engine, image)


def test_other_errors_are_not_taken_for_out_of_memory(image):
    engine, _ = engine_for(image.shape, None)

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("a bug, not memory")

    engine.model = WNE(Broken())
    with pytest.raises(RuntimeError, match="a bug, not memory"):
        run(engine, image)
    assert engine.batch_size == 8
