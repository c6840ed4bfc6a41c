"""The bench's Switchyard job types (``JOB_MODULES=bench.jobs``)."""

import time

from adapters import job


@job("bench.noop")
def noop(ctx):
    """Do nothing: what is left is the engine's and the layer's own cost."""
    return None


@job("bench.sleep")
def sleep(ctx, seconds=0.05):
    """Sleep in one blocking call: a stand-in for an I/O-bound job."""
    time.sleep(seconds)
    return None


# The job types of the big-ledger benches (bench/ledger_load.py): they only need to be
# known, so that a retry of one can be built; none is meant to run.
def _register_ledger_types():
    for name in ("bench.email", "bench.report", "bench.webhook", "bench.resize", "bench.rare"):
        job(name)(lambda ctx, **payload: None)


_register_ledger_types()
