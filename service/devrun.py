"""``make run``: the whole service on this machine, from the Procfile, with what it lacks.

    python service/devrun.py [--procfile Procfile]      (what make run runs)
    python -m service.devrun [--procfile Procfile]      (the same)

Starts an embedded Redis when ``REDIS_URL`` is unset (on a free loopback port, never
6379), makes a dev API key when ``API_KEYS`` is unset and dev webhook values when
``WEBHOOK_ALLOWED_HOSTS``, ``WEBHOOK_SIGNING_SECRET`` or ``HOOK_SECRETS`` are unset,
prints where everything is, then runs every Procfile process, the web process bound to
loopback. Ctrl-C, SIGTERM or SIGHUP, at any moment, stops them all, then the embedded
Redis; the exit status is 0 when every process stopped cleanly, 3 on a configuration
error.

How a stop works, and why it is the same whenever it comes:

* Each Procfile process runs in a session of its own, so the terminal's Ctrl-C (a
  SIGINT to its whole foreground process group) and its hang-up reach devrun alone,
  never a process that is still importing and has no signal handling yet.
* devrun notes SIGINT, SIGTERM and SIGHUP from its first line on, before its heavy
  imports (as a file it runs before the ``service`` package is imported too); the
  handler only notes the signal, so no start-up step is cut off half-way.
* Asked to stop, devrun starts nothing more, sends SIGTERM to each process group in the
  Procfile's order, and waits up to ``SHUTDOWN_GRACE`` seconds; what is left is killed
  (SIGKILL), the group and every descendant, then the embedded Redis is stopped.
* A process that dies of that SIGTERM before it installed its handler stopped because
  devrun asked it to, while it was starting: it had taken no job yet, so that is a clean
  stop too. Killed at the deadline, or ended by anything else, is not.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # run as a file: the repository's root on sys.path, not service/ (whose modules
    # would shadow others)
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import signal  # noqa: E402

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stop_requests: list[int] = []
"""The stop signals devrun received, in order; the first one is the answer."""


def _note_stop(signum, frame) -> None:
    _stop_requests.append(signum)


if __name__ == "__main__":
    # before anything else: from here on a stop signal is never fatal to devrun
    for _signum in STOP_SIGNALS:
        signal.signal(_signum, _note_stop)

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from honcho.colour import get_colours  # noqa: E402
from honcho.environ import parse_procfile  # noqa: E402
from honcho.printer import Message, Printer  # noqa: E402

from adapters import ConfigurationError  # noqa: E402
from service.cli import new_api_key, new_webhook_secret  # noqa: E402
from service.config import Settings  # noqa: E402
from service.embedded_redis import EmbeddedRedis  # noqa: E402

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
SHUTDOWN_GRACE = 30
"""Seconds a process may take to stop before it is killed (Heroku gives 30 too)."""
CONFIG_ERROR = 3
"""The exit status of a configuration error, the same as the processes' own."""


class _SafeOutput:
    """Standard output that never raises.

    With ``make run | tee log``, Ctrl-C kills ``tee`` first; a write to the closed
    pipe must not break off the shutdown half-way and leave processes behind.
    """

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False


_out = _SafeOutput(sys.stdout)


def _say(text: str = "") -> None:
    _out.write(text + "\n")


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


class _Process:
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
        """Stopped by itself (0), or by the SIGTERM devrun sent before it could handle it."""
        if self.popen is None:
            return True  # never started: the stop came first
        if self.returncode == 0:
            return True
        return self.returncode == -signal.SIGTERM and signal.SIGKILL not in self.sent \
            and signal.SIGTERM in self.sent


class _Supervisor:
    """The Procfile's processes, their output on ours, and their stop.

    Output is read by threads, not processes: nothing but devrun itself is in devrun's
    process group, so a Ctrl-C reaches devrun and nothing else.
    """

    def __init__(self, out, env: dict[str, str], cwd: str):
        self.env = env
        self.cwd = cwd
        self.processes: list[_Process] = []
        self.lines: queue.Queue = queue.Queue()
        self.printer = Printer(out)
        self.printer.width = len("system")
        self._colours = get_colours()

    def add(self, name: str, command: str) -> None:
        self.processes.append(_Process(name, command, next(self._colours)))
        self.printer.width = max(self.printer.width, len(name))

    def say(self, text: str, process: _Process | None = None) -> None:
        self.printer.write(Message(type="line", data=text, time=datetime.datetime.now(),
                                   name=process.name if process else "system",
                                   colour=process.colour if process else None))

    def start(self, process: _Process) -> None:
        process.popen = subprocess.Popen(
            process.command, shell=True, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.say(f"{process.name} started (pid={process.pid})")
        process.reader = threading.Thread(target=self._read, args=(process,), daemon=True,
                                          name=f"devrun-{process.name}")
        process.reader.start()

    def _read(self, process: _Process) -> None:
        stream = process.popen.stdout
        try:
            for line in iter(stream.readline, b""):
                self.lines.put((process, line))
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def pump(self, timeout: float = 0.1) -> list[_Process]:
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
                if process.returncode == -signal.SIGTERM and signal.SIGTERM in process.sent:
                    why = ", by the SIGTERM: it was still starting"
                self.say(f"{process.name} stopped (rc={process.returncode}{why})")
                ended.append(process)
        return ended

    def _signal(self, process: _Process, signum: int) -> None:
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


def _port_taken(port: int) -> bool:
    """Whether something already listens on loopback ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as gunicorn binds: a port left in TIME_WAIT by a previous run is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def dev_command(name: str, command: str) -> str:
    """A Procfile command as ``make run`` runs it.

    ``exec``: the shell devrun starts becomes the process itself, so devrun's SIGTERM
    reaches gunicorn or the worker (a warm shutdown, rc 0) instead of the shell (-15).
    The web process binds loopback: a dev key must not be reachable from the network.
    """
    if name == "web":
        command = command.replace("--bind 0.0.0.0:", "--bind 127.0.0.1:")
    return command if command.startswith("exec ") else f"exec {command}"


def _dev_values(env: dict[str, str]) -> dict[str, str]:
    """Set working dev values for the webhook settings that are unset; return them."""
    made = {}
    if not env.get("WEBHOOK_ALLOWED_HOSTS"):
        # the dev receivers run on this machine, which the SSRF guard refuses otherwise
        made["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    if not env.get("WEBHOOK_SIGNING_SECRET"):
        made["WEBHOOK_SIGNING_SECRET"] = new_webhook_secret()
    if not env.get("HOOK_SECRETS"):
        made["HOOK_SECRETS"] = f"dev:{new_webhook_secret()}"
    env.update(made)
    return made


def _banner(env: dict[str, str], key: str | None, embedded: EmbeddedRedis | None,
            made: dict[str, str] | None = None) -> None:
    base = f"http://127.0.0.1:{env['PORT']}"
    _say("Switchyard is starting (Ctrl-C stops everything)")
    _say(f"  engine:     {env.get('QUEUE_BACKEND') or 'rq'}")
    if embedded:
        _say(f"  Redis:      embedded, {embedded.url} (REDIS_URL was unset; it goes away on exit)")
    else:
        _say(f"  Redis:      {env['REDIS_URL']}")
    if importlib.util.find_spec("service.dashboard") is not None:
        _say(f"  dashboard:  {base}/")
    _say(f"  API docs:   {base}/docs   (spec: {base}/openapi.json)")
    _say(f"  health:     {base}/readyz   metrics: {base}/metrics")
    if key:
        _say(f"  API key:    {key}   (tenant 'dev'; API_KEYS was unset)")
    else:
        _say("  API key:    one of yours from API_KEYS")
        key = "<your api key>"
    for name, value in (made or {}).items():
        _say(f"  {name}={value}   (dev value; it was unset)")
    body = json.dumps({"type": "demo.echo", "payload": {"message": "hello"}})
    _say()
    _say("Try it:")
    _say(f"  curl -s -X POST {base}/v1/jobs -H 'Authorization: Bearer {key}' "
         f"-H 'Content-Type: application/json' -d '{body}'")
    _say(f"  curl -s {base}/v1/jobs/<id from above> -H 'Authorization: Bearer {key}'")
    _say()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.devrun", description=__doc__.split("\n")[0])
    parser.add_argument("--procfile", default=str(ROOT / "Procfile"))
    args = parser.parse_args(argv)
    for signum in STOP_SIGNALS:  # already so when run as a program; not when called
        signal.signal(signum, _note_stop)

    env = dict(os.environ)
    env.setdefault("PORT", "5000")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # the Procfile's commands come from this venv, whatever PATH the caller had
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    key = None
    if not env.get("API_KEYS"):
        key = new_api_key()
        env["API_KEYS"] = f"dev:{key}"
    made = _dev_values(env)
    try:
        port = int(env["PORT"])
    except ValueError:
        print(f"switchyard: configuration error: PORT={env['PORT']!r} is not a port number",
              file=sys.stderr)
        return CONFIG_ERROR
    if _port_taken(port):
        print(f"switchyard: PORT={port} is taken on 127.0.0.1: stop what listens there "
              "or set PORT to a free port", file=sys.stderr)
        return CONFIG_ERROR
    embedded = None
    if not env.get("REDIS_URL"):
        embedded = EmbeddedRedis()
        env["REDIS_URL"] = embedded.url
    try:
        Settings.from_env(env)
    except ConfigurationError as exc:
        print(f"switchyard: configuration error: {exc}", file=sys.stderr)
        if embedded:
            embedded.stop()  # never started: this removes its directory
        return CONFIG_ERROR
    procfile = parse_procfile(Path(args.procfile).read_text())

    supervisor = _Supervisor(_out, env, str(ROOT))
    for name, command in procfile.processes.items():
        supervisor.add(name, dev_command(name, command))
    ended_first: _Process | None = None
    try:
        if embedded and not _stop_requests:
            embedded.start()
        if not _stop_requests:
            _banner(env, key, embedded, made)
        for process in supervisor.processes:
            if _stop_requests:
                break
            supervisor.start(process)
        while not _stop_requests:
            ended = supervisor.pump()
            if ended:  # one process ended by itself: the others stop too, as on Heroku
                ended_first = ended[0]
                break
        if _stop_requests:
            supervisor.say(f"{signal.Signals(_stop_requests[0]).name} received")
    finally:
        # a second Ctrl-C is only noted: it must not cut the clean-up short
        supervisor.stop(SHUTDOWN_GRACE)
        if embedded:
            embedded.stop()
            _say("embedded Redis stopped")
    if ended_first is not None and not _stop_requests:
        rc = ended_first.returncode
        return rc if rc >= 0 else 128 - rc
    if all(p.stopped_cleanly() for p in supervisor.processes):
        # asked to stop and everything stopped cleanly: a success, not `Error 130`
        return 0
    return 128 + _stop_requests[0]


if __name__ == "__main__":
    sys.exit(main())
