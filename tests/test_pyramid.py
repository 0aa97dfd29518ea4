"""Multiscale pyramids (`napari_wne.writers.pyramid`): levels, values, metadata, resume, readers.

Small images with a small level-size limit (`smallest=64`) stand in for 20k-pixel results:
the code paths are the same, only the number of levels differs. Values are checked against
a numpy reference computed differently (NaN-padded reshape and nanmean, not reduceat).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_wne.writers import OmeZarrOutput, OmeZarrWriter, OutputPlan, TiffWriter
from napari_wne.writers.pyramid import downsample_mean, level_shapes, plan_levels

SMALL = 64


def _reference(image: np.ndarray, factors) -> np.ndarray:
    """Mean of each box, edges padded with NaN so a partial box averages what it has."""
    padded_shape = [-(-n // f) * f for n, f in zip(image.shape, factors, strict=True)]
    padded = np.full(padded_shape, np.nan)
    padded[tuple(slice(0, n) for n in image.shape)] = image
    split = []
    for n, f in zip(padded_shape, factors, strict=True):
        split += [n // f, f]
    return np.nanmean(padded.reshape(split), axis=tuple(range(1, 2 * image.ndim, 2)))


def _write(path: Path, image: np.ndarray, axes: str, *, levels, scale=None, block=None, **kw):
    """Write `image` through `OmeZarrWriter` as a run would: level 0 block by block, then
    the pyramid pass, then the metadata."""
    block = block or {a: 128 for a in axes if a in "ZYX"}
    plan = OutputPlan(
        shape=image.shape, axes=axes, dtype=image.dtype, block=block, blocks=("all",),
        record={"test": "pyramid"}, fingerprint=None, scale=dict(scale or {}), levels=levels,
    )  # fmt: skip

    def fill(store: OmeZarrOutput) -> None:
        if "all" not in store.done_blocks():
            target = store.array()
            store.save_block("all", lambda: target.__setitem__(Ellipsis, image))

    return OmeZarrWriter(path).write(plan, fill, **{"resume": False, "overwrite": False, **kw})


def _levels(path: Path) -> list[np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    datasets = dict(group.attrs)["ome"]["multiscales"][0]["datasets"]
    return [group[d["path"]][:] for d in datasets]


def test_levels_halve_y_and_x_down_to_the_limit():
    assert plan_levels((300, 500), "YX", mode="on", smallest=SMALL) == ((2, 2),) * 3
    assert level_shapes((300, 500), ((2, 2),) * 3)[-1] == (38, 63)  # largest side <= 64
    assert plan_levels((300, 500), "YX", mode="off", smallest=SMALL) == ()
    assert plan_levels((300, 500), "TCYX"[2:], mode="on") == ()  # already under 1024 px
    assert plan_levels((4096, 300), "YX") == ()  # auto: only above 4096 px
    assert plan_levels((3, 4097, 30), "CYX") == ((1, 2, 2),) * 3  # 4097 -> 2049 -> 1025 -> 513
    with pytest.raises(ValueError, match="pyramid must be one of 'auto', 'on', 'off'"):
        plan_levels((300, 500), "YX", mode="yes")


def test_z_is_halved_only_where_its_pixels_are_as_fine_as_y_and_x():
    iso = plan_levels((64, 600, 600), "ZYX", {"Z": 1, "Y": 1, "X": 1}, "on", smallest=SMALL)
    assert iso[:2] == ((2, 2, 2), (2, 2, 2)) and iso[2] == (1, 2, 2)  # 64 -> 32 -> 16 planes
    aniso = plan_levels((64, 600, 600), "ZYX", {"Z": 3.0, "Y": 1, "X": 1}, "on", smallest=SMALL)
    # level 1 keeps Z (3 um vs 1 um); from level 2 on the halved Y/X pixels (2 um) are comparable
    assert aniso == ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    few = plan_levels((5, 600, 600), "ZYX", {}, "on", smallest=SMALL)
    assert all(f[0] == 1 for f in few)  # 5 planes are never thinned


def test_integers_are_rounded_back_to_their_type():
    block = np.array([[1, 2, 0, 1, 7], [2, 2, 0, 0, 9]], dtype=np.uint8)
    out = downsample_mean(block, (2, 2))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[2, 0, 8]])  # 1.75 -> 2, 0.25 -> 0, edge 8.0
    assert downsample_mean(np.array([[65535, 65535]], np.uint16), (1, 2))[0, 0] == 65535
    assert downsample_mean(np.array([[-3, -4]], np.int16), (1, 2))[0, 0] == -4  # -3.5: even
    floats = downsample_mean(np.array([[1, 2]], np.float32), (1, 2))
    assert floats.dtype == np.float32 and floats[0, 0] == 1.5


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_every_level_is_the_mean_of_the_one_above(tmp_path, rng, dtype):
    image = (rng.random((300, 500)) * 60000).astype(dtype)
    levels = plan_levels(image.shape, "YX", mode="on", smallest=SMALL)
    _write(tmp_path / "out.ome.zarr", image, "YX", levels=levels)
    written = _levels(tmp_path / "out.ome.zarr")
    assert [w.shape for w in written] == level_shapes(image.shape, levels)
    for above, level, factors in zip(written[:-1], written[1:], levels, strict=True):
        expected = _reference(above.astype(np.float64), factors)
        if np.dtype(dtype).kind == "u":
            expected = np.rint(expected)
        assert level.dtype == dtype
        np.testing.assert_allclose(level, expected.astype(dtype), rtol=1e-6)


def test_every_level_is_stored_with_blosc_lz4_and_byte_shuffle(tmp_path, rng):
    """The writer's compressor (smaller and faster than zarr's default on denoised
    images: benchmarks/bench_codecs.py), on level 0 and every level below it."""
    image = rng.random((300, 500)).astype(np.float32)
    levels = plan_levels(image.shape, "YX", mode="on", smallest=SMALL)
    _write(tmp_path / "out.ome.zarr", image, "YX", levels=levels)
    group = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r")
    for name in ["0", *(str(k + 1) for k in range(len(levels)))]:
        (codec,) = group[name].compressors
        assert (type(codec).__name__, codec.cname.value, codec.shuffle.value) == (
            "BloscCodec",
            "lz4",
            "shuffle",
        )


def test_a_sharded_anisotropic_volume_keeps_z_where_it_should(tmp_path, rng):
    volume = rng.integers(0, 4000, size=(64, 300, 260), dtype=np.uint16)
    scale = {"Z": 2.0, "Y": 1.0, "X": 1.0}
    levels = plan_levels(volume.shape, "ZYX", scale, "on", smallest=SMALL)
    assert levels[0] == (1, 2, 2) and levels[1] == (2, 2, 2)
    out = tmp_path / "vol.ome.zarr"
    _write(out, volume, "ZYX", levels=levels, scale=scale, block={"Z": 64, "Y": 256, "X": 256})
    group = zarr.open_group(str(out), mode="r")
    assert group["0"].shards == (64, 256, 256) and group["1"].shards is not None  # few files
    written = _levels(out)
    for above, level, factors in zip(written[:-1], written[1:], levels, strict=True):
        np.testing.assert_array_equal(level, np.rint(_reference(above, factors)))


def test_metadata_lists_every_level_with_scales_that_align_overlays(tmp_path):
    """A ramp whose value is each pixel's world X: a level's mean must equal the world X its
    own scale and translation give its pixel centres, so levels overlay exactly."""
    scale = {"Y": 0.5, "X": 0.25}
    xx = np.broadcast_to(np.arange(512, dtype=np.float64) * scale["X"], (256, 512))
    levels = plan_levels(xx.shape, "YX", mode="on", smallest=SMALL)
    out = tmp_path / "ramp.ome.zarr"
    _write(out, xx.astype(np.float32), "YX", levels=levels, scale=scale)
    multiscales = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["multiscales"]
    datasets = multiscales[0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2", "3"]
    for k, dataset in enumerate(datasets):
        transforms = {t["type"]: t for t in dataset["coordinateTransformations"]}
        assert transforms["scale"]["scale"] == [0.5 * 2**k, 0.25 * 2**k]
        shift = transforms.get("translation", {"translation": [0.0, 0.0]})["translation"]
        assert shift == [0.5 * (2**k - 1) / 2, 0.25 * (2**k - 1) / 2]
        level = zarr.open_array(str(out / dataset["path"]), mode="r")[0]
        centres = np.arange(level.size) * transforms["scale"]["scale"][1] + shift[1]
        np.testing.assert_allclose(level, centres, atol=1e-4)


def test_the_store_validates_and_both_napari_readers_open_it_as_multiscale(tmp_path, rng):
    import yaozarrs
    from napari_ome_zarr import napari_get_reader

    from napari_wne._reader import get_reader

    out = tmp_path / "out.ome.zarr"
    image = rng.integers(0, 255, size=(2, 300, 500), dtype=np.uint8)
    levels = plan_levels(image.shape, "CYX", mode="on", smallest=SMALL)
    _write(out, image, "CYX", levels=levels, scale={"Y": 0.2, "X": 0.2})
    yaozarrs.validate_zarr_store(str(out))  # raises on any NGFF 0.5 violation
    shapes = [(2, 300, 500), (2, 150, 250), (2, 75, 125), (2, 38, 63)]
    (layer,) = get_reader(str(out))(str(out))
    assert layer[1]["multiscale"] and [a.shape for a in layer[0]] == shapes
    assert layer[1]["scale"] == (0.2, 0.2) and layer[1]["channel_axis"] == 0
    np.testing.assert_array_equal(layer[0][1].compute(), _levels(out)[1])  # lazy, same pixels
    theirs = napari_get_reader(str(out))(str(out))
    assert [a.shape for a in theirs[0][0]] == shapes


def test_denoise_reads_level_0_of_a_pyramid(tmp_path, rng):
    from napari_wne import denoise

    image = rng.normal(100, 10, size=(300, 500)).astype(np.float32)
    out = tmp_path / "in.ome.zarr"
    _write(out, image, "YX", levels=plan_levels(image.shape, "YX", mode="on", smallest=SMALL))
    result = denoise(str(out), "ne-dncnn", device="cpu", verbose=False, allow_unfinished=False)
    assert zarr.open_array(str(result) + "/0").shape == (300, 500)


def test_denoise_builds_levels_only_when_asked_or_large(tmp_path, rng):
    from napari_wne import denoise

    image = rng.normal(100, 10, size=(24, 1100)).astype(np.float32)
    on = denoise(image, "ne-dncnn", output=tmp_path / "on.ome.zarr", pyramid="on", verbose=False)
    assert [a.shape for a in _levels(Path(on))] == [(24, 1100), (12, 550)]
    auto = denoise(image, "ne-dncnn", output=tmp_path / "auto.ome.zarr", verbose=False)
    assert len(_levels(Path(auto))) == 1  # 1100 px: under the 4096 px of "auto"
    tif = denoise(image, "ne-dncnn", output=tmp_path / "on.ome.tif", pyramid="on", verbose=False)
    assert len(tifffile.TiffFile(str(tif)).series[0].levels) == 1  # TIFFs ignore it
    with pytest.raises(ValueError, match="pyramid must be one of"):
        denoise(image, "ne-dncnn", output=tmp_path / "x.ome.zarr", pyramid="yes")


def test_a_tiff_output_ignores_the_levels(tmp_path, rng):
    image = rng.integers(0, 255, size=(300, 500), dtype=np.uint8)
    levels = plan_levels(image.shape, "YX", mode="on", smallest=SMALL)
    plan = OutputPlan(
        shape=image.shape, axes="YX", dtype=image.dtype, block={"Y": 300, "X": 500},
        blocks=("all",), record={}, fingerprint=None, levels=levels,
    )  # fmt: skip

    def fill(store):
        target = store.array()
        store.save_block("all", lambda: target.__setitem__(Ellipsis, image))

    TiffWriter(tmp_path / "out.ome.tif", "ome-tiff").write(
        plan, fill, resume=False, overwrite=False
    )
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert len(tif.series[0].levels) == 1
        np.testing.assert_array_equal(tif.asarray(), image)


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_pyramid import _write, plan_levels
    image = np.random.default_rng(5).integers(0, 60000, size=(300, 500), dtype=np.uint16)
    levels = plan_levels(image.shape, "YX", mode="on", smallest={small})
    _write({out!r}, image, "YX", levels=levels, resume={resume})
    """
)


def _child(out: Path, hook: str | None, resume: bool) -> int:
    code = _CHILD.format(tests=str(Path(__file__).parent), small=SMALL, out=str(out), resume=resume)
    env = {"NAPARI_WNE_TEST_HOOK": hook} if hook else {}
    import os

    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, timeout=120)
    return done.returncode


@pytest.mark.parametrize("hook", ["kill:pyramid.written:3", "kill:pyramid.written:5"])
def test_a_kill_during_the_pyramid_pass_resumes_to_the_same_bytes(tmp_path, hook):
    """Killed inside level 1 (its 3rd of 4 shards) or level 2, a real process leaves an
    unfinished store that lists no level; the resumed run equals an uninterrupted one."""
    reference = tmp_path / "reference.ome.zarr"
    assert _child(reference, None, resume=False) == 0
    out = tmp_path / "out.ome.zarr"
    assert _child(out, hook, resume=False) == -signal.SIGKILL
    assert not OmeZarrOutput(out).is_complete()
    assert "ome" not in json.loads((out / "zarr.json").read_text())["attributes"]
    marked = {k for k in OmeZarrOutput(out).done_blocks() if k.startswith("level")}
    assert "level1.created" in marked and len(marked) >= 3  # shards finished before the kill
    assert _child(out, None, resume=True) == 0
    assert OmeZarrOutput(out).is_complete()
    mine, theirs = _levels(out), _levels(reference)
    assert len(mine) == len(theirs) == 4
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not (out / ".napari-wne" / "blocks").exists()  # level markers cleaned up too


def test_a_resume_with_other_levels_is_refused(tmp_path, rng):
    image = rng.integers(0, 255, size=(300, 500), dtype=np.uint8)
    out = tmp_path / "out.ome.zarr"
    _write(out, image, "YX", levels=plan_levels(image.shape, "YX", mode="on", smallest=SMALL))
    with pytest.raises(ValueError, match=r"other settings \(pyramid\)"):
        _write(out, image, "YX", levels=(), resume=True)


def test_a_finished_pyramid_is_ours_to_overwrite(tmp_path, rng):
    image = rng.integers(0, 255, size=(300, 500), dtype=np.uint8)
    out = tmp_path / "out.ome.zarr"
    _write(out, image, "YX", levels=plan_levels(image.shape, "YX", mode="on", smallest=SMALL))
    _write(out, image[:100], "YX", levels=(), overwrite=True)  # the levels go with the rest
    assert sorted(p.name for p in out.iterdir()) == ["0", "zarr.json"]  # bookkeeping: beside it
    (out / "1").mkdir()
    (out / "notes.txt").write_text("mine")  # something we did not write: never deleted
    with pytest.raises(FileExistsError, match=r"did not write \(notes.txt\)"):
        _write(out, image, "YX", levels=(), overwrite=True)


def test_napari_shows_a_pyramid_as_one_multiscale_layer_with_its_scale(tmp_path, rng):
    import napari

    out = tmp_path / "out.ome.zarr"
    image = rng.integers(0, 4000, size=(300, 500), dtype=np.uint16)
    _write(out, image, "YX", levels=plan_levels(image.shape, "YX", mode="on", smallest=SMALL),
           scale={"Y": 0.4, "X": 0.4})  # fmt: skip
    viewer = napari.Viewer(show=False)
    try:
        (layer,) = viewer.open(str(out), plugin="napari-wne")
        assert layer.multiscale and len(layer.data) == 4
        np.testing.assert_allclose(layer.scale, (0.4, 0.4))
        np.testing.assert_array_equal(np.asarray(layer.data[0]), image)  # level 0, unchanged
    finally:
        viewer.close()
