"""``flask --app wsgi worker | scheduler | keys``: the Procfile's processes and a key maker."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import threading

import click
import flask
from flask.cli import with_appcontext

from adapters import QueueAdapter
from adapters import worker as worker_launcher
from adapters.runner import Maintenance

__all__ = ["init_app", "run_scheduler", "new_api_key"]

log = logging.getLogger("switchyard.scheduler")


def new_api_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return "sy_" + secrets.token_urlsafe(32)


@click.command("worker")
@click.option("-Q", "--queues", default="", metavar="a,b",
              help="Comma-separated queues to run (default: default).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              envvar="WORKER_CONCURRENCY", help="Jobs run at once [env WORKER_CONCURRENCY].")
@click.option("-n", "--name", default=None, help="Worker name (default: host:pid).")
@with_appcontext
def worker_command(queues: str, concurrency: int, name: str | None) -> None:
    """Run the configured engine's worker (QUEUE_BACKEND); SIGTERM finishes the job in hand."""
    settings = flask.current_app.extensions["switchyard"].settings
    argv = ["--backend", settings.backend, "-c", str(concurrency),
            "--job-modules", settings.job_modules]
    if queues:
        argv += ["-Q", queues]
    if name:
        argv += ["-n", name]
    sys.exit(worker_launcher.main(argv))


def run_scheduler(adapter: QueueAdapter, name: str | None = None) -> None:
    """Run the scheduler process until SIGTERM or SIGINT.

    Periodic schedules are not built yet: for now this runs the adapter's maintenance
    loop alone (release due jobs, re-deliver jobs of dead workers, expire stale ones),
    which lets delayed jobs move even while no worker runs.
    """
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    name = name or f"scheduler@{socket.gethostname()}:{os.getpid()}"
    maintenance = Maintenance(adapter, [], 0, name)
    log.info("%s scheduler %s started; periodic schedules are not available yet, so it "
             "only releases due jobs and re-delivers lost ones", adapter.name, name)
    maintenance.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        maintenance.stop()
        log.info("scheduler %s stopped", name)


@click.command("scheduler")
@click.option("-n", "--name", default=None, help="Scheduler name (default: scheduler@host:pid).")
@with_appcontext
def scheduler_command(name: str | None) -> None:
    """Run the scheduler process (until SIGTERM or Ctrl-C)."""
    run_scheduler(flask.current_app.extensions["switchyard"].adapter, name)


@click.command("keys")
@click.option("-t", "--tenant", default=None, help="Print 'tenant:key', ready for API_KEYS.")
def keys_command(tenant: str | None) -> None:
    """Print a new random API key."""
    key = new_api_key()
    click.echo(f"{tenant}:{key}" if tenant else key)


def init_app(app: flask.Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(scheduler_command)
    app.cli.add_command(keys_command)
