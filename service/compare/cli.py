"""The ``compare`` command (``flask --app wsgi compare``, ``python -m service.compare``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

__all__ = ["compare_command"]


@click.command("compare")
@click.option("--jobs", "jobs", default=None, metavar="pkg.mod[,pkg.other]",
              help="Run the examples= of these job modules' job types on every engine "
                   "(default: the app's JOB_MODULES).")
@click.option("--no-jobs", is_flag=True, help="Run no job examples.")
@click.option("--engine", default=None, metavar="pkg.mod:Engine",
              help="Add the leg 'custom': this adapters.Engine subclass, Redis as its broker.")
@click.option("--engine-hooks", default=None, metavar="pkg.mod:Hooks",
              help="The custom leg's conformance hooks (see tests/conformance/hooks.py).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/compare"),
              show_default=True, help="Where the report, the JUnit files and the logs go.")
@click.option("--pytest-args", default="", metavar="ARGS",
              help="Extra pytest arguments for each conformance run, e.g. \"-k lifecycle\".")
@click.option("--processes", type=click.IntRange(0, 64), default=None,
              help="pytest-xdist processes for each leg's conformance run (0: one process; "
                   "default 3 where pytest-xdist is installed, else 0).")
@click.option("--no-bench", is_flag=True, help="Do not run the bench smoke.")
@click.option("--bench-results", type=click.Path(path_type=Path), default=None,
              help="Read these bench results instead of running the bench.")
@click.option("--faults", type=click.Path(path_type=Path), default=None,
              help="The fault suite's report (default: RELIABILITY.md).")
@click.option("--no-conformance", is_flag=True,
              help="Run no conformance suite: read the JUnit files already in --out (e.g. "
                   "one per leg from parallel CI jobs); job examples and bench still run.")
@click.option("--report-only", is_flag=True,
              help="Run nothing: build the report from the JUnit files already in --out.")
@click.option("--redis-url", default=None,
              help="The Redis for the job examples (default: a private one, started and stopped).")
def compare_command(jobs, no_jobs, engine, engine_hooks, out, pytest_args, processes, no_bench,
                    bench_results, faults, no_conformance, report_only, redis_url) -> None:
    """Every engine side by side: conformance matrix, parity breaks, job examples, bench and
    fault figures, in var/compare/COMPARISON.md and .html; exits 1 on a parity break."""
    from .run import Options, compare

    if jobs is None and not no_jobs:
        jobs = _app_job_modules()
    opts = Options(out=out, jobs=None if no_jobs or report_only else jobs, engine=engine,
                   engine_hooks=engine_hooks, pytest_args=shlex.split(pytest_args),
                   processes=_default_processes() if processes is None else processes,
                   conformance=not (report_only or no_conformance), bench=not (no_bench or report_only),
                   bench_results=bench_results, faults=faults, redis_url=redis_url,
                   command=_command())
    try:
        code = compare(opts, say=lambda line: click.echo(line))
    except Exception as exc:  # a usage error of the legs (SWITCHYARD_LEGS, RabbitMQ required)
        if type(exc).__name__ != "UsageError":
            raise
        click.echo(f"switchyard compare: {exc}", err=True)
        code = 2
    sys.exit(code)


def _app_job_modules() -> str | None:
    try:
        import flask

        return flask.current_app.extensions["switchyard"].settings.job_modules
    except (RuntimeError, KeyError):
        import os

        return os.environ.get("JOB_MODULES") or "service.jobs"


def _command() -> str:
    argv = sys.argv[1:]
    if "compare" in argv:
        argv = argv[argv.index("compare"):]
        return "flask --app wsgi " + shlex.join(argv)
    return "python -m service.compare " + shlex.join(argv)


def _default_processes() -> int:
    import importlib.util

    return 3 if importlib.util.find_spec("xdist") else 0
