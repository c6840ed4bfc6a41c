"""The raw RQ baseline's job functions (no Switchyard anywhere)."""

import time


def noop():
    """Do nothing."""
    return None


def sleep(seconds=0.05):
    """Sleep in one blocking call."""
    time.sleep(seconds)
    return None
