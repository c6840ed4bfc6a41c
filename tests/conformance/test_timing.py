"""Cases 3, 4, 5: delays, expiry, hard timeouts, progress while running."""

import time
from datetime import datetime, timedelta, timezone

from adapters import Capability, JobOptions, JobState
from tests.conformance.conftest import needs
from tests.harness import never_started, wait_until


def test_delayed_job_is_not_run_early(engine):
    needs(engine, Capability.DELAY)
    engine.start_worker()
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(delay=1.5))
    assert info.state is JobState.SCHEDULED
    due = info.created_at.timestamp() + 1.5
    while time.time() < due - 0.3:
        assert engine.adapter.get(info.id).state is JobState.SCHEDULED
        time.sleep(0.05)
    done = engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED
    assert done.started_at.timestamp() >= due
    assert engine.states(info.id) == ["scheduled", "queued", "started", "succeeded"]


def test_run_at_holds_the_job_until_then(engine):
    needs(engine, Capability.DELAY)
    engine.start_worker()
    when = datetime.now(timezone.utc) + timedelta(seconds=1.2)
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(run_at=when))
    assert info.state is JobState.SCHEDULED and info.run_at == when
    done = engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED and done.started_at >= when


def test_expired_queued_job_is_canceled_and_never_runs(engine):
    needs(engine, Capability.EXPIRY, Capability.QUEUES)
    engine.start_worker(["default"])  # reaps expiry for every queue
    expires = time.time() + 1.0
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(queue="idle", expires_at=expires))
    done = engine.wait_for(info.id)
    assert done.state is JobState.CANCELED and done.cancel_reason == "expired"
    # a worker for that queue arrives later: the stale delivery must not run
    engine.start_worker(["idle"])
    sentinel = engine.adapter.enqueue("t.echo", {}, JobOptions(queue="idle"))
    assert engine.wait_for(sentinel.id).state is JobState.SUCCEEDED
    assert never_started(engine.adapter.get(info.id))
    assert not engine.redis.exists(f"test:runs:{info.id}")


def test_scheduled_job_not_started_before_expiry_is_canceled(engine):
    needs(engine, Capability.EXPIRY, Capability.DELAY, Capability.QUEUES)
    engine.start_worker()  # listens to "default" only, so "idle" jobs wait
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(queue="idle", delay=0.5,
                                                           expires_at=time.time() + 1.0))
    assert info.state is JobState.SCHEDULED
    done = engine.wait_for(info.id)
    assert done.state is JobState.CANCELED and done.cancel_reason == "expired"
    assert never_started(done)
    assert engine.states(info.id) == ["scheduled", "queued", "canceled"]


def test_hard_timeout_stops_and_fails_the_job(engine):
    needs(engine, Capability.TIMEOUTS)
    engine.start_worker()
    info = engine.adapter.enqueue("t.sleep", {"seconds": 30, "key": "test:slept"},
                                  JobOptions(timeout=1))
    done = engine.wait_for(info.id, timeout=25)
    assert done.state is JobState.FAILED
    assert done.error["type"] == "JobTimeout"
    assert done.attempts == 1
    assert (done.finished_at - done.started_at).total_seconds() < 30
    assert not engine.redis.exists("test:slept")


def test_timed_out_job_is_retried_per_its_policy(engine):
    needs(engine, Capability.TIMEOUTS, Capability.RETRIES)
    engine.start_worker()
    info = engine.adapter.enqueue("t.sleep", {"seconds": 30}, JobOptions(timeout=0.5,
                                                                         max_retries=1))
    done = engine.wait_for(info.id, timeout=25)
    assert done.state is JobState.FAILED and done.error["type"] == "JobTimeout"
    assert done.attempts == 2
    assert engine.states(info.id).count("retrying") == 1


def test_progress_is_readable_while_the_job_runs(engine):
    needs(engine, Capability.PROGRESS)
    engine.start_worker()
    info = engine.adapter.enqueue("t.progress", {"gate": "test:gate"})
    running = wait_until(lambda: (lambda j: j if j.progress else None)(engine.adapter.get(info.id)),
                         message="first progress report")
    assert running.state is JobState.STARTED
    assert running.progress == {"current": 1, "total": 3, "message": "first third"}
    engine.redis.set("test:gate", "open")
    done = engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED
    assert done.progress == {"current": 3, "total": 3, "message": "done"}
