"""RQ glue: the worker, pool, queue and rq-scheduler subclasses behind :class:`adapters.rq.RQEngine`.

Every Switchyard job reaches RQ as a call of :func:`perform`, and Switchyard's ledger
already records everything about it: its state and history, its result or error,
its lease (crash recovery) and its timeout. So the workers here keep RQ's own
bookkeeping for those jobs to what RQ needs to run them and to show its workers
(checked against RQ 3.0):

* kept: RQ's queues and its dequeue, the job hash until the job is taken (RQ reads
  the call from it), worker registration and death (``rq info`` lists the workers,
  their state and their queues), ``rq suspend``, RQ's timeout backstop (the death
  penalty around the call, and a forking worker's kill of an overdue horse), warm
  and cold shutdown, and RQ's own failure handling when :func:`perform` itself
  raises (the job goes to RQ's failed registry as usual);
* skipped: the execution records and the started registry (who runs what: the
  ledger's lease, which also recovers the job of a killed worker), the job's status
  and heartbeat fields, the result stream and the finished registry (the ledger
  keeps the result), and a new transaction per step. The job hash is deleted when
  the job is taken, so a killed worker leaves nothing of RQ's behind; a redelivery
  is a new RQ job under a new token.
* batched: the worker's heartbeat goes out only once the worker key's remaining
  life has fallen 30 s short of the TTL RQ asks for, not at every step, and carries
  the worker's finished count and working time (``rq info``), which are also
  reported at the worker's death. A worker's pop checks ``rq suspend`` inside its
  script, and the worker shows itself idle only when it waits for a job (between the
  jobs of a stream it stays busy), so neither costs a command per job.
* enqueue: the job hash is written once (RQ writes its status a second time), and
  the queue is added to RQ's set of queues at most once a minute per process, and
  by every worker with its heartbeat, instead of with every job.
* dequeue: while jobs wait, a worker pops the next one, notes it as in hand
  (``{ns}rq:inhand``, by time) and reads its job hash, deleting it if it is
  Switchyard's, in one script; only a worker that was idle takes its job with RQ's
  BLPOP, notes it right after and reads the hash as RQ does. A delivery whose worker died before
  claiming it is found there by the maintenance loop and delivered again. RQ's job
  id is ``<job id>-<token>``, so the note names the delivery.

What RQ's tools then show differently: ``rq info`` counts no executing or finished
jobs in a queue, a worker's finished count lags by up to 30 s, and RQ's stop-job
command cannot find a running job (cancel a job through Switchyard instead).

A job that is not a call of :func:`perform` (or cannot be read) goes through RQ's
stock path untouched.

RQ and rq-scheduler internals relied on
---------------------------------------

None of these is RQ's public API, so ``setup.cfg`` pins ``rq>=3.0,<3.1`` (and
rq-scheduler to 0.14). ``tests/test_rq_seam.py`` checks that each exists with the
parameters named here; ``.ci/newest-rq`` runs it and the RQ tests on the newest
releases, and the pin moves once that passes.

``rq.worker.BaseWorker`` -- overridden by :class:`_LeanBookkeeping` (both worker
classes); each override takes RQ's own path for a job that is not ours:

* ``heartbeat(timeout, pipeline)``: sent only when the worker key would expire within
  30 s of the TTL asked for, with the batched job counts and the worker's queues in
  RQ's set of queues; a Redis error is logged instead of ending the work loop. Why:
  RQ heartbeats at every step of every job.
* ``register_death()``: reports the batched counts first, then RQ's own.
* ``set_state(state, pipeline)``: writes only a change of state, and idle only from
  ``show_idle()``, which the pop calls before it blocks. Why: RQ writes busy/idle
  around every job.
* ``check_for_suspension(burst)``: only makes the worker the queue's
  ``waiting_worker``; the pop's script checks ``rq.suspension.WORKERS_SUSPENDED`` and,
  once it is set, the pop runs RQ's own check (a loop until ``rq resume``) through
  ``wait_while_suspended()``.
* ``prepare_execution(job)``: an ``rq.executions.Execution(id, job_id, connection,
  worker_name)`` kept in memory only (in ``self.executions``, its ``_job`` set), and
  the job hash deleted (unless the pop took it already). Why: no execution record, no started registry entry.
* ``prepare_job_execution(job, remove_from_intermediate_queue)``: only a heartbeat
  long enough for the job (``get_heartbeat_ttl(job)``), the intermediate queue's
  entry removed and the ``procline``; no job status or started-at writes.
* ``handle_execution_ended(job, queue, heartbeat_ttl)``: writes nothing.
* ``handle_job_success(job, queue, started_job_registry, execution)``: no result, no
  finished registry; the job is counted in memory for the next heartbeat.
* ``subscribe()``: RQ's, in :func:`_signals_to_the_main_thread`, so RQ's pub/sub
  thread starts with SIGTERM and SIGINT blocked (else an idle worker can sleep
  through a warm shutdown), and reads for ``PUBSUB_WAIT`` at a time instead of 60 s
  (else a warm shutdown could wait a minute for it); it reads ``pubsub_channel_name``,
  ``handle_payload`` and ``_pubsub_exception_handler``.
* also read or called, not overridden: the ``executions``, ``_state``, ``is_horse``,
  ``worker_ttl``, ``job_monitoring_interval``, ``queue_class``, ``key`` and
  ``log_result_lifespan`` attributes, and ``work(burst, logging_level,
  with_scheduler)``.

``rq.worker.Worker`` (fork per job) -- overridden by :class:`_LeanForkWorker`:

* ``wait_for_horse()``: notes the horse's exit status;
* ``execute_job(job, queue)``: counts a job of ours whose horse exited 0 (the horse's
  own count dies with it);
* ``maintain_heartbeats(job, execution)``: only the (batched) worker heartbeat, no
  job or execution heartbeat.

``rq.worker_pool.WorkerPool`` -- :class:`_Pool` overrides
``get_worker_process(name, burst, _sleep, logging_level)`` to start
:func:`run_one_worker` (its own connection, :class:`_Queue`, and RQ's scheduler off, as
the ledger holds delayed jobs), reading the pool's ``_queue_names``,
``worker_class`` and ``name``.

The queue and rq-scheduler subclasses, and what of RQ they rely on, are in
:mod:`adapters.rq_queue`.
"""

from __future__ import annotations

import logging
import signal
import time
from multiprocessing.context import ForkProcess
from typing import Any
from uuid import uuid4

import redis
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

from .connections import redis_client
from .rq_queue import _ENTRY, _REDIS_DOWN, LedgerScheduler, _Queue  # noqa: F401 - the seam's names
from .settings import AdapterSettings

log = logging.getLogger("switchyard.rq")

_worker_engine: Any = None


def bind_worker_engine(engine: Any) -> None:
    """Make ``engine`` the one :func:`perform` runs jobs with, in this worker process."""
    global _worker_engine
    _worker_engine = engine


def perform(job_id: str, token: str) -> None:
    """The single RQ entry point: run one Switchyard job delivery."""
    if _worker_engine is None:
        raise RuntimeError("adapters.rq.perform runs only inside a Switchyard RQ worker")
    _worker_engine.run(job_id, token)


def _is_ours(job) -> bool:
    """True if ``job`` is a call of :func:`perform` (an unreadable job is not)."""
    try:
        return job.func_name == _ENTRY
    except Exception:  # noqa: BLE001 - RQ's stock path reports it
        return False


class _LeanBookkeeping:
    """What an RQ worker skips for Switchyard's jobs (see the module docstring).

    Overrides RQ 3.0 worker hooks; each falls back to RQ's own for any other job.
    """

    #: a heartbeat is sent only when the worker key would expire within this many
    #: seconds of the TTL RQ asks for
    heartbeat_slack = 30.0
    log_result_lifespan = False  # RQ keeps no result of Switchyard's jobs
    _alive_until = 0.0  # monotonic time until which the worker key is known to live
    _unreported_jobs = 0
    _unreported_seconds = 0.0

    # -- heartbeat and worker stats -----------------------------------------------
    def heartbeat(self, timeout=None, pipeline=None):
        timeout = timeout or self.worker_ttl + 60
        clock = time.monotonic()
        if pipeline is not None:  # RQ's own transaction: write as RQ does
            super().heartbeat(timeout, pipeline=pipeline)
        elif self._alive_until - clock >= timeout - self.heartbeat_slack:
            return
        else:
            try:
                with self.connection.pipeline(transaction=False) as pipe:
                    super().heartbeat(timeout, pipeline=pipe)
                    # Keep the worker's queues in RQ's set of queues for ``rq info``.
                    pipe.sadd(Queue.redis_queues_keys, *(q.key for q in self.queues))
                    self._report_stats(pipe)
                    pipe.execute()
            except _REDIS_DOWN:
                # RQ's work loop quits on an error here; its dequeue, which comes next,
                # waits for Redis instead, so the worker rides out a Redis restart.
                self.log.warning("Worker %s: Redis does not answer; waiting for it", self.name)
                return
        self._alive_until = clock + timeout

    def _count_success(self, seconds: float) -> None:
        self._unreported_jobs += 1
        self._unreported_seconds += seconds

    def _report_stats(self, pipe) -> None:
        # A forked horse holds a copy of its parent's counts: only the parent reports.
        if self._unreported_jobs and not self.is_horse:
            pipe.hincrby(self.key, "successful_job_count", self._unreported_jobs)
            pipe.hincrbyfloat(self.key, "total_working_time", self._unreported_seconds)
            self._unreported_jobs, self._unreported_seconds = 0, 0.0

    def register_death(self):
        if self._unreported_jobs:
            try:
                with self.connection.pipeline(transaction=False) as pipe:
                    self._report_stats(pipe)
                    pipe.execute()
            except redis.RedisError:
                self.log.warning("Worker %s: could not report its last job counts", self.name)
        super().register_death()

    def set_state(self, state, pipeline=None):
        if state == WorkerStatus.IDLE and pipeline is None:
            return  # shown once the worker waits for a job (show_idle), not between two
        if state != self._state:
            if pipeline is not None:
                super().set_state(state, pipeline=pipeline)
                return
            try:
                super().set_state(state)
            except _REDIS_DOWN:
                pass  # only what `rq info` shows; the dequeue that follows waits for Redis

    def show_idle(self):
        """Show the worker idle (``rq info``): its pop found nothing and it waits.

        A warm shutdown that came while the worker still showed itself busy (the job
        just ended) only marked the stop as asked: it ends here, before the wait, not
        after a dequeue timeout of minutes."""
        if self._state != WorkerStatus.IDLE:
            try:
                super().set_state(WorkerStatus.IDLE)
            except _REDIS_DOWN:
                pass
        if self._stop_requested:
            raise StopRequested()

    def check_for_suspension(self, burst):
        # The pop that follows checks `rq suspend` in its script, at no command of its
        # own, and waits through RQ's own check (wait_while_suspended) if it is set.
        self._burst = burst
        self.queue_class.waiting_worker = self

    def wait_while_suspended(self):
        """RQ's own check: the worker shows itself suspended until `rq resume`."""
        super().check_for_suspension(self._burst)

    # -- one job --------------------------------------------------------------------
    def prepare_execution(self, job):
        if not _is_ours(job):
            return super().prepare_execution(job)
        execution = Execution(uuid4().hex, job.id, connection=self.connection,
                              worker_name=self.name)
        execution._job = job
        self.executions[execution.id] = execution
        with self.connection.pipeline(transaction=False) as pipe:
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            # The call is in memory now; RQ's failure path writes the job again if needed.
            # (A job its pop read, the usual case, had its hash taken with it.)
            if not getattr(job, "hash_taken", False):
                pipe.delete(job.key)
            pipe.execute()
        return execution

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):
        if not _is_ours(job):
            return super().prepare_job_execution(job, remove_from_intermediate_queue)
        self.heartbeat(self.get_heartbeat_ttl(job))  # the key must outlive the job
        job.worker_name = self.name
        job.started_at = job.last_heartbeat = now()
        job._status = JobStatus.STARTED
        if remove_from_intermediate_queue:
            queue = self.queue_class(job.origin, connection=self.connection)
            self.connection.lrem(queue.intermediate_queue_key, 1, job.id)
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        if not _is_ours(job):
            return super().handle_execution_ended(job, queue, heartbeat_ttl)
        job.ended_at = now()

    def handle_job_success(self, job, queue, started_job_registry, execution):
        if not _is_ours(job):
            return super().handle_job_success(job, queue, started_job_registry, execution)
        self.executions.pop(execution.id, None)
        job._status = JobStatus.FINISHED
        self._count_success((job.ended_at - job.started_at).total_seconds())
        self.log.debug("Worker %s: job %s done", self.name, job.id)


class _LeanSimpleWorker(_LeanBookkeeping, SimpleWorker):
    """RQ's SimpleWorker (no fork per job) without the bookkeeping the ledger does."""


class _LeanForkWorker(_LeanBookkeeping, Worker):
    """RQ's fork-per-job Worker without the bookkeeping the ledger does.

    The horse is a copy: what it counts is lost with it, so the parent counts a job
    whose horse exited cleanly.
    """

    _horse_status = None

    def wait_for_horse(self):
        pid, status, rusage = super().wait_for_horse()
        self._horse_status = status
        return pid, status, rusage

    def execute_job(self, job, queue):
        ours, started = _is_ours(job), time.monotonic()
        self._horse_status = None
        super().execute_job(job, queue)
        if ours and self._horse_status == 0:
            self._count_success(time.monotonic() - started)

    def maintain_heartbeats(self, job, execution):
        if not _is_ours(job):
            return super().maintain_heartbeats(job, execution)
        self.heartbeat(self.job_monitoring_interval + 60)


PUBSUB_WAIT = 0.5
"""The longest read of an RQ worker's pub/sub thread: a stop waits for it at most."""


def _signals_to_the_main_thread(worker_class):
    """``worker_class`` whose pub/sub thread never takes SIGTERM or SIGINT.

    The kernel hands a process-directed signal to any thread that does not block it.
    Taken by RQ's pub/sub thread, it leaves the main thread asleep in its BLPOP until
    the dequeue timeout (minutes): an idle worker then ignores a warm shutdown. The
    thread inherits the mask of the thread that starts it, so it starts with both
    blocked, and the main thread (the only one that runs Python's handlers) takes them.
    """
    class Worker(worker_class):
        def subscribe(self):
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
            try:
                # RQ's own subscribe, with a short wait: the thread's read of the channel
                # ends after PUBSUB_WAIT with nothing sent to Redis. RQ's 60 s held a
                # warm shutdown up to a minute where the UNSUBSCRIBE's reply reached
                # the thread before its stop: not subscribed, the next read waits out
                # the whole time, and redis-py's stop() (which RQ calls) joins it.
                self.log.info("Worker %s: subscribing to channel %s", self.name,
                              self.pubsub_channel_name)
                self.pubsub = self.connection.pubsub()
                self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
                self.pubsub_thread = self.pubsub.run_in_thread(
                    sleep_time=PUBSUB_WAIT, daemon=True,
                    exception_handler=self._pubsub_exception_handler)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    Worker.__name__ = Worker.__qualname__ = worker_class.__name__
    return Worker


_RQ_JOB_LINES = frozenset({"Worker %s: %s: %s (%s)", "Worker %s: %s: %s"})
"""RQ's two INFO lines of every job: as it is taken (``<queue>: <description> (<id>)``)
and as it ends (``<queue>: Job OK (<id>)``)."""


def _without_rq_job_lines(record: logging.LogRecord) -> bool:
    """A filter of RQ's worker logger: the runner logs each job as it starts and ends
    (its id, type, attempt, outcome and time), so RQ's own lines of the same job, by
    RQ's ids, go; each costs a job as much as the runner's (RQ's warnings stay)."""
    return record.msg not in _RQ_JOB_LINES


def run_one_worker(name: str | None, queue_names: list[str], settings: AdapterSettings,
                   worker_class, burst: bool = False, logging_level: str = "INFO") -> None:
    """One RQ worker (of the pool, or the whole worker) on its own connection, without
    RQ's scheduler."""
    logging.getLogger("rq.worker").addFilter(_without_rq_job_lines)
    connection = redis_client(settings)
    queues = [_Queue(n, connection=connection, serializer=JSONSerializer) for n in queue_names]
    worker = _signals_to_the_main_thread(worker_class)(
        queues, name=name, connection=connection, serializer=JSONSerializer,
        queue_class=_Queue)
    worker.work(burst=burst, with_scheduler=False, logging_level=logging_level)


class _Pool(WorkerPool):
    """RQ's WorkerPool, whose workers do not each run RQ's scheduler too.

    Switchyard holds delayed jobs in its ledger, so RQ's scheduler would only cost an
    extra process and Redis polling per worker.
    """

    settings: AdapterSettings | None = None

    def get_worker_process(self, name, burst, _sleep=0, logging_level="INFO"):
        return ForkProcess(target=run_one_worker,
                           args=(name, self._queue_names, self.settings, self.worker_class,
                                 burst, logging_level),
                           name=f"Worker {name} (WorkerPool {self.name})")


# KEYS: the worker's RQ queue keys in order, then the in-hand set; ARGV: now
