"""``make run``: the whole service on this machine, from the Procfile, with what it lacks.

    python -m service.devrun [--procfile Procfile]

Starts an embedded Redis when ``REDIS_URL`` is unset (on a free loopback port, never
6379) and makes a dev API key when ``API_KEYS`` is unset, prints where everything is,
then runs every Procfile process with honcho. Ctrl-C or SIGTERM stops them all, then
the embedded Redis.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import signal
import sys
import time
from pathlib import Path

import honcho.manager
from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from adapters import ConfigurationError

from .cli import new_api_key
from .config import Settings
from .embedded_redis import EmbeddedRedis

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
SHUTDOWN_GRACE = 30
"""Seconds a process may take to stop before it is killed (Heroku gives 30 too)."""


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


def _banner(env: dict[str, str], key: str | None, embedded: EmbeddedRedis | None) -> None:
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
    embedded = None
    if not env.get("REDIS_URL"):
        embedded = EmbeddedRedis()
        env["REDIS_URL"] = embedded.url
    try:
        Settings.from_env(env)
    except ConfigurationError as exc:
        print(f"switchyard: configuration error: {exc}", file=sys.stderr)
        return 2
    procfile = parse_procfile(Path(args.procfile).read_text())

    try:
        if embedded:
            embedded.start()
        _banner(env, key, embedded)
        honcho.manager.KILL_WAIT = SHUTDOWN_GRACE  # honcho's own is 5 s: too short for a job
        manager = Manager(Printer(_out))
        for name, command in procfile.processes.items():
            manager.add_process(name, command, env=env, cwd=str(ROOT))
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
        return manager.returncode or 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if embedded:
            embedded.stop()
            _say("embedded Redis stopped")


if __name__ == "__main__":
    sys.exit(main())
