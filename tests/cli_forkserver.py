"""Start real `napari-wne` CLI processes without paying the import of torch for each one.

The kill and two-writer tests need a dozen short-lived CLI processes. Importing torch
costs seconds of CPU per process, so this server imports `napari_wne.cli` once and forks
a child per run: each child is a separate process running ``main(argv)`` from the top,
killed by a real SIGKILL, with its own stderr file. The server computes nothing itself, so
no thread pool exists to break in the children.

Protocol on stdin/stdout, one JSON object a line: ``{"argv", "env", "log"}`` starts a run
and answers ``{"pid"}``; ``{"wait": pid}`` answers ``{"status"}`` (the exit code, or minus
the signal that killed it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    import warnings

    from napari_wne.cli import main

    for line in sys.stdin:
        request = json.loads(line)
        if "wait" in request:
            _, status = os.waitpid(request["wait"], 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            answer = {"status": code}
        else:
            pid = os.fork()
            if pid == 0:  # the child: a CLI run from the top, its output in its log file
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.environ.update(request["env"])
                warnings.simplefilter("default")
                code = 1
                try:
                    code = main(request["argv"])
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            answer = {"pid": pid}
        print(json.dumps(answer), flush=True)


class ForkServer:
    """The test side: `start` a CLI run, then `wait` for it or kill its pid."""

    def __init__(self, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))  # the same sums as the tests'
        env.pop("NAPARI_WNE_TEST_HOOK", None)
        self._server = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def _ask(self, request: dict) -> dict:
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        return json.loads(self._server.stdout.readline())

    def start(self, argv: list[str], log: Path, hook: str | None = None) -> CliRun:
        env = {"NAPARI_WNE_TEST_HOOK": hook} if hook else {}
        pid = self._ask({"argv": argv, "env": env, "log": str(log)})["pid"]
        return CliRun(self, pid, log)

    def close(self) -> None:
        self._server.stdin.close()
        self._server.wait(timeout=30)


class CliRun:
    """One forked CLI run: its pid, its exit status, its stderr."""

    def __init__(self, server: ForkServer, pid: int, log: Path) -> None:
        self.server, self.pid, self.log = server, pid, log
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = self.server._ask({"wait": self.pid})["status"]
        return self.returncode

    def poll(self) -> int | None:
        """The exit status if the run has ended (reaped), else None."""
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
                with open(f"/proc/{self.pid}/stat") as f:
                    zombie = f.read().rpartition(")")[2].split()[0] == "Z"
            except (ProcessLookupError, FileNotFoundError):
                zombie = True
            if zombie:
                return self.wait()
        return self.returncode

    def kill(self) -> None:
        os.kill(self.pid, 9)

    def stderr(self) -> str:
        return self.log.read_text()
