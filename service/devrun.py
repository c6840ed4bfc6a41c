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
import importlib.util  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

from honcho.environ import parse_procfile  # noqa: E402

from adapters import ConfigurationError  # noqa: E402
from service.cli import new_api_key, new_webhook_secret  # noqa: E402
from service.config import Settings  # noqa: E402
from service.embedded_redis import EmbeddedRedis  # noqa: E402
from service.supervisor import Proc, Supervisor  # noqa: E402

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
            made: dict[str, str] | None = None, operator: str | None = None) -> None:
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
        if operator:
            _say(f"  operator:   {operator}   (every tenant: sign in to the dashboard "
                 "with it for queues, workers, charts and the audit log)")
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
    key = operator = None
    if not env.get("API_KEYS"):
        key, operator = new_api_key(), new_api_key()
        env["API_KEYS"] = f"dev:{key},*:{operator}"
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

    supervisor = Supervisor(_out, env, str(ROOT))
    for name, command in procfile.processes.items():
        supervisor.add(name, dev_command(name, command))
    ended_first: Proc | None = None
    try:
        if embedded and not _stop_requests:
            embedded.start()
        if not _stop_requests:
            _banner(env, key, embedded, made, operator)
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
