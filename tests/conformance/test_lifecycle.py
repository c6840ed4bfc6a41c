"""Cases 1, 2, 7, 8: the job lifecycle, failures and retries, replay, idempotency."""

import pytest

from adapters import Capability, InvalidState, JobNotFound, JobOptions, JobState
from tests.conformance.conftest import needs


def test_enqueue_runs_to_success_with_json_result(engine):
    engine.start_worker()
    info = engine.adapter.enqueue("t.echo", {"n": 1, "word": "héllo"}, tenant="acme")
    assert info.state in (JobState.QUEUED, JobState.STARTED, JobState.SUCCEEDED)
    assert info.tenant == "acme" and info.backend == engine.adapter.name

    done = engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"echo": {"n": 1, "word": "héllo"}, "attempt": 1}
    assert done.attempts == 1 and done.error is None
    assert done.created_at <= done.started_at <= done.finished_at
    assert engine.states(info.id) == ["queued", "started", "succeeded"]
    assert engine.redis.lrange(f"test:runs:{info.id}", 0, -1) == ["1"]


def test_unknown_and_foreign_ids_are_not_found(engine):
    with pytest.raises(JobNotFound):
        engine.adapter.get("0" * 32)
    info = engine.adapter.enqueue("t.echo", {}, tenant="acme")
    with pytest.raises(JobNotFound):
        engine.adapter.get(info.id, tenant="someone-else")
    assert engine.adapter.get(info.id, tenant="acme").id == info.id


def test_exception_fails_the_job_with_type_and_message(engine):
    engine.start_worker()
    info = engine.adapter.enqueue("t.boom", {"message": "it broke"})
    done = engine.wait_for(info.id)
    assert done.state is JobState.FAILED
    assert done.error["type"] == "ValueError"
    assert done.error["message"] == "it broke"
    assert done.attempts == 1
    assert engine.states(info.id) == ["queued", "started", "failed"]


def test_retries_back_off_exponentially_then_succeed(engine):
    needs(engine, Capability.RETRIES)
    engine.start_worker()
    info = engine.adapter.enqueue("t.flaky", {"fail_times": 2})
    done = engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED and done.result == 3
    assert done.attempts == 3
    states = engine.states(info.id)
    assert states.count("retrying") == 2 and states.count("started") == 3
    assert states[-1] == "succeeded"
    runs = [float(t) for t in engine.redis.lrange(f"test:runs:{info.id}", 0, -1)]
    assert len(runs) == 3
    # backoff 0.3s doubling, jittered within [d/2, d]: at least 0.15s, then 0.3s
    assert runs[1] - runs[0] >= 0.15
    assert runs[2] - runs[1] >= 0.3


def test_retries_stop_at_max_retries(engine):
    needs(engine, Capability.RETRIES)
    engine.start_worker()
    info = engine.adapter.enqueue("t.flaky", {"fail_times": 10}, JobOptions(max_retries=2))
    done = engine.wait_for(info.id)
    assert done.state is JobState.FAILED
    assert done.attempts == 3
    assert done.error["type"] == "TransientError"
    assert engine.redis.llen(f"test:runs:{info.id}") == 3


def test_only_listed_exception_types_are_retried(engine):
    needs(engine, Capability.RETRIES)
    engine.start_worker()
    info = engine.adapter.enqueue("t.fatal", {})
    done = engine.wait_for(info.id)
    assert done.state is JobState.FAILED and done.attempts == 1
    assert done.error["type"] == "PermanentError"
    assert "retrying" not in engine.states(info.id)


def test_retry_of_failed_job_runs_again_as_new_job(engine):
    needs(engine, Capability.RETRY_FAILED)
    engine.start_worker()
    first = engine.adapter.enqueue("t.switch", {"flag": "test:switch"}, tenant="acme")
    failed = engine.wait_for(first.id)
    assert failed.state is JobState.FAILED

    engine.redis.set("test:switch", "1")
    again = engine.adapter.retry(first.id, tenant="acme")
    assert again.id != first.id and again.retry_of == first.id
    assert (again.type, again.payload, again.tenant) == (first.type, first.payload, "acme")
    done = engine.wait_for(again.id)
    assert done.state is JobState.SUCCEEDED and done.attempts == 1 and done.result == "on"
    assert engine.adapter.get(first.id).state is JobState.FAILED
    with pytest.raises(InvalidState):
        engine.adapter.retry(again.id)


def test_idempotency_key_returns_first_job_and_runs_once(engine):
    needs(engine, Capability.IDEMPOTENCY)
    engine.start_worker()
    opts = JobOptions(idempotency_key="order-42")
    first = engine.adapter.enqueue("t.count", {"key": "k"}, opts, tenant="acme")
    second = engine.adapter.enqueue("t.count", {"key": "k"}, opts, tenant="acme")
    assert second.id == first.id
    engine.wait_for(first.id)
    third = engine.adapter.enqueue("t.count", {"key": "k"}, opts, tenant="acme")
    assert third.id == first.id
    # the same key in another tenant is another job
    other = engine.adapter.enqueue("t.count", {"key": "other"}, opts, tenant="globex")
    assert other.id != first.id
    engine.wait_for(other.id)
    assert engine.redis.get("test:count:k") == "1"
    assert engine.adapter.get(first.id).result == 1
