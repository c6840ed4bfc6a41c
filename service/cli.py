"""``flask --app wsgi worker | scheduler | keys | compare``: the Procfile's processes, a key
maker and the engine comparison (:mod:`service.compare`).

``worker`` and ``scheduler`` run the same launchers as ``python -m adapters.worker`` and
``python -m adapters.scheduler``, for the engine and job modules the app was configured
with; ``worker`` execs its launcher, so the worker holds none of the web app.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys

import click
import flask
from flask.cli import with_appcontext

from adapters import scheduler as scheduler_launcher
from adapters import worker as worker_launcher

from .compare.cli import compare_command

__all__ = ["init_app", "keys_only_app", "new_api_key", "new_webhook_secret"]


def new_api_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return "sy_" + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@click.command("worker")
@click.option("-Q", "--queues", default="", metavar="a,b",
              help="Comma-separated queues to run (default: default and every queue a "
                   "registered job type uses).")
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
    # The launcher runs in a fresh interpreter, in this process: the web app loaded to
    # read the settings (Flask, the API, its schemas: some 30 MiB) is no worker's
    # business, and each process the worker forks would carry it again.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", worker_launcher.__name__, *argv])


@click.command("scheduler")
@click.option("--poll", type=float, default=None,
              help="Seconds between beats [env SWITCHYARD_SCHEDULER_POLL, default 1].")
@click.option("--catch-up", type=int, default=None,
              help="Missed runs fired after downtime [env SWITCHYARD_SCHEDULE_CATCH_UP, default 1].")
@click.option("-n", "--name", default=None, help="Scheduler name.")
@with_appcontext
def scheduler_command(poll: float | None, catch_up: int | None, name: str | None) -> None:
    """Run the configured engine's scheduler (Celery beat / rq-scheduler) over the schedules."""
    settings = flask.current_app.extensions["switchyard"].settings
    argv = ["--backend", settings.backend]
    if poll is not None:
        argv += ["--poll", str(poll)]
    if catch_up is not None:
        argv += ["--catch-up", str(catch_up)]
    if name:
        argv += ["-n", name]
    sys.exit(scheduler_launcher.main(argv))


@click.command("keys")
@click.option("-t", "--tenant", default=None, help="Print 'tenant:key', ready for API_KEYS.")
def keys_command(tenant: str | None) -> None:
    """Print a new random API key."""
    key = new_api_key()
    click.echo(f"{tenant}:{key}" if tenant else key)


def keys_only_app() -> flask.Flask:
    """An app with nothing but ``keys``, for when the configuration is broken: a
    malformed ``API_KEYS`` is exactly when a new key is needed."""
    app = flask.Flask("switchyard")
    app.cli.add_command(keys_command)
    return app


def init_app(app: flask.Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(scheduler_command)
    app.cli.add_command(keys_command)
    app.cli.add_command(compare_command)
