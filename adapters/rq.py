"""The RQ adapter: one entry function runs every registered job."""

from __future__ import annotations

import logging
import math
import signal

import redis
from rq import Queue, SimpleWorker, Worker
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool
from multiprocessing.context import ForkProcess

from .base import QUIET_CLIENT, Capability, QueueAdapter
from .ledger import Dispatch
from .runner import Maintenance, SchedulerBeat, execute

__all__ = ["RQAdapter"]

log = logging.getLogger("switchyard.rq")

_PRIORITY_SUFFIX = {"high": ".high", "default": "", "low": ".low"}
_worker_adapter: "RQAdapter | None" = None


def perform(job_id: str, token: str) -> None:
    """The single RQ entry point: run one Switchyard job delivery."""
    if _worker_adapter is None:
        raise RuntimeError("adapters.rq.perform runs only inside a Switchyard RQ worker")
    execute(_worker_adapter, job_id, token)


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
                super().subscribe()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    Worker.__name__ = Worker.__qualname__ = worker_class.__name__
    return Worker


def _pool_worker(name: str, queue_names: list[str], redis_url: str, worker_class,
                 burst: bool, logging_level: str) -> None:
    """One RQ worker of the pool, on its own connection, without RQ's scheduler."""
    connection = redis.Redis.from_url(redis_url)
    queues = [Queue(n, connection=connection, serializer=JSONSerializer) for n in queue_names]
    worker = _signals_to_the_main_thread(worker_class)(
        queues, name=name, connection=connection, serializer=JSONSerializer)
    worker.work(burst=burst, with_scheduler=False, logging_level=logging_level)


class _Pool(WorkerPool):
    """RQ's WorkerPool, whose workers do not each run RQ's scheduler too.

    Switchyard holds delayed jobs in its ledger, so RQ's scheduler would only cost an
    extra process and Redis polling per worker.
    """

    redis_url = ""

    def get_worker_process(self, name, burst, _sleep=0, logging_level="INFO"):
        return ForkProcess(target=_pool_worker,
                           args=(name, self._queue_names, self.redis_url, self.worker_class,
                                 burst, logging_level),
                           name=f"Worker {name} (WorkerPool {self.name})")


class RQAdapter(QueueAdapter):
    """Runs jobs on RQ; each named queue is three RQ queues, one per priority."""

    name = "rq"
    capabilities = frozenset(Capability)

    def __init__(self, settings=None):
        super().__init__(settings)
        # RQ stores bytes, so it gets its own client that does not decode.
        self.rq_redis = redis.Redis.from_url(
            self.settings.redis_url, socket_connect_timeout=self.settings.redis_timeout,
            health_check_interval=30, **QUIET_CLIENT)
        self._queues: dict[str, Queue] = {}

    def _engine_name(self, queue: str, priority: str) -> str:
        return self.settings.queue_prefix + queue + _PRIORITY_SUFFIX[priority]

    def _queue(self, engine_name: str) -> Queue:
        queue = self._queues.get(engine_name)
        if queue is None:
            queue = Queue(engine_name, connection=self.rq_redis, serializer=JSONSerializer)
            self._queues[engine_name] = queue
        return queue

    def _publish(self, dispatch: Dispatch, pipeline=None) -> None:
        self._queue(self._engine_name(dispatch.queue, dispatch.priority)).enqueue_call(
            "adapters.rq.perform",
            args=[dispatch.job_id, dispatch.token],
            timeout=math.ceil(dispatch.timeout + self.settings.timeout_grace),
            # RQ 3 deletes a job kept for 0 s through a slower path (status and execution
            # reads on a second connection, twice-done cleanup: 6 more commands and a new
            # connection per job in a forking worker); a 1 s record is cheaper. Its id
            # stays in RQ's finished registry until RQ's own cleanup, every 10 minutes.
            result_ttl=1,
            failure_ttl=self.settings.job_ttl,
            description=f"{dispatch.job_type} {dispatch.job_id}",
            pipeline=pipeline,
        )

    def _publish_many(self, dispatches: list[Dispatch]) -> bool:
        """Every delivery and the lifting of their dispatch guard in one transaction: RQ's
        queues live in the ledger's own Redis, so the two commit together or not at all."""
        with self.rq_redis.pipeline(transaction=True) as pipe:
            for dispatch in dispatches:
                self._publish(dispatch, pipe)
            self.ledger.dispatched([d.job_id for d in dispatches], pipeline=pipe)
            pipe.execute()
        return True

    commits_with_ledger = True

    def _create_and_publish(self, records: list[dict], now: float) -> None:
        """The records, RQ's jobs and queue pushes in one MULTI/EXEC: one round trip, and
        no dispatch guard, since no job can be written without its delivery."""
        dispatches = [Dispatch.from_record(rec) for rec in records]
        for attempt in (1, 2):
            try:
                with self.rq_redis.pipeline(transaction=True) as pipe:
                    # RQ's enqueue opens the MULTI itself, so it goes first.
                    for dispatch in dispatches:
                        self._publish(dispatch, pipe)
                    self.ledger.create_in(pipe, records, now)
                    pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                # Redis restarted (or flushed its scripts): the deliveries of this try
                # went out without records and will be dropped as unknown; load the
                # script and write the jobs again under the same ids and tokens.
                if attempt == 2:
                    raise
                self.ledger.load_scripts()

    def worker_queue_names(self, queues: list[str]) -> list[str]:
        """RQ queue names in the order a worker must listen: all highs, then defaults, then lows."""
        return [self._engine_name(q, p) for p in ("high", "default", "low") for q in queues]

    def close(self) -> None:
        super().close()
        self.rq_redis.close()

    def run_worker(self, queues=None, concurrency=1, name=None, forking=False):
        """Run ``concurrency`` RQ workers under RQ's WorkerPool.

        By default each is an RQ ``SimpleWorker`` (no fork per job); timeouts and
        crash recovery come from Switchyard's runner and ledger, so nothing is lost.
        ``forking=True`` uses RQ's stock fork-per-job ``Worker``.
        """
        global _worker_adapter
        _worker_adapter = self
        queues = queues or [self.settings.default_queue]
        maintenance = Maintenance(self, queues, concurrency, name)
        pool = _Pool(self.worker_queue_names(queues), connection=self.rq_redis,
                     num_workers=concurrency, worker_class=Worker if forking else SimpleWorker,
                     serializer=JSONSerializer)
        pool.redis_url = self.settings.redis_url
        maintenance.start()
        log.info("starting %d RQ %s(s) on %s", concurrency,
                 "Worker" if forking else "SimpleWorker", ", ".join(self.worker_queue_names(queues)))
        try:
            pool.start(logging_level="INFO")
        finally:
            maintenance.stop()

    def run_scheduler(self, poll=1.0, catch_up=1, name=None):
        """Run rq-scheduler; each of its beats also fires Switchyard's schedules."""
        from rq_scheduler import Scheduler

        switchyard_beat = SchedulerBeat(self, poll, catch_up, name)

        class LedgerScheduler(Scheduler):
            """rq-scheduler, firing the schedules Switchyard keeps in Redis as well."""

            def enqueue_jobs(self):
                jobs = super().enqueue_jobs()
                switchyard_beat()
                return jobs

        logging.getLogger("rq_scheduler.scheduler").addFilter(
            lambda record: "Lock already taken" not in record.getMessage())
        log.info("starting rq-scheduler over Switchyard's schedules (poll %.2fs)", poll)
        try:
            LedgerScheduler(connection=self.rq_redis, interval=poll,
                            name=switchyard_beat.name).run()
        finally:
            switchyard_beat.stop()
