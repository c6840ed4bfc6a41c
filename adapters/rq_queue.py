"""RQ glue, part two: the queue and rq-scheduler subclasses behind :class:`adapters.rq.RQEngine`
(the workers and their pool are in :mod:`adapters.rq_glue`, whose docstring says why).

RQ and rq-scheduler internals relied on here (``tests/test_rq_seam.py`` checks each):

``rq.queue.Queue`` -- overridden by :class:`_Queue`:

* ``lpop(queue_keys, timeout, connection)`` (a classmethod that RQ's
  ``dequeue_any`` calls): pops, notes the delivery in hand and reads its job hash
  (deleting one that carries :data:`MARK`) in one script, which also checks
  ``rq.suspension.WORKERS_SUSPENDED`` for the worker about to dequeue; RQ's own BLPOP
  only when every queue was empty, noted right after.
* ``_fetch_dequeued_job(connection, queue_key, job_id, job_class, serializer,
  death_penalty_class)`` (a classmethod): for a job the pop read, the job from that
  hash (``Job.restore``, with ``parse_job_id`` and ``from_queue_key`` as RQ's own
  does) instead of a second read; RQ's own for one that BLPOP took.
* ``job_class``: :class:`_Job`, whose ``to_dict`` adds :data:`MARK` to the hash of a
  call of ``perform``.
* ``enqueue_job(job, pipeline, at_front, unique)``: in a pipeline, calls
  ``_enqueue_job(job, pipeline, at_front)`` directly and adds the queue to
  ``redis_queues_keys`` once a minute; RQ's own for a unique, dependent,
  rate-limited (``job._dependency_ids``, ``job.has_rate_limit``) or synchronous
  (``_is_async``) job.
* ``_persist_job(job, pipeline, status)``: the status set on the job (``_status``)
  so that ``job.save(pipeline)`` writes the hash once, then ``job.cleanup(ttl,
  pipeline)``.
* ``push_call`` (Switchyard's own): writes what ``enqueue_call`` of ``perform`` in a
  pipeline writes -- the marked job hash (``Job.to_dict``'s fields, RQ's
  ``utcformat`` times, the JSON serializer's zlib-compressed data) and the push -- without
  building RQ's ``Job``; the seam test compares the two field by field.
* also used: ``intermediate_queue_key`` and ``Job.func_name`` (:func:`_is_ours`).

``rq_scheduler.Scheduler`` -- overridden by :class:`LedgerScheduler`:

* ``enqueue_jobs()``: rq-scheduler's own, then Switchyard's schedules' beat;
* ``_install_signal_handlers()``: a handler that only sets an event (rq-scheduler's
  writes to Redis, which fails while Redis is down);
* ``run(burst)``: the same beat in a loop that outlives a Redis restart, calling
  ``register_birth()``, ``heartbeat()``, ``acquire_lock()``, ``remove_lock()`` and
  ``register_death()``, and reading ``_interval`` and ``_lock_acquired``.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
import zlib
from collections.abc import Callable

import redis
from rq import Queue
from rq.job import Job, JobStatus, parse_job_id
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import as_text, backend_class
from rq_scheduler import Scheduler

__all__ = ["_Queue", "_Job", "LedgerScheduler", "MARK"]

log = logging.getLogger("switchyard.rq")

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)

_ENTRY = "adapters.rq.perform"
"""The function every Switchyard job names in RQ (``adapters.rq`` re-exports it)."""
MARK = "switchyard"
"""A field of the RQ job hash of a Switchyard job: the pop takes such a hash with the
job (it holds nothing else of use once the call is read), so no later command reads
or deletes it."""

# KEYS: the worker's RQ queue keys in order, then the in-hand set. ARGV: now, RQ's job
# key prefix, and the key of `rq suspend` ('' for a pop that no worker waits on).
# -> false (nothing waits), {'', ''} (suspended), or {queue key, job id, the job's hash}
_POP_IN_HAND = """
if ARGV[3] ~= '' and redis.call('EXISTS', ARGV[3]) == 1 then return {'', ''} end
local inhand = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  local id = redis.call('LPOP', KEYS[i])
  if id then
    redis.call('ZADD', inhand, ARGV[1], id)
    local key = ARGV[2] .. id
    local job = redis.call('HGETALL', key)
    for j = 1, #job, 2 do
      if job[j] == '""" + MARK + """' then
        redis.call('DEL', key)
        break
      end
    end
    return {KEYS[i], id, job}
  end
end
return false
"""


class _Job(Job):
    """RQ's job, whose hash carries :data:`MARK` when it is a call of ``perform``."""

    def to_dict(self, include_meta=True, include_result=True):
        obj = super().to_dict(include_meta=include_meta, include_result=include_result)
        if self.func_name == _ENTRY:
            obj[MARK] = "1"
        return obj


class _Queue(Queue):
    """An RQ queue whose enqueue writes a job with fewer commands, and whose dequeue
    notes the job it hands out as in hand (checked against RQ 3.0).

    RQ adds the queue to its set of queues (``rq info``) with every job; here that is
    done at most once a minute per process, and by every worker's heartbeat. RQ also
    writes the job's status on its own before the hash that holds it again.
    """

    announce_every = 60.0
    _announced_at = -math.inf
    inhand_key = "sy:rq:inhand"
    """Set by the adapter to its namespace's key before the worker starts."""
    job_class = _Job
    waiting_worker = None
    """The worker of this process about to dequeue (it sets itself before each pop): its
    ``rq suspend`` is checked by the pop, and it shows itself idle only when it waits."""
    _pop_scripts: dict = {}
    _taken: dict = {}  # job id -> its hash, read by the pop, for _fetch_dequeued_job

    @classmethod
    def lpop(cls, queue_keys, timeout, connection=None):
        """RQ's pop, recording what it pops in the in-hand set and reading its job (see
        the module docstring); RQ's BLPOP only once nothing waits."""
        script = cls._pop_scripts.get(id(connection))
        if script is None:
            script = cls._pop_scripts[id(connection)] = connection.register_script(_POP_IN_HAND)
        worker = cls.waiting_worker
        while True:
            popped = script(keys=[*queue_keys, cls.inhand_key],
                            args=[repr(time.time()), Job.redis_job_namespace_prefix,
                                  WORKERS_SUSPENDED if worker is not None else ""])
            if not popped or popped[1]:
                break
            worker.wait_while_suspended()  # RQ's own wait, until `rq resume`
        if popped:
            queue_key, job_id, fields = popped
            cls._taken[as_text(job_id)] = dict(zip(fields[::2], fields[1::2]))
            return queue_key, job_id
        if timeout is None:
            return None
        if worker is not None:
            worker.show_idle()
        result = super().lpop(queue_keys, timeout, connection=connection)
        # The one moment a delivery is in no list: from BLPOP's answer to this write.
        connection.zadd(cls.inhand_key, {result[1]: time.time()})
        return result

    @classmethod
    def _fetch_dequeued_job(cls, connection, queue_key, job_id, job_class=None,
                            serializer=None, death_penalty_class=None):
        """RQ's, for a job the pop has read already: its job from that hash."""
        fields = cls._taken.pop(job_id, None)
        if fields is None:  # taken by RQ's BLPOP
            return super()._fetch_dequeued_job(
                connection, queue_key, job_id, job_class=job_class, serializer=serializer,
                death_penalty_class=death_penalty_class)
        if not fields:
            return None  # its hash is gone: RQ passes over such a job too
        job_cls = backend_class(cls, "job_class", override=job_class)
        queue = cls.from_queue_key(queue_key, connection=connection, job_class=job_cls,
                                   serializer=serializer,
                                   death_penalty_class=death_penalty_class)
        job = job_cls(parse_job_id(job_id), connection=connection, serializer=serializer)
        try:
            job.restore(fields)
        except Exception as exc:  # as RQ's own fetch reports it
            exc.job_id, exc.queue = job_id, queue
            raise
        job.hash_taken = MARK.encode() in fields
        return job, queue

    def push_call(self, pipeline, job_id: str, args: list, *, timeout: int, result_ttl: int,
                  failure_ttl: int, description: str, now: str, push: bool = True) -> None:
        """In ``pipeline``, what ``enqueue_call(ENTRY, args=args, job_id=job_id, ...,
        pipeline=pipeline)`` writes (the job's hash, marked, and its id pushed on this
        queue), without building RQ's ``Job``: most of a single enqueue's time on the
        client. ``now``: RQ's ``utcformat`` of the time, for created_at and enqueued_at.
        With ``push=False`` the caller pushes the id (a batch's ids of a queue in one
        RPUSH). Where ``pipeline`` rides with the ledger's records (``Riders``) the
        fields every job of the queue shares go once per call.
        ``tests/test_rq_seam.py`` compares the two, field by field."""
        clock = time.monotonic()
        if clock - self._announced_at >= self.announce_every:
            pipeline.sadd(self.redis_queues_keys, self.key)
            self._announced_at = clock
        data = zlib.compress(json.dumps([_ENTRY, None, args, {}]).encode())
        own = {"created_at": now, "data": data, "description": description,
               "enqueued_at": now}
        cache = self.__dict__.setdefault("_shared_fields", {})  # this queue's (its name)
        shared = cache.get((timeout, result_ttl, failure_ttl))
        if shared is None:  # the same dict each time: Riders sends it once per call
            shared = cache[(timeout, result_ttl, failure_ttl)] = {
                "success_callback_name": "", "failure_callback_name": "",
                "stopped_callback_name": "", "started_at": "", "ended_at": "",
                "last_heartbeat": "", "worker_name": "", "group_id": "",
                "origin": self.name, "timeout": timeout, "result_ttl": result_ttl,
                "failure_ttl": failure_ttl, "status": JobStatus.QUEUED.value, MARK: "1"}
        key = Job.redis_job_namespace_prefix + job_id
        if hasattr(pipeline, "hset_shared"):
            pipeline.hset_shared(key, shared, own)
        else:
            pipeline.hset(key, mapping={**own, **shared})
        if push:
            pipeline.rpush(self.key, job_id)

    def enqueue_job(self, job, pipeline=None, at_front=False, unique=False):
        if (pipeline is None or unique or job._dependency_ids or job.has_rate_limit
                or not self._is_async):
            return super().enqueue_job(job, pipeline=pipeline, at_front=at_front, unique=unique)
        clock = time.monotonic()
        if clock - self._announced_at >= self.announce_every:
            pipeline.sadd(self.redis_queues_keys, self.key)
            self._announced_at = clock
        job.origin = self.name
        return self._enqueue_job(job, pipeline=pipeline, at_front=at_front)

    def _persist_job(self, job, pipeline, status=JobStatus.QUEUED):
        job._status = status  # the hash written by save() carries it
        job.save(pipeline=pipeline)
        job.cleanup(ttl=job.ttl, pipeline=pipeline)


class LedgerScheduler(Scheduler):
    """rq-scheduler, firing the schedules Switchyard keeps in Redis as well, in a
    loop that outlives a Redis restart.

    rq-scheduler's own ``run`` dies on the first Redis error (its heartbeat
    raises, then its ``register_death`` raises again), and its signal handler
    writes to Redis too, so a scheduler stopped while Redis is down exits 1.
    This loop is the same beat -- heartbeat, lock, enqueue, unlock, sleep -- with
    each beat that cannot reach Redis logged once and tried again.
    """

    def __init__(self, *args, beat: Callable[[], object], **kwargs):
        super().__init__(*args, **kwargs)
        self._beat = beat  # called after each of rq-scheduler's own enqueues
        self._stop = threading.Event()

    def enqueue_jobs(self):
        jobs = super().enqueue_jobs()
        self._beat()
        return jobs

    def _install_signal_handlers(self):
        def stop(signum, frame):
            self.log.info("Shutting down RQ scheduler...")
            self._stop.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def run(self, burst=False):
        self._install_signal_handlers()
        born = False
        down_since = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if not born:
                    self.register_birth()
                    born = True
                self.heartbeat()
                if self.acquire_lock():
                    try:
                        self.enqueue_jobs()
                        self.heartbeat()
                    finally:
                        self.remove_lock()
                if down_since is not None:
                    log.info("Redis answers again after %.1fs; the scheduler carries on",
                             time.monotonic() - down_since)
                    down_since = None
            except _REDIS_DOWN as exc:
                self._lock_acquired = False  # it lapses on its own
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("Redis does not answer (%s); the scheduler waits "
                                "for it", exc)
            if burst:
                break
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))
        for step in (self.remove_lock, self.register_death):
            try:
                step()
            except _REDIS_DOWN:
                pass
