"""Named points in the output's life where a test can kill or pause the real process.

Creating a store, finishing it and marking a block each take microseconds, far too short a
window to hit with a timed SIGKILL from outside. The kill-anywhere and two-writer tests set
``NAPARI_WNE_TEST_HOOK`` in a child process to stop it exactly there:

- ``kill:POINT[:N]``: the process SIGKILLs itself at the N-th time (default 1st) it reaches
  POINT, as abruptly as a crash or an OOM kill;
- ``pause:POINT:N:FOLDER``: at the N-th time it writes ``FOLDER/ready`` and waits (at most
  two minutes) until ``FOLDER/go`` exists, so a test can start a second writer meanwhile.

Without the variable, `hook` is one dictionary lookup. The points are listed in `POINTS`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["POINTS", "hook"]

POINTS = (
    "lock.held",
    "create.dir",
    "create.state",
    "create.array",
    "block.written",
    "block.marked",
    "pyramid.written",
    "finalize.checked",
    "finalize.attrs",
    "overwrite.removing",
)
_counts: dict[str, int] = {}


def hook(point: str) -> None:
    """Kill or pause this process here if the test hook asks for `point`."""
    spec = os.environ.get("NAPARI_WNE_TEST_HOOK")
    if not spec:
        return
    action, _, rest = spec.partition(":")
    wanted, _, rest = rest.partition(":")
    if wanted != point:
        return
    nth, _, folder = rest.partition(":")
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] != int(nth or 1):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        Path(folder, "ready").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not Path(folder, "go").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
