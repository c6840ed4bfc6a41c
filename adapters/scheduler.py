"""Run the configured engine's own scheduler over Switchyard's periodic schedules.

    python -m adapters.scheduler [--backend rq|celery] [--poll 1.0] [--catch-up 1]
"""

from __future__ import annotations

import argparse
import logging
import sys

from .connections import check_tls
from .errors import SwitchyardError
from .registry import load_job_modules
from .client import create_adapter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.scheduler",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--backend", help="engine alias or dotted path (default: $QUEUE_BACKEND)")
    parser.add_argument("--poll", type=float, default=None,
                        help="seconds between beats (default $SWITCHYARD_SCHEDULER_POLL, then 1.0)")
    parser.add_argument("--catch-up", type=int, default=None,
                        help="missed runs fired after downtime "
                             "(default $SWITCHYARD_SCHEDULE_CATCH_UP, then 1)")
    parser.add_argument("-n", "--name", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    try:
        load_job_modules()
        adapter = create_adapter(args.backend)
        check_tls(adapter.settings)
    except SwitchyardError as exc:
        print(f"switchyard scheduler: {exc}", file=sys.stderr)
        return 3
    poll = adapter.settings.scheduler_poll if args.poll is None else args.poll
    catch_up = adapter.settings.schedule_catch_up if args.catch_up is None else args.catch_up
    adapter.run_scheduler(max(0.05, poll), max(0, catch_up), args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
