"""Switchyard's RQ workers skip RQ's bookkeeping for Switchyard's jobs, yet RQ still
sees its workers and queues, runs any other job its own way, and a lost job recovers.

Both worker classes: ``simple`` (the default, no fork per job) and ``fork``.
"""

import contextlib
import os
import signal

import pytest
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from adapters import JobState
from tests.harness import Engine, wait_until
import tests.conformance.jobs  # noqa: F401 - the job types enqueued here


@pytest.fixture(params=["simple", "fork"])
def rq_engine(request, redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)  # the test jobs log to it
    eng = Engine("rq", redis_url, None, tmp_path)
    eng.worker_args = ("--worker-class", request.param)
    yield eng
    eng.close()


def start(eng: Engine, **kwargs):
    return eng.start_worker(args=eng.worker_args, **kwargs)


def rq_keys(eng: Engine, pattern: str) -> list[str]:
    return sorted(eng.redis.scan_iter(pattern))


def test_jobs_leave_no_rq_records_but_rq_sees_the_workers(rq_engine):
    eng = rq_engine
    start(eng, concurrency=2)
    infos = [eng.adapter.enqueue("t.echo", {"n": n}) for n in range(6)]
    for info in infos:
        assert eng.wait_for(info.id).state is JobState.SUCCEEDED

    for pattern in ("rq:job:*", "rq:execution*", "rq:results:*", "rq:wip:*", "rq:finished:*"):
        assert rq_keys(eng, pattern) == [], pattern
    conn = eng.adapter.engine.rq_redis
    queue_names = eng.adapter.engine.worker_queue_names(["default"])
    workers = wait_until(lambda: len(Worker.all(connection=conn)) == 2 and Worker.all(connection=conn),
                         message="both RQ workers to register")
    assert all(w.queue_names() == queue_names for w in workers)
    assert {q.name for q in Queue.all(connection=conn)} >= {eng.prefix + "default"}
    # a fork worker counts a job once its work horse has exited, a moment after the ledger
    # has the job succeeded: stop them once both are idle again
    wait_until(lambda: all(w.get_state() == "idle" for w in Worker.all(connection=conn)),
               message="both RQ workers idle")

    eng.stop_workers()
    # A worker reports its batched counts when it dies; RQ keeps its hash a minute.
    dead = [eng.redis.hgetall(key) for key in rq_keys(eng, "rq:worker:*")
            if eng.redis.type(key) == "hash"]
    assert len(dead) == 2 and all("death" in w for w in dead)
    assert sum(int(w.get("successful_job_count", 0)) for w in dead) == len(infos)


def test_any_other_rq_job_takes_rqs_own_path(rq_engine):
    eng = rq_engine
    start(eng)
    queue = Queue(eng.adapter.engine.worker_queue_names(["default"])[1],
                  connection=eng.adapter.engine.rq_redis, serializer=JSONSerializer)
    job = queue.enqueue("os.getpid", result_ttl=60)
    wait_until(lambda: job.get_status() == JobStatus.FINISHED, message="the RQ job to finish")
    assert job.id in FinishedJobRegistry(queue=queue).get_job_ids()
    assert Job.fetch(job.id, connection=eng.adapter.engine.rq_redis,
                     serializer=JSONSerializer).return_value() > 0


def test_rq_suspend_holds_jobs_until_resume(rq_engine):
    eng = rq_engine
    conn = eng.adapter.engine.rq_redis
    suspend(conn)
    start(eng)
    wait_until(lambda: [w.get_state() for w in Worker.all(connection=conn)] == ["suspended"],
               message="the worker to report itself suspended")
    held = eng.adapter.enqueue("t.echo", {})
    resume(conn)
    assert eng.wait_for(held.id).state is JobState.SUCCEEDED


def test_job_whose_worker_is_killed_runs_again(rq_engine):
    eng = rq_engine
    worker = start(eng)
    info = eng.adapter.enqueue("t.crash_once", {"key": "test:pid"})
    pid = int(wait_until(lambda: eng.redis.get("test:pid"), message="the job to start"))
    worker.kill()
    with contextlib.suppress(ProcessLookupError):  # a forked horse has its own group
        os.kill(pid, signal.SIGKILL)
    start(eng)
    done = eng.wait_for(info.id, timeout=30)
    assert done.state is JobState.SUCCEEDED
    assert done.attempts == 2 and done.lost_deliveries == 1
    assert rq_keys(eng, "rq:job:*") == []


def test_killed_work_horse_leaves_its_worker_running(redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    eng = Engine("rq", redis_url, None, tmp_path)
    try:
        worker = eng.start_worker(args=("--worker-class", "fork"))
        info = eng.adapter.enqueue("t.suicide", {})
        done = eng.wait_for(info.id, timeout=60)
        assert done.state is JobState.FAILED and done.error["type"] == "WorkerLost"
        assert done.lost_deliveries == eng.settings.max_lost_deliveries
        assert worker.alive()
        after = eng.adapter.enqueue("t.echo", {})
        assert eng.wait_for(after.id).state is JobState.SUCCEEDED
    finally:
        eng.close()


def test_a_new_job_and_its_delivery_commit_together_with_no_guard(rq_engine):
    eng = rq_engine
    ns = eng.settings.namespace
    infos = [eng.adapter.enqueue("t.echo", {"n": 1})] + eng.adapter.enqueue_many(
        [("t.echo", {"n": n}, None) for n in range(2, 5)])
    # every record came with its RQ delivery, and no dispatch guard was needed
    assert eng.redis.zcard(f"{ns}dispatching") == 0
    assert eng.adapter.engine.rq_redis.llen(f"rq:queue:{eng.prefix}default") == len(infos)
    start(eng)
    for info in infos:
        assert eng.wait_for(info.id).state is JobState.SUCCEEDED


def test_enqueue_after_redis_lost_its_scripts_runs_the_job_once(rq_engine):
    eng = rq_engine
    eng.adapter.enqueue("t.echo", {})  # the create script is loaded and in use
    eng.redis.script_flush()  # as after a Redis restart
    info = eng.adapter.enqueue("t.count", {"key": "flushed"})
    # The call that met the missing script wrote nothing (the RQ job rides in it:
    # adapters/riders.py); the retry wrote the record and its one delivery. (Before,
    # the MULTI's other commands still pushed the RQ job: a second delivery.)
    assert eng.adapter.engine.rq_redis.llen(f"rq:queue:{eng.prefix}default") == 2
    start(eng)
    done = eng.wait_for(info.id)
    assert done.state is JobState.SUCCEEDED and done.attempts == 1
    # whichever delivery claims it first runs it; the other is dropped
    marker = eng.adapter.enqueue("t.echo", {})
    assert eng.wait_for(marker.id).state is JobState.SUCCEEDED
    assert eng.redis.get("test:count:flushed") == "1"
