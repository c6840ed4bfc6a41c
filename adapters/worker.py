"""Run the configured engine's own worker over the job modules in ``JOB_MODULES``.

    python -m adapters.worker [--backend rq|celery|dotted.path] [-Q a,b] [-c 2] [-n name]
"""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import SwitchyardError
from .registry import definitions, load_job_modules
from .resolve import create_adapter

log = logging.getLogger("switchyard.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", help="engine alias or dotted path (default: $QUEUE_BACKEND, then rq)")
    parser.add_argument("-Q", "--queues", default="", help="comma-separated queues (default: default)")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="worker processes")
    parser.add_argument("-n", "--name", default=None, help="worker name")
    parser.add_argument("--job-modules", default=None, help="overrides $JOB_MODULES")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    try:
        modules = load_job_modules(args.job_modules)
        adapter = create_adapter(args.backend)
    except SwitchyardError as exc:
        print(f"switchyard worker: {exc}", file=sys.stderr)
        return 2
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    log.info("%s worker: job modules %s, %d job types, queues %s", adapter.name,
             ",".join(modules) or "(none)", len(definitions()), ",".join(queues) or "default")
    adapter.run_worker(queues or None, max(1, args.concurrency), args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
