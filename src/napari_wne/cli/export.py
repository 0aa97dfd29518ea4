"""`napari-wne export`: a model as a BioImage Model Zoo package (Fiji/deepImageJ and others)."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    """The `export` command."""
    export = commands.add_parser(
        "export",
        help="write a model as a bioimage.io model package (.zip)",
        description="Write MODEL as a BioImage Model Zoo package (spec 0.5): TorchScript and "
        "PyTorch state-dict weights with WNE inside the network, the halo and smallest tile, "
        "a test image and its result, a cover and the model card. Needs bioimageio.core "
        "(pip install bioimageio.core).",
    )
    export.add_argument("model", help="a model name (napari-wne models) or a trained folder")
    export.add_argument("output", help="the package to write, e.g. unet-wne.zip")
    export.add_argument(
        "--dims",
        type=int,
        choices=(2, 3),
        default=None,
        help="spatial dimensions, for an untrained model only (default: the training's, or 2)",
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT if it exists (default: refuse)"
    )
    export.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import sys

    from ..bioimageio_export import export_bioimageio

    try:
        path = export_bioimageio(
            args.model, args.output, spatial_dims=args.dims, overwrite=args.overwrite
        )
    except ImportError as err:  # bioimageio.core missing: say how to install it
        print(f"napari-wne: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
