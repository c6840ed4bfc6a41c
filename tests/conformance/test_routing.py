"""Cases 9 and 10: named queues, priorities, a global rate limit."""

from adapters import Capability, JobOptions, JobState
from tests.conformance.conftest import needs
from tests.harness import never_started


def test_worker_runs_only_the_queues_it_listens_to(engine):
    needs(engine, Capability.QUEUES)
    engine.start_worker(["alpha"])
    beta = engine.adapter.enqueue("t.echo", {"tag": "b"}, JobOptions(queue="beta"))
    alphas = [engine.adapter.enqueue("t.named", {"tag": f"a{i}"}) for i in range(3)]
    assert {a.queue for a in alphas} == {"alpha"}  # the definition's queue
    for a in alphas:
        assert engine.wait_for(a.id).state is JobState.SUCCEEDED
    assert engine.adapter.get(beta.id).state is JobState.QUEUED
    assert never_started(engine.adapter.get(beta.id))
    engine.start_worker(["beta"])
    assert engine.wait_for(beta.id).state is JobState.SUCCEEDED


def test_high_priority_runs_before_low(engine):
    needs(engine, Capability.PRIORITIES)
    jobs = []
    for priority in ("low", "default", "high"):
        for i in range(2):
            jobs.append(engine.adapter.enqueue("t.echo", {"tag": f"{priority}{i}"},
                                               JobOptions(priority=priority)))
    engine.start_worker(concurrency=1)
    for j in jobs:
        engine.wait_for(j.id)
    order = engine.redis.lrange("test:order", 0, -1)
    assert [tag[:-1] for tag in order] == ["high"] * 2 + ["default"] * 2 + ["low"] * 2, order


def test_rate_limit_holds_across_two_worker_processes(engine):
    needs(engine, Capability.RATE_LIMIT)
    engine.start_worker(concurrency=1)
    engine.start_worker(concurrency=1)
    jobs = [engine.adapter.enqueue("t.rated", {"i": i}) for i in range(12)]
    done = [engine.wait_for(j.id, timeout=30) for j in jobs]
    assert all(d.state is JobState.SUCCEEDED for d in done)
    starts = sorted(d.started_at.timestamp() for d in done)
    # "5/s": no six starts inside any one-second window, whoever ran them
    for i in range(len(starts) - 5):
        assert starts[i + 5] - starts[i] >= 1.0 - 1e-6, starts
    assert len({d.worker for d in done}) == 2
