"""Shared fixtures: small real images from ../shared/data when present."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The project's real-image folder; tests using it skip when it is absent."""
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent")
    return DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot):
    """A viewer with the WNE Denoise widget docked from the plugin's manifest, on the CPU."""
    from napari_wne._widget import DenoiseWidget

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-wne", "WNE Denoise")
    assert isinstance(widget, DenoiseWidget)
    widget.device.value = "cpu"
    yield viewer, widget
    widget.preview.value = False
    qtbot.waitUntil(lambda: not widget.busy and not widget.preview_busy, timeout=120_000)


@pytest.fixture
def quiet_tifffile():
    """tifffile logs what it skips in a damaged file; the tests assert our errors instead."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)
