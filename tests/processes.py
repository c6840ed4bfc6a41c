"""The one wrapper of the subprocesses the tests start: workers, gunicorn, flask commands,
devrun and the fault suite's Procfile processes.

Each runs in a process group of its own, as a platform (Heroku, honcho, ``docker stop``)
runs a process: a signal goes to the whole group, so a worker's children get it too, and
a SIGKILL of the group leaves nothing behind. Its output (stdout and stderr) is appended
to a log file that a failing assertion can show.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["Process", "ROOT"]


class Process:
    """One subprocess in its own process group, its output in ``log_path``."""

    preexec = None
    """Run in the child before its exec (a subclass's: how the process starts)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path | None = None, start: bool = True):
        self.argv, self.env, self.log_path = list(argv), env, Path(log_path)
        self.cwd = cwd or ROOT
        self.proc: subprocess.Popen | None = None
        self._log = None
        if start:
            self.start()

    def start(self) -> None:
        """Start the command (again, after it stopped: the log goes on in the same file)."""
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=self.preexec)

    def log(self, tail: int | None = 6000) -> str:
        """The output so far (its last ``tail`` characters; all of it with ``None``)."""
        text = self.log_path.read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self, what: str = "the process") -> bool:
        """True while it runs; an ``AssertionError`` with its exit status and log once it
        has exited (for the predicates of ``wait_until``)."""
        if not self.alive():
            raise AssertionError(f"{what} exited with {self.proc.returncode}:\n{self.log()}")
        return True

    def group_gone(self) -> bool:
        """Whether no process of its group is left."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole group (nothing if it is gone)."""
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> int | None:
        """SIGKILL the whole group, as an OOM kill or a lost machine; the exit status."""
        return self._kill()

    def terminate(self, timeout: float | None = None) -> int | None:
        """SIGTERM to the group: a warm shutdown, as a platform restart sends it.

        Without ``timeout``, return at once. With one, wait that long and return the exit
        status, or SIGKILL the group and return ``None`` if it had not exited by then.
        """
        return self._terminate(timeout)

    def stop(self, timeout: float = 15.0, signalled: bool = False) -> int | None:
        """SIGTERM (unless ``signalled``: it was sent already), up to ``timeout`` to exit,
        then SIGKILL for whatever is left of the group; closes the log. The exit status of
        the process itself."""
        if signalled:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        else:
            self._terminate(timeout)
        if not self.group_gone():
            self._kill()
        self.proc.wait(10)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    # kept apart from the public methods, which a subclass may extend to count the exits
    def _kill(self) -> int | None:
        self.signal(signal.SIGKILL)
        return self.proc.wait(15)

    def _terminate(self, timeout: float | None) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
        if timeout is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            return None
