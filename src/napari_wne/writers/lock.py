"""One writer per output: a lock file beside the output, held for the whole run.

Two runs on one output corrupt it: an ``--overwrite`` deletes blocks the other is writing,
two ``--resume`` runs compute every block twice. So every run takes
``.<output name>.napari-wne-lock`` next to the output before it looks at the output, and a
second run is refused with who holds it (host, pid, start time).

The lock is an ``flock`` on that file, which the kernel drops when the holder dies, however
it dies; the file's contents only say who held it. A file left by a dead holder is taken
over with a warning. Where ``flock`` is unavailable the contents decide: a holder on this
host whose process is gone (or whose pid now belongs to a younger process) is stale.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._hooks import hook

try:
    import fcntl
except ImportError:  # Windows: no flock; the pid check alone decides
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputInUseError", "StaleLockWarning", "lock_path", "output_lock"]


class OutputInUseError(FileExistsError):
    """Another run is writing this output right now."""


class StaleLockWarning(UserWarning):
    """A lock left by a run that no longer exists was taken over."""


def lock_path(output: Path) -> Path:
    """Beside the output, in its resolved folder: two spellings of one path share a lock."""
    parent = output.parent.resolve() if output.parent.exists() else output.parent
    return parent / f".{output.name}.napari-wne-lock"


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold the output's lock for the block; `OutputInUseError` if another run holds it."""
    fd, path = _acquire(Path(output))
    try:
        hook("lock.held")
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _acquire(output: Path) -> tuple[int, Path]:
    path = lock_path(output)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise  # e.g. a full disk: the caller says how to resume
            raise PermissionError(f"cannot write the output {output}: {err}") from err
        locked = _flock(fd)
        if locked is False:
            holder = _read(fd)
            os.close(fd)
            raise OutputInUseError(_busy(output, holder, path))
        if not _same_file(fd, path):  # the holder removed it as we opened it: start over
            os.close(fd)
            continue
        holder = _read(fd)
        if holder and holder.get("pid") != os.getpid() and _alive(holder):
            os.close(fd)  # free by flock, yet its holder lives: flock does not work here
            raise OutputInUseError(_busy(output, holder, path))
        if holder:
            warnings.warn(
                f"taking over the lock on {output} left by a run that is gone "
                f"({_who(holder)}); its finished blocks are kept",
                StaleLockWarning,
                stacklevel=4,
            )
        _write(fd, _me())
        return fd, path


def _flock(fd: int) -> bool | None:
    """True when locked, False when another process holds it, None when unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK on a file system without locks
        return None
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    if not raw.strip():
        return None
    try:
        holder = json.loads(raw)
    except ValueError:
        return {"unreadable": raw[:80].decode(errors="replace")}
    return holder if isinstance(holder, dict) else {"unreadable": str(holder)[:80]}


def _write(fd: int, holder: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)


def _me() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _process_start(os.getpid()),
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[
            :200
        ],
    }


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _alive(holder: dict) -> bool:
    """Whether the holder is a live process on this host (other hosts cannot be checked)."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    started = holder.get("pid_start")
    return started is None or _process_start(pid) in (None, started)


def _who(holder: dict | None) -> str:
    if not holder:
        return "holder unknown"
    if "unreadable" in holder:
        return f"lock file reads {holder['unreadable']!r}"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
        + (f": {holder['command']}" if holder.get("command") else "")
    )


def _busy(output: Path, holder: dict | None, path: Path) -> str:
    return (
        f"output {output} is being written by another run ({_who(holder)}); wait for it to "
        "finish, or stop it and rerun with --resume (resume=True). If no such run exists, "
        f"delete the lock file {path}"
    )
