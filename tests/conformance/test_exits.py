"""A job that leaves its worker's way: sys.exit, KeyboardInterrupt, MemoryError, os._exit.

Each is one clear outcome, and the job runs no more often than its policy says: the
first three are failures of the attempt (the worker lives on; MemoryError is an
Exception, so it is retried like one), os._exit takes the worker process down with
it, which the ledger sees as a lost delivery (capped at SWITCHYARD_MAX_LOST_DELIVERIES).
"""

import pytest

from adapters import Capability, JobState
from tests.conformance.conftest import needs


@pytest.mark.parametrize("how, error, runs", [
    ("sys.exit", "SystemExit", 1),
    ("KeyboardInterrupt", "KeyboardInterrupt", 1),
    ("MemoryError", "MemoryError", 3),  # max_retries=2: three attempts
])
def test_a_job_that_exits_fails_that_attempt_and_the_worker_carries_on(engine, how, error, runs):
    needs(engine, Capability.RETRIES)
    worker = engine.start_worker()
    info = engine.adapter.enqueue("t.exits", {"how": how})
    done = engine.wait_for(info.id, timeout=30)
    assert done.state is JobState.FAILED, done
    assert done.error["type"] == error
    assert done.attempts == runs and done.lost_deliveries == 0
    assert engine.redis.llen(f"test:runs:{info.id}") == runs
    if worker is not None:
        assert worker.alive(), worker.log()
        after = engine.adapter.enqueue("t.echo", {"tag": "after"})
        assert engine.wait_for(after.id).state is JobState.SUCCEEDED


def test_a_job_that_calls_os_exit_is_a_lost_delivery_capped_like_a_crash(engine):
    needs(engine, Capability.CRASH_RECOVERY)
    engine.start_worker()
    info = engine.adapter.enqueue("t.exits", {"how": "os._exit"})
    done = engine.wait_for(info.id, timeout=60)
    assert done.state is JobState.FAILED
    assert done.error["type"] == "WorkerLost"
    cap = engine.settings.max_lost_deliveries
    assert done.lost_deliveries == cap
    assert engine.redis.llen(f"test:runs:{info.id}") == cap
