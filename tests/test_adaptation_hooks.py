"""adapt's hooks for a GUI: every held-out check reported (with a way to write the weights
measured), and a cancel that stops after the current step and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wne import denoise
from napari_wne.adaptation import AdaptationCancelled, adapt
from test_adaptation import _noisy, _quick, _start_model


def test_every_held_out_check_is_reported_and_its_weights_can_be_written(tmp_path):
    start = _start_model(tmp_path)
    checks, steps, previews = [], [], {}
    image = _noisy(64)

    def on_check(check):
        checks.append(check)
        if check.improved:
            folder = check.save(tmp_path / f"snap-{check.step}")
            previews[check.step] = denoise(image, model=str(folder), verbose=False)

    result = adapt(
        [_noisy()], tmp_path / "out", init=start, settings=_quick(lr=3e-3, patience=10),
        progress=lambda p: steps.append(p.step), on_check=on_check,
    )  # fmt: skip
    assert steps == list(range(1, 13))
    assert [c.step for c in checks] == [0, 4, 8, 12]  # before the first step, then every 4
    assert checks[0].improved and checks[0].loss == result.start_loss
    assert [c.best_loss for c in checks] == list(np.minimum.accumulate([c.loss for c in checks]))
    assert min(c.loss for c in checks) == result.best_loss
    # step 0's weights are the starting model; the best check's are the model written
    np.testing.assert_array_equal(previews[0], denoise(image, model=start, verbose=False))
    np.testing.assert_array_equal(
        previews[result.best_step], denoise(image, model=str(result.folder), verbose=False)
    )


@pytest.mark.parametrize("after_steps", [0, 3])
def test_cancel_stops_after_the_current_step_and_writes_nothing(tmp_path, after_steps):
    start = _start_model(tmp_path)
    steps = []
    out = tmp_path / "models" / "out"
    with pytest.raises(AdaptationCancelled, match="no model was saved"):
        adapt(
            [_noisy()], out, init=start, settings=_quick(steps=50),
            progress=lambda p: steps.append(p.step), cancel=lambda: len(steps) >= after_steps,
        )  # fmt: skip
    assert len(steps) == after_steps
    assert not out.exists()
    assert list((tmp_path / "models").iterdir()) == []  # no scratch folder left behind
