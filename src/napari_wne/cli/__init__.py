"""`napari-wne` on the command line: thin shells over the library, one module per family
of commands (`run`: demo, denoise, batch; `info`: models, doctor; `train`; `adapt`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from .._version import __version__
from . import adapt, export, info, run, train

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)  # --help and --version end here, before torch is imported
    from ..models import UntrainedModelWarning

    warnings.simplefilter("always", UntrainedModelWarning)
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, ConnectionError) as err:
        print(f"napari-wne: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except RuntimeError as err:
        if _is(err, "pipeline", "Cancelled"):
            return 130
        if _is(err, "writers", "IncompleteOutputError"):
            print(f"napari-wne: error: {err}", file=sys.stderr)
            return 2
        raise


def _is(err: BaseException, module: str, name: str) -> bool:
    """Whether `err` is napari_wne.`module`.`name`. Only a command that imported that
    module can raise it, so a command that did not (e.g. `models`) never imports it."""
    loaded = sys.modules.get(f"napari_wne.{module}")
    return loaded is not None and isinstance(err, getattr(loaded, name))


LATE = {"train": train, "adapt": adapt}
"""Commands whose options come from modules that import torch: built in full only when
they are the command given, so that ``napari-wne --help`` and the others start fast."""


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-wne", description="Normalization-equivariant deep denoising of microscopy."
    )
    parser.add_argument("--version", action="version", version=f"napari-wne {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    run.add_parsers(commands)
    info.add_parsers(commands)
    for name, module in LATE.items():
        if command == name:
            module.add_parser(commands)
        else:
            commands.add_parser(name, help=module.HELP)
    export.add_parser(commands)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"napari-wne: warning: {message}", file=sys.stderr)
