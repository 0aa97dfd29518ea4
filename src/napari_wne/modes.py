"""Every choice a run offers, defined once: its values, its default and its help text.

`denoise`'s ``Literal`` types, the command line's ``choices=``, defaults and help, and the
widget's items and tooltips all read these definitions, so a mode is added or renamed here
and nowhere else. The module imports nothing heavy: ``napari-wne --help`` builds its help
from it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "DEFAULT_MODEL",
    "DTYPE",
    "INSTANCES",
    "LOSS",
    "MISSING_CHUNKS",
    "MODES",
    "NOISE",
    "NORM",
    "OUTPUT_FORMAT",
    "PRECISION",
    "PYRAMID",
    "Instances",
    "Loss",
    "MissingChunks",
    "Mode",
    "Norm",
    "OutputDtype",
    "OutputFormat",
    "Precision",
    "Pyramid",
]

DEFAULT_MODEL = "auto"
"""The model used when none is named: "auto", which runs the fast WNE UNet trained for the
noise the image has (white: ``unet-wne``; spatially correlated: ``unet-wne-corr``), as
`napari_wne.routing` measures it on one plane."""


@dataclass(frozen=True)
class Mode:
    """One setting with a fixed list of values."""

    name: str
    """The `denoise` parameter (the CLI option is ``--`` and the name with dashes)."""
    values: tuple[str, ...]
    default: str
    help: str
    """One sentence per value, for ``--help`` and the widget's tooltip."""
    words: dict[str, str] = field(default_factory=dict)
    """What the widget shows for a value, where the value itself is too terse."""

    def check(self, value: object) -> None:
        """Refuse a value outside the list, naming the setting and every allowed value."""
        if value not in self.values:
            allowed = ", ".join(repr(v) for v in self.values)
            raise ValueError(f"{self.name} must be one of {allowed}, got {value!r}")

    def items(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a combo box."""
        return [(self.words.get(v, v), v) for v in self.values]

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


Norm = Literal["tile", "global"]
NORM = Mode(
    "norm",
    get_args(Norm),
    "tile",
    "normalization statistics of a WNE model: 'tile' (default) takes the mean and std of "
    "each tile with its overlap, 'global' one mean and std per plane or volume (from a "
    "strided subsample). Plain models take no statistics: for them 'global' changes nothing, "
    "and a warning says so",
)

OutputDtype = Literal["float32", "input"]
DTYPE = Mode(
    "dtype",
    get_args(OutputDtype),
    "float32",
    "type of the result: 'float32' (default) as computed, or 'input' for the input's type "
    "(integers are rounded and saturate at their range; float64 stays float64)",
)

Instances = Literal["auto", "planes", "volumes"]
INSTANCES = Mode(
    "instances",
    get_args(Instances),
    "auto",
    "for images with Z: 'volumes' denoises each ZYX volume with a 3D network, 'planes' each "
    "Z plane on its own with a 2D one; 'auto' (default) takes volumes unless the model was "
    "trained on 2D images only",
    words={"auto": "automatic", "volumes": "in 3D (ZYX)", "planes": "plane by plane (2D)"},
)

MissingChunks = Literal["error", "fill"]
MISSING_CHUNKS = Mode(
    "missing_chunks",
    get_args(MissingChunks),
    "error",
    "what a zarr chunk that is absent from the input store means: 'error' (default) stops "
    "and names the chunk, as an interrupted copy or write leaves chunks out; 'fill' reads it "
    "as the array's fill value. Zarr 3 does not store chunks that equal the fill value (e.g. "
    "all-zero background): if the writer skips empty chunks, pass 'fill'",
)

OutputFormat = Literal["ome-zarr", "ome-tiff", "imagej-tiff"]
OUTPUT_FORMAT = Mode(
    "output_format",
    get_args(OutputFormat),
    "ome-zarr",
    "format of a written result, chosen by the output's suffix: '.ome.zarr' or '.zarr' "
    "writes an OME-Zarr image block by block (default); '.ome.tif' an OME-TIFF with pixel "
    "sizes, axes, channel names and provenance (Fiji/Bio-Formats, QuPath); '.tif' an ImageJ "
    "hyperstack with its calibration (uint8, uint16 or float32 only). TIFFs are staged in a "
    "resumable OME-Zarr and streamed plane by plane, so they may exceed memory",
    words={"ome-zarr": "OME-Zarr", "ome-tiff": "OME-TIFF", "imagej-tiff": "ImageJ TIFF"},
)

Precision = Literal["auto", "float32", "bfloat16", "float16"]
PRECISION = Mode(
    "precision",
    get_args(Precision),
    "auto",
    "what the network computes in (WNE's statistics always stay in float64/float32): 'auto' "
    "(default) takes bfloat16 on recent GPUs, float16 on older ones, and on a CPU what "
    "napari_wne.precision measured faster at no visible loss; or 'float32', 'bfloat16', "
    "'float16'",
)

Pyramid = Literal["auto", "on", "off"]
PYRAMID = Mode(
    "pyramid",
    get_args(Pyramid),
    "auto",
    "multiscale levels in an OME-Zarr output, so napari pans a huge result smoothly at any "
    "zoom: 'on' adds levels 1, 2, ... each the 2x2 mean of the one above (Z halved too "
    "where its pixels are about as fine as Y/X) down to about 1024 px, in a resumable final "
    "pass; 'auto' (default) does so when Y or X exceeds 4096 px; 'off' writes level 0 only. "
    "TIFF outputs ignore it (they are never pyramids)",
    words={"auto": "automatic (over 4096 px)", "on": "always", "off": "never"},
)

NOISE = Mode(
    "noise",
    ("mixed", "gaussian", "poisson-gaussian", "fixed", "camera"),
    "mixed",
    "synthetic noise to train on: 'mixed' (default) draws Gaussian or Poisson-Gaussian noise "
    "of random strength per patch, 'fixed' Gaussian of one sigma, 'camera' a simulated "
    "camera (shot, read and fixed-pattern noise)",
)

Loss = Literal["mse", "log-mse"]
LOSS = Mode(
    "loss",
    get_args(Loss),
    "mse",
    "training loss: 'mse' (default) the batch's mean squared error, ruled by its noisiest "
    "patches; 'log-mse' the mean of each patch's log MSE, which weighs every patch alike in "
    "dB and keeps fine detail at low noise",
)

SUFFIXES: dict[str, tuple[str, ...]] = {
    "ome-zarr": (".ome.zarr", ".zarr"),
    "ome-tiff": (".ome.tif", ".ome.tiff"),
    "imagej-tiff": (".tif", ".tiff"),
}
"""Each output format's suffixes, the first being what new outputs are named with."""

MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        NORM,
        DTYPE,
        INSTANCES,
        MISSING_CHUNKS,
        OUTPUT_FORMAT,
        PRECISION,
        PYRAMID,
        NOISE,
        LOSS,
    )
}
