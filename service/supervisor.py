"""The processes ``make run`` supervises: each Procfile process in a session of its own,
its output read by a thread and printed honcho's way, stopped in order with a deadline,
then killed with every descendant (see :mod:`service.devrun` for why)."""

from __future__ import annotations

import datetime
import os
import queue
import signal
import subprocess
import threading
import time

from honcho.colour import get_colours
from honcho.printer import Message, Printer

__all__ = ["Supervisor", "Proc"]


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, from /proc (none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


STOP_SIGNALS = (-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP)
"""Return codes of a process that a stop signal ended."""


class Proc:
    """One Procfile process: a shell that ``exec``s the command, in a session of its own."""

    def __init__(self, name: str, command: str, colour: str):
        self.name = name
        self.command = command
        self.colour = colour
        self.popen: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.sent: list[int] = []
        self.reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.returncode is None

    def stopped_cleanly(self) -> bool:
        """Stopped by itself (0), or, once devrun asked it to stop, by a stop signal it
        could not yet handle: devrun's SIGTERM, or the Ctrl-C itself when it came while
        the process was still being started (before it had a session of its own)."""
        if self.popen is None:
            return True  # never started: the stop came first
        if self.returncode == 0:
            return True
        return self.returncode in STOP_SIGNALS and signal.SIGKILL not in self.sent \
            and signal.SIGTERM in self.sent


class Supervisor:
    """The Procfile's processes, their output on ours, and their stop.

    Output is read by threads, not processes: nothing but devrun itself is in devrun's
    process group, so a Ctrl-C reaches devrun and nothing else.
    """

    def __init__(self, out, env: dict[str, str], cwd: str):
        self.env = env
        self.cwd = cwd
        self.processes: list[Proc] = []
        self.lines: queue.Queue = queue.Queue()
        self.printer = Printer(out)
        self.printer.width = len("system")
        self._colours = get_colours()

    def add(self, name: str, command: str) -> None:
        self.processes.append(Proc(name, command, next(self._colours)))
        self.printer.width = max(self.printer.width, len(name))

    def say(self, text: str, process: Proc | None = None) -> None:
        self.printer.write(Message(type="line", data=text, time=datetime.datetime.now(),
                                   name=process.name if process else "system",
                                   colour=process.colour if process else None))

    def start(self, process: Proc) -> None:
        process.popen = subprocess.Popen(
            process.command, shell=True, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.say(f"{process.name} started (pid={process.pid})")
        process.reader = threading.Thread(target=self._read, args=(process,), daemon=True,
                                          name=f"devrun-{process.name}")
        process.reader.start()

    def _read(self, process: Proc) -> None:
        stream = process.popen.stdout
        try:
            for line in iter(stream.readline, b""):
                self.lines.put((process, line))
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def pump(self, timeout: float = 0.1) -> list[Proc]:
        """Print what the processes wrote (waiting up to ``timeout`` for it); return the
        processes that ended since the last call."""
        try:
            process, line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pass
        else:
            self.say(line.decode("utf-8", "replace"), process)
            while True:
                try:
                    process, line = self.lines.get_nowait()
                except queue.Empty:
                    break
                self.say(line.decode("utf-8", "replace"), process)
        ended = []
        for process in self.processes:
            if process.running and process.popen.poll() is not None:
                process.returncode = process.popen.returncode
                why = ""
                if process.returncode in STOP_SIGNALS and signal.SIGTERM in process.sent:
                    why = (f", by {signal.Signals(-process.returncode).name}: it was still "
                           "starting")
                self.say(f"{process.name} stopped (rc={process.returncode}{why})")
                ended.append(process)
        return ended

    def _signal(self, process: Proc, signum: int) -> None:
        self.say(f"sending {signal.Signals(signum).name} to {process.name} (pid {process.pid})")
        process.sent.append(signum)
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float) -> None:
        """SIGTERM every process still running, in order; SIGKILL what is left after
        ``grace`` seconds; then whatever a process left behind in its group. Returns once
        nothing is left. Safe to call again."""
        started = [p for p in self.processes if p.popen is not None]
        for process in started:
            if process.running and signal.SIGTERM not in process.sent:
                self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(p.running for p in started) and time.monotonic() < deadline:
            self.pump()
        for process in started:
            if process.running:
                family = _descendants(process.pid)  # some may have left the group
                self._signal(process, signal.SIGKILL)
                for pid in family:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        while any(p.running for p in started):
            self.pump()  # SIGKILL cannot be refused: this ends at once
        for process in started:
            if not _group_gone(process.pid):  # left behind when its leader exited
                self.say(f"killing what {process.name} left running (group {process.pid})")
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for process in started:
            process.reader.join(5)  # EOF once every holder of the pipe has gone
        self.pump(0)
