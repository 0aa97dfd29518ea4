"""`napari-wne models` and `doctor`: what is installed and whether it works."""

from __future__ import annotations

import argparse


def add_parsers(commands) -> None:
    """The `models` and `doctor` commands."""
    listing = commands.add_parser("models", help="list the models and whether they are trained")
    listing.set_defaults(run=_run_models)

    doctor = commands.add_parser(
        "doctor",
        help="versions, devices, a speed probe and a self-check, for bug reports",
        description="Print what a bug report needs and check that the default model works "
        "(equivariance and quality on the bundled sample); exits 1 if any check fails.",
    )
    doctor.add_argument(
        "--seconds", type=float, default=5.0, help="length of each speed probe (default 5)"
    )
    doctor.set_defaults(run=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from ..doctor import run_doctor

    return run_doctor(seconds=args.seconds)


def _run_models(args: argparse.Namespace) -> int:
    from ..models import DEFAULT_MODEL, MODELS, get_model, saved_models, user_models_dir

    for spec in MODELS.values():
        status = "trained" if spec.trained else "UNTRAINED"
        default = " (default)" if spec.name == DEFAULT_MODEL else ""
        print(f"{spec.name:16s} {status:9s} {spec.description}{default}")
    saved = saved_models()
    print(f"\nsaved models, in {user_models_dir()} (set NAPARI_WNE_MODELS_DIR to move it):")
    for name in saved:
        try:
            about = get_model(name).description
        except ValueError as err:  # a damaged folder: say so, list the rest
            about = f"unreadable: {err}"
        print(f"{name:16s} {'saved':9s} {about}")
    if not saved:
        print("none yet (the WNE Denoise widget's Adapt section saves them here)")
    return 0
