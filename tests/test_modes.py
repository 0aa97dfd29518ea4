"""Each mode list is defined once; the CLI's choices, defaults and help come from it."""

from __future__ import annotations

import argparse
import inspect
from typing import get_args

import pytest

from napari_wne import denoise
from napari_wne.cli import _parser
from napari_wne.modes import MODES, NORM, Instances, MissingChunks, Norm, OutputDtype


def _option(command: str, flag: str):
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in commands.choices[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize("name", ["norm", "dtype", "instances", "missing_chunks", "pyramid"])
def test_denoise_defaults_and_cli_choices_come_from_the_mode(name):
    mode = MODES[name]
    assert inspect.signature(denoise).parameters[name].default == mode.default
    for command in ("denoise", "batch"):
        action = _option(command, mode.option)
        assert tuple(action.choices) == mode.values and action.default == mode.default
        assert action.help == mode.help


def test_the_literal_types_are_the_mode_values():
    pairs = [(Norm, "norm"), (OutputDtype, "dtype"), (Instances, "instances"),
             (MissingChunks, "missing_chunks")]  # fmt: skip
    for literal, name in pairs:
        assert get_args(literal) == MODES[name].values


def test_a_bad_value_names_every_allowed_one():
    with pytest.raises(ValueError, match=r"norm must be one of 'tile', 'global', got 'x'"):
        NORM.check("x")


def test_batch_format_takes_every_output_format():
    action = _option("batch", "--format")
    assert set(MODES["output_format"].values) <= set(action.choices)
