"""The Python API as the README documents it: history, wait, workers, priorities of jobs
due together, queue names, a past run_at, and a job enqueuing on its own adapter."""

import time

import pytest

from adapters import (
    Capability,
    JobNotFound,
    JobOptions,
    JobState,
    SwitchyardError,
    WaitTimeout,
)
from tests.conformance.conftest import needs


def test_history_is_the_tenants_own_and_unknown_ids_are_not_found(engine):
    engine.start_worker()
    info = engine.adapter.enqueue("t.echo", {}, tenant="acme")
    engine.wait_for(info.id)
    states = [e["state"] for e in engine.adapter.history(info.id, tenant="acme")]
    assert states[0] == "queued" and states[-1] == "succeeded"
    with pytest.raises(JobNotFound):
        engine.adapter.history(info.id, tenant="globex")
    with pytest.raises(JobNotFound):
        engine.adapter.history("0" * 32)


def test_wait_returns_the_final_job(engine):
    engine.start_worker()
    info = engine.adapter.enqueue("t.echo", {"n": 1}, tenant="acme")
    done = engine.adapter.wait(info.id, timeout=30, tenant="acme")
    assert done.state is JobState.SUCCEEDED and done.result["echo"] == {"n": 1}
    with pytest.raises(JobNotFound):
        engine.adapter.wait(info.id, timeout=30, tenant="globex")
    with pytest.raises(JobNotFound):
        engine.adapter.wait("0" * 32, timeout=30)


def test_wait_gives_up_with_a_timeout_error(engine):
    needs(engine, Capability.DELAY)
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(delay=3600))
    with pytest.raises(WaitTimeout, match="still scheduled") as raised:
        engine.adapter.wait(info.id, timeout=0.2)
    assert isinstance(raised.value, TimeoutError) and isinstance(raised.value, SwitchyardError)


def test_wait_for_workers_sees_a_worker_come_up(engine):
    needs(engine, Capability.QUEUES)
    with pytest.raises(WaitTimeout):
        engine.adapter.wait_for_workers(1, timeout=0.2, queue="alpha")
    worker = engine.start_worker(queues=("alpha",), wait=False)
    live = engine.adapter.wait_for_workers(1, timeout=30, queue="alpha")
    mine = [w for w in live if w.pid == worker.proc.pid]
    assert mine and mine[0].queues == ["alpha"] and mine[0].backend == engine.adapter.name
    assert mine[0].role == "worker" and mine[0].concurrency == 1
    assert any(w.pid == worker.proc.pid for w in engine.adapter.workers())


def test_jobs_due_together_start_high_first(engine):
    needs(engine, Capability.PRIORITIES, Capability.DELAY)
    engine.start_worker(concurrency=1)
    run_at = time.time() + 2  # one instant for all: they are released as one batch
    jobs = [("t.echo", {"tag": priority}, JobOptions(run_at=run_at, priority=priority))
            for priority in ["low"] * 5 + ["high"] * 5]
    for info in engine.adapter.enqueue_many(jobs):
        engine.wait_for(info.id)
    assert engine.redis.lrange("test:order", 0, -1) == ["high"] * 5 + ["low"] * 5


def test_a_queue_named_like_another_queues_priority_is_its_own(engine):
    needs(engine, Capability.QUEUES, Capability.PRIORITIES)
    engine.start_worker(queues=("default",))
    lookalikes = [engine.adapter.enqueue("t.echo", {}, JobOptions(queue=name))
                  for name in ("default.high", "default.low")]
    # served after anything of default's own, high or low, that came before it
    marker = engine.adapter.enqueue("t.echo", {}, JobOptions(priority="low"))
    assert engine.wait_for(marker.id).state is JobState.SUCCEEDED
    assert [engine.adapter.get(i.id).state for i in lookalikes] == [JobState.QUEUED] * 2
    engine.start_worker(queues=("default.high", "default.low"))
    assert [engine.wait_for(i.id).state for i in lookalikes] == [JobState.SUCCEEDED] * 2


def test_a_run_at_in_the_past_is_kept_as_asked(engine):
    engine.start_worker()
    asked = time.time() - 60
    info = engine.adapter.enqueue("t.echo", {}, JobOptions(run_at=asked))
    assert info.state in (JobState.QUEUED, JobState.SUCCEEDED)  # inline has run it
    assert info.run_at.timestamp() == pytest.approx(asked)
    done = engine.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED and done.run_at.timestamp() == pytest.approx(asked)


def test_a_job_enqueues_on_its_own_adapter_whatever_the_environment_says(engine):
    # started with --backend only: QUEUE_BACKEND would name another engine, or rq
    engine.start_worker(env={"QUEUE_BACKEND": None})
    parent = engine.adapter.enqueue("t.spawn", {}, tenant="acme")
    done = engine.wait_for(parent.id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result["adapter"] == engine.adapter.name
    child = engine.wait_for(done.result["child"])
    assert child.state is JobState.SUCCEEDED and child.backend == engine.adapter.name
    assert child.tenant == "acme" and child.links == {"parent": parent.id}
