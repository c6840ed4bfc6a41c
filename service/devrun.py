"""``make run``: the whole service on this machine, from the Procfile, with what it lacks.

    python -m service.devrun [--procfile Procfile]

Starts an embedded Redis when ``REDIS_URL`` is unset (on a free loopback port, never
6379), makes a dev API key when ``API_KEYS`` is unset and dev webhook values when
``WEBHOOK_ALLOWED_HOSTS``, ``WEBHOOK_SIGNING_SECRET`` or ``HOOK_SECRETS`` are unset,
prints where everything is, then runs every Procfile process with honcho, the web
process bound to loopback. Ctrl-C or SIGTERM stops them all, then the embedded Redis;
the exit status is 0 when every process stopped cleanly, 3 on a configuration error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import signal
import socket
import sys
import time
from pathlib import Path

import honcho.manager
from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from adapters import ConfigurationError

from .cli import new_api_key, new_webhook_secret
from .config import Settings
from .embedded_redis import EmbeddedRedis

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
SHUTDOWN_GRACE = 30
"""Seconds a process may take to stop before it is killed (Heroku gives 30 too)."""
CONFIG_ERROR = 3
"""The exit status of a configuration error, the same as the processes' own."""
SIGNAL_RETURNCODES = (130, 143)
"""What honcho's loop reports when Ctrl-C (SIGINT) or SIGTERM stopped it."""


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


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _stop_everything(manager: Manager, grace: float = SHUTDOWN_GRACE) -> None:
    """Make sure no process of the Procfile outlives us, whatever ended the loop.

    Normally honcho's loop has stopped them all already and this returns at once.
    Each process runs in a process group of its own: SIGTERM the groups still there
    (a worker first finishes the job in hand), SIGKILL what is left after ``grace``.
    """
    groups = [p["pid"] for p in manager._processes.values() if p.get("pid")]
    for pgid in groups:
        if not _gone(pgid):
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    relays = [p["process"] for p in manager._processes.values() if p.get("process")]
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not (all(_gone(g) for g in groups)
                                               and not any(r.is_alive() for r in relays)):
        try:  # honcho's relay processes exit only once their output is read
            manager.events.get(timeout=0.1)
        except queue.Empty:
            pass
    for pgid in groups:
        if not _gone(pgid):
            os.killpg(pgid, signal.SIGKILL)
    for relay in relays:
        if relay.is_alive():
            relay.kill()
        relay.join(5)


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
    """A Procfile command as ``make run`` hands it to honcho.

    ``exec``: the shell honcho starts becomes the process itself, so honcho's SIGTERM
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
        return CONFIG_ERROR
    procfile = parse_procfile(Path(args.procfile).read_text())

    try:
        if embedded:
            embedded.start()
        _banner(env, key, embedded, made)
        honcho.manager.KILL_WAIT = SHUTDOWN_GRACE  # honcho's own is 5 s: too short for a job
        manager = Manager(Printer(_out))
        for name, command in procfile.processes.items():
            manager.add_process(name, dev_command(name, command), env=env, cwd=str(ROOT))
        # a closed terminal (SIGHUP) stops everything as Ctrl-C does, instead of killing
        # this process alone and leaving the others behind
        signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
        try:
            manager.loop()  # returns once every process has stopped
        finally:
            # a second Ctrl-C must not cut the clean-up short
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)
            _stop_everything(manager)
        stopped = [p.get("returncode") for p in manager._processes.values()]
        if manager.returncode in SIGNAL_RETURNCODES and all(rc == 0 for rc in stopped):
            # asked to stop and everything stopped cleanly: a success, not `Error 130`
            return 0
        return manager.returncode or 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if embedded:
            embedded.stop()
            _say("embedded Redis stopped")


if __name__ == "__main__":
    sys.exit(main())
