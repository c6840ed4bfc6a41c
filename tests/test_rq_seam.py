"""The seam between Switchyard and RQ's internals (see ``adapters/rq_glue.py``).

First, without Redis: every RQ and rq-scheduler method the glue overrides or calls
still exists on the installed release with the parameters the glue expects, and every
override in the glue is listed here. An RQ release that renames or reshapes one fails
with the method's name and both parameter lists. Then, against a real redis-server,
one check per group of overrides that RQ still calls them as the glue needs: RQ's
work loop through the lean worker hooks, RQ's dequeue through the in-hand pop, RQ's
enqueue through the one-write persist, the pub/sub thread's signal mask, and
rq-scheduler's beat.
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from importlib.metadata import version

import pytest
import redis
import rq_scheduler
from rq import Queue, SimpleWorker, Worker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker.base import BaseWorker
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

from adapters import JobState
from adapters import rq_glue
from adapters.rq_glue import (
    LedgerScheduler,
    _LeanBookkeeping,
    _LeanForkWorker,
    _LeanSimpleWorker,
    _Pool,
    _Queue,
    _signals_to_the_main_thread,
)
from adapters.rq_queue import _ENTRY, _Job
from tests.harness import Engine, wait_until
import tests.conformance.jobs  # noqa: F401 - the job types enqueued here

RELEASES = f"rq {version('rq')}, rq-scheduler {version('rq-scheduler')}"
Scheduler = rq_scheduler.Scheduler

# (RQ class, method, its parameter names, the glue class that overrides it or None)
OVERRIDES = [
    (BaseWorker, "heartbeat", ["self", "timeout", "pipeline"], _LeanBookkeeping),
    (BaseWorker, "register_death", ["self"], _LeanBookkeeping),
    (BaseWorker, "set_state", ["self", "state", "pipeline"], _LeanBookkeeping),
    (BaseWorker, "check_for_suspension", ["self", "burst"], _LeanBookkeeping),
    (BaseWorker, "prepare_execution", ["self", "job"], _LeanBookkeeping),
    (BaseWorker, "prepare_job_execution", ["self", "job", "remove_from_intermediate_queue"],
     _LeanBookkeeping),
    (BaseWorker, "handle_execution_ended", ["self", "job", "queue", "heartbeat_ttl"],
     _LeanBookkeeping),
    (BaseWorker, "handle_job_success",
     ["self", "job", "queue", "started_job_registry", "execution"], _LeanBookkeeping),
    (BaseWorker, "subscribe", ["self"], _signals_to_the_main_thread(SimpleWorker)),
    (Worker, "wait_for_horse", ["self"], _LeanForkWorker),
    (Worker, "execute_job", ["self", "job", "queue"], _LeanForkWorker),
    (Worker, "maintain_heartbeats", ["self", "job", "execution"], _LeanForkWorker),
    (WorkerPool, "get_worker_process", ["self", "name", "burst", "_sleep", "logging_level"], _Pool),
    (Queue, "lpop", ["queue_keys", "timeout", "connection"], _Queue),
    (Queue, "_fetch_dequeued_job", ["connection", "queue_key", "job_id", "job_class",
                                    "serializer", "death_penalty_class"], _Queue),
    (Job, "to_dict", ["self", "include_meta", "include_result"], _Job),
    (Queue, "enqueue_job", ["self", "job", "pipeline", "at_front", "unique"], _Queue),
    (Queue, "_persist_job", ["self", "job", "pipeline", "status"], _Queue),
    (Scheduler, "enqueue_jobs", ["self"], LedgerScheduler),
    (Scheduler, "_install_signal_handlers", ["self"], LedgerScheduler),
    (Scheduler, "run", ["self", "burst"], LedgerScheduler),
]

# (RQ class, method, the parameters the glue passes, by name or position)
CALLED = [
    (BaseWorker, "get_heartbeat_ttl", ["self", "job"]),
    (BaseWorker, "procline", ["self", "message"]),
    (BaseWorker, "work", ["burst", "logging_level", "with_scheduler"]),
    (BaseWorker, "__init__", ["queues", "name", "connection", "serializer", "queue_class"]),
    (WorkerPool, "__init__", ["queues", "connection", "num_workers", "worker_class", "serializer"]),
    (WorkerPool, "start", ["logging_level"]),
    (Queue, "_enqueue_job", ["self", "job", "pipeline", "at_front"]),
    (Queue, "enqueue_call", ["func", "args", "job_id", "timeout", "result_ttl", "failure_ttl",
                             "description", "pipeline"]),
    (Queue, "dequeue_any", ["queues", "timeout", "connection"]),
    (Execution, "__init__", ["self", "id", "job_id", "connection", "worker_name"]),
    (Job, "save", ["self", "pipeline"]),
    (Job, "restore", ["self", "raw_data"]),
    (Job, "__init__", ["self", "id", "connection", "serializer"]),
    (Queue, "from_queue_key", ["queue_key", "connection", "job_class", "serializer",
                               "death_penalty_class"]),
    (Job, "cleanup", ["self", "ttl", "pipeline"]),
    (Scheduler, "__init__", ["connection", "interval", "name"]),
    (Scheduler, "register_birth", ["self"]),
    (Scheduler, "heartbeat", ["self"]),
    (Scheduler, "acquire_lock", ["self"]),
    (Scheduler, "remove_lock", ["self"]),
    (Scheduler, "register_death", ["self"]),
]


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def _label(owner, method) -> str:
    return f"{owner.__module__}.{owner.__qualname__}.{method}"


@pytest.mark.parametrize("owner, method, params, glue", OVERRIDES,
                         ids=[f"{o.__name__}.{m}" for o, m, _, _ in OVERRIDES])
def test_each_overridden_rq_method_is_there_as_the_override_expects(owner, method, params, glue):
    theirs = getattr(owner, method, None)
    assert theirs is not None, f"{RELEASES}: {_label(owner, method)} is gone; {glue.__name__} overrides it"
    assert _params(theirs) == params, (
        f"{RELEASES}: {_label(owner, method)} now takes {_params(theirs)}, "
        f"the override in {glue.__name__} expects {params}")
    ours = glue.__dict__.get(method)
    assert ours is not None, f"{glue.__name__} no longer overrides {method}: update OVERRIDES"
    assert _params(getattr(glue, method)) == params, f"{glue.__name__}.{method} differs from RQ's"


@pytest.mark.parametrize("owner, method, params", CALLED,
                         ids=[f"{o.__name__}.{m}" for o, m, _ in CALLED])
def test_each_rq_method_the_glue_calls_takes_what_it_passes(owner, method, params):
    theirs = getattr(owner, method, None)
    assert theirs is not None, f"{RELEASES}: {_label(owner, method)} is gone; the RQ glue calls it"
    missing = [p for p in params if p not in _params(theirs)]
    assert not missing, (f"{RELEASES}: {_label(owner, method)} takes {_params(theirs)}, "
                         f"no longer {missing}, which the RQ glue passes")


def test_every_override_in_the_glue_is_listed_here():
    listed = {(glue.__name__, method) for _, method, _, glue in OVERRIDES}
    for glue, bases in [(_LeanBookkeeping, (SimpleWorker, Worker)), (_LeanForkWorker, (Worker,)),
                        (_Pool, (WorkerPool,)), (_Queue, (Queue,)), (_Job, (Job,)),
                        (LedgerScheduler, (Scheduler,))]:
        for name, member in vars(glue).items():
            func = member.__func__ if isinstance(member, classmethod) else member
            if inspect.isfunction(func) and any(hasattr(b, name) for b in bases):
                if name != "__init__":  # LedgerScheduler's passes everything on to RQ's
                    assert (glue.__name__, name) in listed, \
                        f"{glue.__name__}.{name} overrides RQ: add it to OVERRIDES"


# -- against a real Redis -------------------------------------------------------------------


@contextlib.contextmanager
def own_signal_handlers():
    """RQ's workers and rq-scheduler install SIGINT/SIGTERM handlers and RQ's death
    penalty resets SIGALRM: give pytest (and pytest-timeout) its own back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    timer = signal.getitimer(signal.ITIMER_REAL)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        signal.setitimer(signal.ITIMER_REAL, *timer)


@pytest.fixture
def eng(redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)  # the test jobs log to it
    engine = Engine("rq", redis_url, None, tmp_path)
    _Queue.inhand_key = engine.adapter.engine.in_hand_key
    yield engine
    rq_glue.bind_worker_engine(None)
    _Queue.waiting_worker = None
    engine.close()


def lean_worker(eng: Engine, worker_class=_LeanSimpleWorker):
    conn = eng.adapter.engine.rq_redis
    queues = [_Queue(n, connection=conn, serializer=JSONSerializer)
              for n in eng.adapter.engine.worker_queue_names(["default"])]
    return _signals_to_the_main_thread(worker_class)(
        queues, connection=conn, serializer=JSONSerializer, queue_class=_Queue)


def test_rqs_work_loop_runs_our_jobs_through_the_lean_hooks(eng):
    """RQ's own work loop, in this process: the jobs succeed, RQ keeps no record of
    them, the claims took the pops' notes in hand out, and the batched count is reported
    at death."""
    rq_glue.bind_worker_engine(eng.adapter.engine)
    infos = [eng.adapter.enqueue("t.echo", {"n": n}) for n in range(3)]
    worker = lean_worker(eng)
    with own_signal_handlers():
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")

    for info in infos:
        assert eng.adapter.get(info.id).state is JobState.SUCCEEDED
    for pattern in ("rq:job:*", "rq:execution*", "rq:results:*", "rq:wip:*", "rq:finished:*",
                    "rq:started:*"):
        assert sorted(eng.redis.scan_iter(pattern)) == [], (RELEASES, pattern)
    # each pop noted its delivery in hand (a pop nothing claims keeps it: below) and
    # each claim took its note out
    assert eng.redis.zrange(_Queue.inhand_key, 0, -1) == []
    dead = eng.redis.hgetall(worker.key)
    assert "death" in dead and dead.get("successful_job_count") == "3", dead


def test_heartbeat_is_batched_and_state_written_on_change(eng):
    worker = lean_worker(eng)
    worker.register_birth()
    worker.heartbeat()
    assert eng.redis.ttl(worker.key) > worker.worker_ttl
    eng.redis.expire(worker.key, 5)
    worker.heartbeat()  # well within the slack: nothing is sent
    assert eng.redis.ttl(worker.key) <= 5
    worker._alive_until = 0.0  # as once the slack is used up
    worker.heartbeat()
    assert eng.redis.ttl(worker.key) > worker.worker_ttl
    assert eng.redis.sismember(Queue.redis_queues_keys, worker.queues[0].key)

    worker.set_state("busy")
    eng.redis.hset(worker.key, "state", "marker")
    worker.set_state("busy")  # no change: not written again
    assert eng.redis.hget(worker.key, "state") == "marker"
    worker.set_state("idle")  # between jobs: still shown busy
    assert eng.redis.hget(worker.key, "state") == "marker"
    worker.show_idle()  # the pop found nothing and waits
    assert eng.redis.hget(worker.key, "state") == "idle"
    worker.register_death()


def test_rq_attributes_the_lean_worker_reads(eng):
    worker = lean_worker(eng)
    for attr in ("executions", "_state", "is_horse", "worker_ttl", "job_monitoring_interval",
                 "queue_class", "key", "name", "connection", "queues", "log"):
        assert hasattr(worker, attr), f"{RELEASES}: RQ's worker has no {attr!r} any more"
    assert hasattr(BaseWorker, "log_result_lifespan"), \
        f"{RELEASES}: BaseWorker.log_result_lifespan is gone (the glue turns it off)"
    pool = _Pool(["q"], connection=eng.adapter.engine.rq_redis, worker_class=_LeanSimpleWorker,
                 serializer=JSONSerializer)
    for attr in ("_queue_names", "worker_class", "name"):
        assert hasattr(pool, attr), f"{RELEASES}: RQ's WorkerPool has no {attr!r} any more"
    assert pool._queue_names == ["q"]


def test_the_pubsub_thread_blocks_sigterm_and_sigint(eng):
    worker = lean_worker(eng)
    worker.subscribe()
    try:
        thread = worker.pubsub_thread
        wait_until(lambda: thread.native_id, message="RQ's pub/sub thread to start")
        with open(f"/proc/self/task/{thread.native_id}/status") as status:
            blocked = int(next(l for l in status if l.startswith("SigBlk:")).split()[1], 16)
        for sig in (signal.SIGTERM, signal.SIGINT):
            assert blocked & (1 << (sig - 1)), f"RQ's pub/sub thread takes {sig.name}"
    finally:
        worker.unsubscribe()
    # the main thread's mask is left as it was
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def _queues(eng: Engine):
    conn = eng.adapter.engine.rq_redis
    return [_Queue(n, connection=conn, serializer=JSONSerializer)
            for n in eng.adapter.engine.worker_queue_names(["default"])]


def test_rqs_dequeue_notes_in_hand_what_it_pops(eng):
    """Through RQ's dequeue_any: a waiting job by the script, an idle wait by RQ's BLPOP."""
    conn = eng.adapter.engine.rq_redis
    queues = _queues(eng)
    waiting = queues[1].enqueue_call("os.getpid", job_id="waiting-1")
    job, queue = _Queue.dequeue_any(queues, None, connection=conn, serializer=JSONSerializer)
    assert job.id == waiting.id and queue.name == queues[1].name
    assert eng.redis.zscore(_Queue.inhand_key, waiting.id) is not None

    def push_once_blocked():
        watcher = redis.Redis(connection_pool=conn.connection_pool)
        wait_until(lambda: any(c.get("cmd") == "blpop" for c in watcher.client_list()),
                   message="the dequeue to block in BLPOP")
        queues[0].enqueue_call("os.getpid", job_id="late-1")

    pusher = threading.Thread(target=push_once_blocked)
    pusher.start()
    try:
        job, queue = _Queue.dequeue_any(queues, 10, connection=conn, serializer=JSONSerializer)
    finally:
        pusher.join()
    assert job.id == "late-1" and queue.name == queues[0].name
    assert eng.redis.zscore(_Queue.inhand_key, "late-1") is not None


def test_rqs_enqueue_in_a_pipeline_writes_a_job_rq_reads(eng):
    conn = eng.adapter.engine.rq_redis
    queue = _queues(eng)[1]
    with conn.pipeline(transaction=True) as pipe:
        queue.enqueue_call("os.getpid", args=[], job_id="piped-1", result_ttl=1, pipeline=pipe)
        pipe.execute()
    job = Job.fetch("piped-1", connection=conn, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.QUEUED and job.func_name == "os.getpid"
    assert queue.get_job_ids() == ["piped-1"]
    assert eng.redis.sismember(Queue.redis_queues_keys, queue.key)
    # outside a pipeline, RQ's own enqueue
    other = queue.enqueue_call("os.getpid", job_id="plain-1")
    assert other.get_status() == JobStatus.QUEUED and queue.get_job_ids() == ["piped-1", "plain-1"]


def _commands(pipe) -> list[tuple]:
    return [c[0] for c in pipe.command_stack]


def test_push_call_writes_what_rqs_enqueue_call_writes(eng):
    """RQEngine.publish writes each job's hash itself (_Queue.push_call), not through
    RQ's Job: the same commands, hash and fields as RQ's own enqueue_call in a
    pipeline, field by field (the times are RQ's format of the moment it is written)."""
    from rq.utils import utcparse

    conn = eng.adapter.engine.rq_redis
    queue = _queues(eng)[1]
    options = dict(timeout=310, result_ttl=1, failure_ttl=604800, description="t.echo a")
    theirs, ours = conn.pipeline(transaction=True), conn.pipeline(transaction=True)
    queue._announced_at = float("-inf")  # each announces the queue
    queue.enqueue_call(_ENTRY, args=["a" * 32, "b" * 12], job_id="a-b", pipeline=theirs,
                       **options)
    queue._announced_at = float("-inf")
    queue.push_call(ours, "a-b", ["a" * 32, "b" * 12], now="2026-12-03T09:32:38.213550Z",
                    **options)
    (t_sadd, t_hset, t_push), (o_sadd, o_hset, o_push) = _commands(theirs), _commands(ours)
    assert o_sadd == t_sadd and o_push == t_push
    assert o_hset[:2] == t_hset[:2]  # HSET and the job's key
    theirs_fields = dict(zip(t_hset[2::2], t_hset[3::2]))
    ours_fields = dict(zip(o_hset[2::2], o_hset[3::2]))
    assert set(ours_fields) == set(theirs_fields)
    for name in ("created_at", "enqueued_at"):
        utcparse(theirs_fields.pop(name)) and utcparse(ours_fields.pop(name))
    assert zlib.decompress(ours_fields.pop("data")) == zlib.decompress(theirs_fields.pop("data"))
    assert {k: str(getattr(v, "value", v)) for k, v in ours_fields.items()} == \
        {k: str(getattr(v, "value", v)) for k, v in theirs_fields.items()}
    theirs.reset()
    ours.reset()


def test_a_batch_rides_with_the_fields_its_rq_jobs_share_sent_once(eng):
    """Where RQ's queues are the ledger's Redis, a batch's RQ hashes ride in the create
    script with the fields every job of a queue shares sent once (a template), and each
    queue's ids in one RPUSH; the hashes written are push_call's, field by field.
    Before: every field of each hash and an RPUSH a job, some 45 arguments a job."""
    from adapters.validation import build_records

    adapter = eng.adapter
    specs = [("t.echo", {"n": n}, None) for n in range(50)]
    riders = adapter._riders(build_records(adapter, specs, "default", time.time()))
    assert riders.args.count("=") == 1 and riders.args.count("RPUSH") == 1
    assert len(riders.args) <= 13 * len(specs), len(riders.args)  # 11 a job, and the rest once
    [info] = adapter.enqueue_many(specs[:1])
    token = eng.redis.hget(f"{eng.settings.namespace}job:{info.id}", "token")
    raw = adapter.engine.rq_redis.hgetall(f"{Job.redis_job_namespace_prefix}{info.id}-{token}")
    rode = {k.decode(): v for k, v in raw.items()}
    assert eng.redis.lrange(_queues(eng)[1].key, 0, -1) == [f"{info.id}-{token}"]
    pipe = adapter.engine.rq_redis.pipeline(transaction=True)
    _queues(eng)[1].push_call(pipe, "a-b", [info.id, token], now="2026-12-03T09:32:38.213550Z",
                              timeout=int(rode["timeout"]), result_ttl=1,
                              failure_ttl=int(rode["failure_ttl"]),
                              description=rode["description"].decode())
    [*_, hset, _] = _commands(pipe)
    piped = dict(zip(hset[2::2], hset[3::2]))
    assert set(rode) == set(piped)
    assert zlib.decompress(rode.pop("data")) == zlib.decompress(piped.pop("data"))
    for name in ("created_at", "enqueued_at"):
        rode.pop(name), piped.pop(name)
    assert {k: v.decode() for k, v in rode.items()} == {k: str(v) for k, v in piped.items()}
    pipe.reset()


def test_rq_scheduler_beat_runs_its_jobs_and_ours(eng):
    conn = eng.adapter.engine.rq_redis
    beats = []
    scheduler = LedgerScheduler(connection=conn, interval=0.1, name="seam",
                                beat=lambda: beats.append(1))
    scheduler.enqueue_at(datetime.now(timezone.utc) - timedelta(seconds=1), "os.getpid")
    with own_signal_handlers():
        scheduler.run(burst=True)
    assert beats == [1]
    assert Queue("default", connection=conn).count == 1, "rq-scheduler's own job was not queued"
    assert not eng.redis.exists(Scheduler.scheduler_lock_key)
    assert "death" in eng.redis.hgetall(scheduler.key)
    assert not scheduler._lock_acquired


def test_a_workers_pub_sub_thread_ends_soon_after_its_unsubscribe(eng):
    """RQ's unsubscribe sends UNSUBSCRIBE, then stops its pub/sub thread and joins it
    (redis-py's stop() waits for the thread). Where the reply reaches the thread first,
    the thread is no longer subscribed and its next read waits out its whole sleep:
    RQ's was 60 s, so a warm shutdown could take a minute (seen under load)."""
    worker = lean_worker(eng)
    worker.subscribe()
    thread = worker.pubsub_thread
    worker.pubsub.unsubscribe()  # the reply first: the thread now waits as it would
    wait_until(lambda: not worker.pubsub.subscribed, 10, 0.01, "the UNSUBSCRIBE's reply read")
    done = threading.Event()
    threading.Thread(target=lambda: (worker.unsubscribe(), done.set()), daemon=True).start()
    assert done.wait(15), "unsubscribe still waiting for the pub/sub thread"
    assert not thread.is_alive()


def test_a_warm_stop_asked_while_busy_ends_the_wait_that_follows(eng):
    """A SIGTERM that lands as a job ends, while the worker still shows itself busy, only
    marks the stop as asked (RQ's handler); the pop that follows must end the worker
    there, not wait in BLPOP for the dequeue timeout (seen: a warm shutdown that took
    longer than the 60 s a caller gave it)."""
    from rq.exceptions import StopRequested

    worker = lean_worker(eng)
    worker.set_state(WorkerStatus.BUSY)
    worker._stop_requested = True  # as RQ's _shutdown leaves a busy worker
    _Queue.waiting_worker = worker
    conn = eng.adapter.engine.rq_redis
    with pytest.raises(StopRequested):
        _Queue.lpop([q.key for q in _queues(eng)], 5, connection=conn)
