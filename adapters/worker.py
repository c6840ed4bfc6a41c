"""Run the configured engine's own worker over the job modules in ``JOB_MODULES``.

    python -m adapters.worker [--backend rq|celery|dotted.path] [-Q a,b] [-c 2] [-n name]
                              [--pool prefork|solo|threads] [--worker-class simple|fork]
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import signal
import sys

from .connections import check_tls
from .errors import SwitchyardError
from .registry import definitions, load_job_modules
from .client import create_adapter
from . import supervise
from .supervise import stop_with_supervisor, supervised

log = logging.getLogger("switchyard.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", help="engine alias or dotted path (default: $QUEUE_BACKEND, then rq)")
    parser.add_argument("-Q", "--queues", default="", help="comma-separated queues (default: default and every queue "
                             "a registered job type uses)")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="worker processes")
    parser.add_argument("-n", "--name", default=None, help="worker name")
    parser.add_argument("--job-modules", default=None, help="overrides $JOB_MODULES")
    parser.add_argument("--pool", choices=("prefork", "solo", "threads"), default=None,
                        help="Celery's worker pool (default prefork)")
    parser.add_argument("--worker-class", choices=("simple", "fork"), default=None,
                        help="RQ's worker: simple (default; no fork per job) or fork "
                             "(RQ's stock fork-per-job Worker)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    try:
        modules = load_job_modules(args.job_modules)
        adapter = create_adapter(args.backend)
        check_tls(adapter.settings)
    except SwitchyardError as exc:
        print(f"switchyard worker: {exc}", file=sys.stderr)
        return 3
    engine_options = {}
    if args.pool:
        engine_options["pool"] = args.pool
    if args.worker_class:
        engine_options["forking"] = args.worker_class == "fork"
    accepted = inspect.signature(adapter.engine.run_worker).parameters
    for option, flag in (("pool", "--pool"), ("forking", "--worker-class")):
        if option in engine_options and option not in accepted:
            print(f"switchyard worker: {flag} does not apply to the {adapter.name} engine",
                  file=sys.stderr)
            return 2
    if adapter.engine.needs_supervisor(max(1, args.concurrency), **engine_options):
        if not supervised():
            # this worker is the whole worker: a parent that holds none of it starts it
            # again if a job takes it down (adapters/supervise.py says how)
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, supervise.command([
                sys.executable, "-m", __spec__.name if __spec__ else "adapters.worker",
                *(sys.argv[1:] if argv is None else argv)]))
        stop_with_supervisor()
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] or sorted(
        {"default"} | {d.queue for d in definitions().values()})
    log.info("%s worker: job modules %s, %d job types, queues %s", adapter.name,
             ",".join(modules) or "(none)", len(definitions()), ",".join(queues))
    adapter.run_worker(queues, max(1, args.concurrency), args.name, **engine_options)
    _ignore_late_stops()
    return 0


def _ignore_late_stops() -> None:
    """The worker has stopped: a stop signal from now on has nothing left to stop.

    Where the platform signals the whole group, a worker under its supervisor gets two
    SIGTERMs, the group's and the one the supervisor passes on; one that lands while the
    interpreter exits met Python's default action (the exit resets every handler it set)
    and ended a clean warm stop by SIGTERM, which the supervisor reported as its own end
    (seen under load: a warm stop of an idle RQ SimpleWorker ended -15). Ignored
    signals stay ignored through the exit."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
