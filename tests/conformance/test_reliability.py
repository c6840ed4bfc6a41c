"""Cases 11 and 12: JSON only on the broker; workers killed mid-job."""

from adapters import Capability, JobState
from tests.conformance.conftest import needs
from tests.harness import wait_until


def test_pickled_message_in_the_broker_is_refused_never_run(engine, tmp_path):
    needs(engine, Capability.JSON_ONLY)
    worker = engine.start_worker(concurrency=1)
    marker = tmp_path / "unpickled"
    engine.inject_pickled("default", str(marker))
    # one worker, one queue, FIFO: once this runs, the pickled message has been handled
    after = engine.adapter.enqueue("t.echo", {"tag": "after"})
    assert engine.wait_for(after.id).state is JobState.SUCCEEDED
    assert not marker.exists(), "a worker unpickled a message"
    assert worker.alive()
    assert engine.redis.lrange("test:order", 0, -1) == ["after"]


def test_job_whose_worker_is_killed_runs_again_when_a_worker_returns(engine):
    needs(engine, Capability.CRASH_RECOVERY)
    worker = engine.start_worker()
    info = engine.adapter.enqueue("t.crash_once", {"key": "test:pid"})
    wait_until(lambda: engine.redis.get("test:pid"), message="the job to start")
    assert engine.adapter.get(info.id).state is JobState.STARTED
    worker.kill()
    engine.start_worker()
    done = engine.wait_for(info.id, timeout=30)
    assert done.state is JobState.SUCCEEDED
    assert done.attempts == 2 and done.result == {"attempt": 2}
    assert done.lost_deliveries == 1


def test_job_that_kills_its_worker_every_time_fails_after_capped_deliveries(engine):
    needs(engine, Capability.CRASH_RECOVERY)
    engine.start_worker()
    info = engine.adapter.enqueue("t.suicide", {})
    done = engine.wait_for(info.id, timeout=60)
    assert done.state is JobState.FAILED
    assert done.error["type"] == "WorkerLost"
    cap = engine.settings.max_lost_deliveries
    assert done.lost_deliveries == cap
    assert engine.redis.llen(f"test:runs:{info.id}") == cap


def test_delivery_taken_by_a_worker_that_died_before_claiming_runs_within_a_lease(engine):
    needs(engine, Capability.CRASH_RECOVERY)
    info = engine.take_delivery_and_die(lambda: engine.adapter.enqueue("t.echo", {"tag": "x"}))
    assert engine.adapter.get(info.id).state is JobState.QUEUED
    engine.start_worker()
    # Not the broker's visibility timeout (an hour on Redis): a few leases at most.
    done = engine.wait_for(info.id, timeout=engine.settings.lease_seconds * 4 + 10)
    assert done.state is JobState.SUCCEEDED
    assert done.attempts == 1  # it had never started
    assert engine.redis.llen(f"test:runs:{info.id}") == 1


def test_claimed_deliveries_leave_no_note_in_hand_for_the_sweep(engine):
    """A delivery noted in hand as the worker took it (Redis brokers forget a message once
    handed out) has its note taken out by its claim: the maintenance sweep reads only
    the notes of deliveries that were never claimed, not one per job run."""
    needs(engine, Capability.CRASH_RECOVERY)
    engine.start_worker()
    infos = [engine.adapter.enqueue("t.echo", {"tag": str(n)}) for n in range(5)]
    for info in infos:
        assert engine.wait_for(info.id).state is JobState.SUCCEEDED
    key = engine.adapter.engine.in_hand_key
    if key is not None:
        assert engine.redis.zcard(key) == 0, engine.redis.zrange(key, 0, -1)
    assert engine.adapter.recover_stranded() == 0
