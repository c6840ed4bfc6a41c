"""Case 6: cancel scheduled, queued and running jobs; cancels survive worker restarts."""

import pytest

from adapters import Capability, InvalidState, JobOptions, JobState
from tests.conformance.conftest import needs
from tests.harness import never_started


def test_canceled_scheduled_job_never_runs(engine):
    needs(engine, Capability.CANCEL_QUEUED, Capability.DELAY)
    engine.start_worker()
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(delay=1.0))
    canceled = engine.adapter.cancel(info.id)
    assert canceled.state is JobState.CANCELED and canceled.cancel_reason == "requested"
    # a job due later than the canceled one proves the worker went past its time
    sentinel = engine.adapter.enqueue("t.echo", {}, JobOptions(delay=1.3))
    assert engine.wait_for(sentinel.id).state is JobState.SUCCEEDED
    assert never_started(engine.adapter.get(info.id))
    assert not engine.redis.exists(f"test:runs:{info.id}")


def test_cancel_of_queued_job_survives_a_worker_restart(engine):
    needs(engine, Capability.CANCEL_QUEUED)
    worker = engine.start_worker()
    worker.stop()
    info = engine.adapter.enqueue("t.echo", {"tag": "canceled"})
    assert engine.adapter.cancel(info.id).state is JobState.CANCELED
    engine.start_worker()
    sentinel = engine.adapter.enqueue("t.echo", {"tag": "sentinel"})
    assert engine.wait_for(sentinel.id).state is JobState.SUCCEEDED
    assert never_started(engine.adapter.get(info.id))
    assert engine.redis.lrange("test:order", 0, -1) == ["sentinel"]


def test_cancel_of_running_job_stops_it(engine):
    needs(engine, Capability.CANCEL_RUNNING)
    engine.start_worker()
    info = engine.adapter.enqueue("t.sleep", {"seconds": 30, "key": "test:slept"})
    engine.wait_for(info.id, states={JobState.STARTED})
    engine.adapter.cancel(info.id)
    done = engine.wait_for(info.id, timeout=10)
    assert done.state is JobState.CANCELED and done.cancel_reason == "requested"
    assert (done.finished_at - done.started_at).total_seconds() < 30
    assert not engine.redis.exists("test:slept")
    # the worker is free again
    after = engine.adapter.enqueue("t.echo", {})
    assert engine.wait_for(after.id).state is JobState.SUCCEEDED


def test_cancel_of_finished_job_is_refused(engine):
    engine.start_worker()
    info = engine.adapter.enqueue("t.echo", {})
    engine.wait_for(info.id)
    with pytest.raises(InvalidState) as err:
        engine.adapter.cancel(info.id)
    assert err.value.state == "succeeded"
