"""A worker under test: a subprocess in its own process group, paused and resumed as a
whole, whose memory is sampled over its whole process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

__all__ = ["WorkerProcess"]


def _pss(pid: int) -> int | None:
    """Bytes of the process's proportional set size (each page shared with other
    processes counted as its share), from ``/proc/<pid>/smaps_rollup``; None where the
    kernel has none."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class WorkerProcess:
    """One worker command; ``peak_rss`` is the largest sum of RSS over the process and
    all its descendants seen while it ran (copy-on-write pages count in each process),
    ``peak_pss`` the largest sum of their PSS (a page shared by the tree's processes
    counted once in all, split among them: what the tree costs the machine)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path,
                 sample_every: float = 0.1):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.peak_rss = 0
        self.peak_pss: int | None = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, args=(sample_every,),
                                         name="bench-rss", daemon=True)
        self._sampler.start()

    def tree_rss(self) -> int:
        """Bytes of RSS summed over the worker's process tree right now."""
        return self.tree_memory()[0]

    def tree_memory(self) -> tuple[int, int | None]:
        """Bytes of RSS and of PSS (None if unknown) summed over the worker's process
        tree right now."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0, 0
        rss, pss = 0, 0
        for proc in procs:
            try:
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            share = _pss(proc.pid)
            if share is None and proc is root:
                pss = None  # the kernel keeps no PSS (a child may just have ended)
            elif pss is not None and share is not None:
                pss += share
        return rss, pss

    def _sample(self, every: float) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            rss, pss = self.tree_memory()
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = None if pss is None or self.peak_pss is None else \
                max(self.peak_pss, pss)
            self._stop.wait(every)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """Raise if the worker died."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}: {' '.join(self.argv)}\n"
                               f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal_group(self, signum: int) -> None:
        # Every process of the tree: the engine's own children sit in the same group.
        os.killpg(self.proc.pid, signum)

    def pause(self) -> None:
        """SIGSTOP the whole worker, so jobs can pile up without being taken."""
        self.check()
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the whole worker: the start signal of a timed run."""
        self._signal_group(signal.SIGCONT)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left at the deadline."""
        self._stop.set()
        if self.proc.poll() is None:
            try:
                self._signal_group(signal.SIGCONT)
                # A SIGTERM that lands while a resumed RQ worker is still waking up is
                # lost; give the group a moment to run again first.
                time.sleep(0.3)
                self._signal_group(signal.SIGTERM)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            self._signal_group(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._log.close()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.01,
               worker: WorkerProcess | None = None):
    """Poll ``predicate`` until truthy; raise at the deadline or if ``worker`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if worker is not None:
            worker.check()
        if time.monotonic() > deadline:
            tail = worker.log_tail() if worker else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}\n{tail}")
        time.sleep(interval)
