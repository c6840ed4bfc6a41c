"""Pausing a queue: its jobs stay queued (delivered or not) until it is resumed, then
each runs once; other queues carry on; cancel and an interrupted resume still work."""

from adapters import Capability, JobOptions, JobState
from tests.conformance.conftest import needs
from tests.harness import never_started, wait_until


def parked(engine, job_id: str) -> bool:
    """True once a worker's claim found the job's queue paused (its history says so)."""
    return any(e.get("reason") == "queue_paused" for e in engine.adapter.history(job_id))


def wait_parked(engine, job_ids: list[str]) -> None:
    wait_until(lambda: all(parked(engine, j) for j in job_ids), 20, 0.05,
               f"jobs {job_ids} to reach a worker and be parked")
    for job_id in job_ids:
        info = engine.adapter.get(job_id)
        assert info.state is JobState.QUEUED and never_started(info), info
        assert engine.redis.llen(f"test:runs:{job_id}") == 0


def ran_once(engine, job_id: str) -> None:
    info = engine.wait_for(job_id)
    assert info.state is JobState.SUCCEEDED and info.attempts == 1, info
    assert engine.redis.lrange(f"test:runs:{job_id}", 0, -1) == ["1"]


def test_a_paused_queue_holds_its_jobs_until_resumed_while_another_queue_runs(engine):
    needs(engine, Capability.PAUSE_QUEUES, Capability.QUEUES)
    queues = engine.adapter.queues()
    paused = queues.pause("alpha", by="conformance")
    assert paused.paused and paused.paused_by == "conformance"
    assert queues.pause("alpha", by="someone else").paused_by == "conformance"  # idempotent
    engine.start_worker(["alpha", "beta"])
    held = [engine.adapter.enqueue("t.echo", {"i": i}, JobOptions(queue="alpha"))
            for i in range(3)]
    other = [engine.adapter.enqueue("t.echo", {"i": i}, JobOptions(queue="beta"))
             for i in range(3)]
    for job in other:
        ran_once(engine, job.id)
    wait_parked(engine, [j.id for j in held])
    listed = {q.name: q for q in queues.list()}
    assert listed["alpha"].paused and listed["alpha"].queued == 3
    assert not listed["beta"].paused and listed["beta"].queued == 0
    assert set(queues.paused()) == {"alpha"}
    assert set(engine.adapter.queue_stats().paused) == {"alpha"}
    assert engine.adapter.queue_stats().backlog["alpha"][0] == 3

    resumed = queues.resume("alpha")
    assert not resumed.paused and queues.paused() == {}
    for job in held:
        ran_once(engine, job.id)
    assert queues.get("alpha").queued == 0


def test_a_job_delivered_before_the_pause_is_parked_not_run(engine):
    needs(engine, Capability.PAUSE_QUEUES)
    engine.start_worker(concurrency=1)
    busy = engine.adapter.enqueue("t.progress", {"gate": "test:gate"})
    engine.wait_for(busy.id, states={JobState.STARTED})
    # the worker is busy: this one waits in the broker, or prefetched by the worker
    waiting = engine.adapter.enqueue("t.echo", {"tag": "w"})
    engine.adapter.queues().pause("default")
    engine.redis.set("test:gate", "1")
    assert engine.wait_for(busy.id).state is JobState.SUCCEEDED
    wait_parked(engine, [waiting.id])
    engine.adapter.queues().resume("default")
    ran_once(engine, waiting.id)


def test_a_parked_job_can_be_canceled_and_never_runs(engine):
    needs(engine, Capability.PAUSE_QUEUES, Capability.CANCEL_QUEUED)
    engine.adapter.queues().pause("default")
    engine.start_worker()
    doomed = engine.adapter.enqueue("t.echo", {"tag": "doomed"})
    wait_parked(engine, [doomed.id])
    assert engine.adapter.cancel(doomed.id).state is JobState.CANCELED
    assert engine.adapter.queues().get("default").queued == 0
    engine.adapter.queues().resume("default")
    after = engine.adapter.enqueue("t.echo", {"tag": "after"})
    ran_once(engine, after.id)
    assert engine.adapter.get(doomed.id).state is JobState.CANCELED
    assert engine.redis.llen(f"test:runs:{doomed.id}") == 0


def test_a_resume_cut_short_is_finished_by_the_workers_maintenance(engine):
    needs(engine, Capability.PAUSE_QUEUES)
    engine.adapter.queues().pause("default")
    engine.start_worker()
    jobs = [engine.adapter.enqueue("t.echo", {"i": i}) for i in range(3)]
    wait_parked(engine, [j.id for j in jobs])
    # a resume whose process died right after lifting the flag: nothing re-published
    engine.redis.hdel(f"{engine.settings.namespace}paused", "default")
    for job in jobs:
        ran_once(engine, job.id)
