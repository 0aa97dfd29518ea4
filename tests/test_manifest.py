"""The npe2 manifest is found the way napari finds it: through the installed entry point."""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

import numpy as np
import pytest
import yaml

npe2 = pytest.importorskip("npe2")

ROOT_MANIFEST = Path(__file__).resolve().parents[1] / "napari.yaml"


def test_entry_point_points_at_the_packaged_manifest():
    (entry,) = [e for e in metadata.entry_points(group="napari.manifest") if e.name == "napari-wne"]
    package, _, filename = entry.value.partition(":")
    packaged = resources.files(package).joinpath(filename)
    assert packaged.is_file()
    if ROOT_MANIFEST.is_file():  # the packaged copy is the repository's napari.yaml
        assert yaml.safe_load(packaged.read_text()) == yaml.safe_load(ROOT_MANIFEST.read_text())


def test_napari_discovers_the_plugin_and_its_sample():
    manager = npe2.PluginManager()
    manager.discover()
    manifest = manager.get_manifest("napari-wne")
    assert manifest.display_name == "WNE Denoise"
    sample = next(s for s in manifest.contributions.sample_data if s.key == "nuclei_2d")
    manager.activate("napari-wne")
    layers = manager.commands.execute(sample.command)
    data, meta, kind = layers[0]
    assert kind == "image" and data.shape == (512, 512) and data.dtype == np.uint16
    assert "noisy" in meta["name"]
