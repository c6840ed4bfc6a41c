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
