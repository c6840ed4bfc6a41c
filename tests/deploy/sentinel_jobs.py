"""The job of the Sentinel failover test: it notes each run in a file, outside Redis,
so a run that Redis forgot in a failover is still counted."""

import os

from adapters import job


@job("failover.mark")
def mark(ctx, n):
    """Append ``<job id> <attempt>`` to ``$SENTINEL_MARKS`` (one short write: atomic)."""
    with open(os.environ["SENTINEL_MARKS"], "a", encoding="utf-8") as marks:
        marks.write(f"{ctx.job_id} {ctx.attempt}\n")
    return n
