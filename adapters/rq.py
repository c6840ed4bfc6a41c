"""The RQ engine: one entry function runs every registered job.

Every Switchyard job reaches RQ as a call of :func:`perform`; the RQ glue behind it
(lean workers that skip the bookkeeping the ledger already does, a pool whose workers
run no RQ scheduler, a queue whose dequeue notes the delivery in hand, the
rq-scheduler loop) is in :mod:`adapters.rq_glue`, whose docstring lists the RQ
internals it relies on.
"""

from __future__ import annotations

import logging
import os

from rq import Queue
from rq.serializers import JSONSerializer
from rq.utils import now as utcnow, utcformat

from . import inhand
from .connections import QUIET_CLIENT, redis_client
from .engine import Engine
from .ledger import Dispatch
from .types import Capability
from .maintenance import SchedulerBeat
from .rq_glue import (
    _ENTRY,
    LedgerScheduler,
    _LeanForkWorker,
    _LeanSimpleWorker,
    _Pool,
    _Queue,
    bind_worker_engine,
    run_one_worker,
    perform,  # RQ's jobs name it adapters.rq.perform
)

__all__ = ["RQEngine", "perform"]

log = logging.getLogger("switchyard.rq")

# ':' is outside the characters of a queue name ([A-Za-z0-9_.-]), so no user queue
# (say "default.high") is ever another queue's priority list.
_PRIORITY_SUFFIX = {"high": ":high", "default": "", "low": ":low"}


class RQEngine(Engine):
    """Runs jobs on RQ; each named queue is three RQ queues, one per priority. RQ's
    queues live in the ledger's own Redis, so a job and its delivery commit together."""

    name = "rq"
    capabilities = frozenset(Capability)
    shares_ledger_redis = True
    stop_handler_modules = ("rq.", "rq_scheduler.")  # RQ's cold shutdown raises SystemExit

    def __init__(self, client):
        super().__init__(client)
        self.refuse_cluster_broker(None)
        self.in_hand_key = f"{self.settings.namespace}rq:inhand"  # written by the pop
        # RQ stores bytes, so it gets its own client that does not decode.
        self.rq_redis = redis_client(
            self.settings, socket_connect_timeout=self.settings.redis_timeout,
            health_check_interval=30, **QUIET_CLIENT)
        self._queues: dict[str, Queue] = {}

    def _engine_name(self, queue: str, priority: str) -> str:
        return self.settings.queue_prefix + queue + _PRIORITY_SUFFIX[priority]

    def _queue(self, engine_name: str) -> Queue:
        queue = self._queues.get(engine_name)
        if queue is None:
            queue = _Queue(engine_name, connection=self.rq_redis, serializer=JSONSerializer)
            self._queues[engine_name] = queue
        return queue

    def transaction(self):
        return self.rq_redis.pipeline(transaction=True)

    def publish(self, deliveries: list[Dispatch], pipeline=None) -> None:
        """RQ jobs for the deliveries, in the client's transaction (or one of their own)."""
        if pipeline is None:
            with self.transaction() as pipe:
                pipe.multi()
                self.publish(deliveries, pipe)
                pipe.execute()
            return
        now = utcformat(utcnow())
        pushed: dict = {}  # a queue's key -> its job ids, one RPUSH after the hashes
        for dispatch in deliveries:
            queue = self._queue(self._engine_name(dispatch.queue, dispatch.priority))
            rq_id = f"{dispatch.job_id}-{dispatch.token}"
            queue.push_call(
                pipeline, rq_id, [dispatch.job_id, dispatch.token],
                timeout=self.time_limit(dispatch),
                # Switchyard's workers keep no RQ result at all. For a stock RQ worker, a
                # 1 s record is cheaper than 0 s, which RQ 3 deletes through a slower path.
                result_ttl=1,
                failure_ttl=self.settings.job_ttl,
                description=f"{dispatch.job_type} {dispatch.job_id}",
                now=now, push=False,
            )
            pushed.setdefault(queue.key, []).append(rq_id)
        for key, ids in pushed.items():
            pipeline.rpush(key, *ids)

    def recover_stranded(self) -> int:
        """Deliveries noted in hand (by the pop) and never claimed: delivered again."""
        return inhand.recover(self.client.ledger, self.in_hand_key,
                              self.rq_redis)

    def worker_queue_names(self, queues: list[str]) -> list[str]:
        """RQ queue names in the order a worker must listen: all highs, then defaults, then lows."""
        return [self._engine_name(q, p) for p in ("high", "default", "low") for q in queues]

    def close(self) -> None:
        self.rq_redis.close()

    def forks_after_start(self, concurrency, forking=False, **options):
        """One SimpleWorker forks nothing; a pool, or RQ's fork-per-job Worker, does."""
        return forking or concurrency > 1

    def needs_supervisor(self, concurrency, forking=False, **options):
        """One SimpleWorker runs its jobs in its own process: a job's ``os._exit`` ends
        it (a forking Worker loses only the horse, and a pool replaces its workers)."""
        return concurrency == 1 and not forking

    def run_worker(self, queues=None, concurrency=1, name=None, forking=False):
        """Run ``concurrency`` RQ workers under RQ's WorkerPool.

        By default each is an RQ ``SimpleWorker`` (no fork per job); timeouts and
        crash recovery come from Switchyard's runner and ledger, so nothing is lost.
        ``forking=True`` uses RQ's fork-per-job ``Worker``. Either skips the RQ
        bookkeeping the ledger already does (see the module docstring).
        """
        bind_worker_engine(self)
        _Queue.inhand_key = self.in_hand_key
        worker_class = _LeanForkWorker if forking else _LeanSimpleWorker
        names = self.worker_queue_names(queues)
        log.info("starting %d RQ %s(s) on %s", concurrency,
                 "Worker" if forking else "SimpleWorker", ", ".join(names))
        if concurrency == 1:
            # One worker is this process (no pool to hold it: under the launcher, the
            # supervisor is the parent that starts it again); its loop is a thread
            # beside it, or for a forking Worker a process forked before it starts.
            with self.maintenance(queues, concurrency, name, forking=forking):
                # RQ's own name is per process: one that a job took down stays
                # registered until its key expires, and RQ refuses a second of a name
                run_one_worker(f"{name}.{os.getpid()}" if name else None, names,
                               self.settings, worker_class)
            return
        pool = _Pool(names, connection=self.rq_redis, num_workers=concurrency,
                     worker_class=worker_class, serializer=JSONSerializer)
        pool.settings = self.settings
        with self.maintenance(queues, concurrency, name, forking=forking):
            pool.start(logging_level="INFO")

    def run_scheduler(self, poll=1.0, catch_up=1, name=None):
        """Run rq-scheduler; each of its beats also fires Switchyard's schedules."""
        switchyard_beat = SchedulerBeat(self.client, poll, catch_up, name)

        logging.getLogger("rq_scheduler.scheduler").addFilter(
            lambda record: "Lock already taken" not in record.getMessage())
        log.info("starting rq-scheduler over Switchyard's schedules (poll %.2fs)", poll)
        try:
            LedgerScheduler(connection=self.rq_redis, interval=poll,
                            name=switchyard_beat.name, beat=switchyard_beat).run()
        finally:
            switchyard_beat.stop()
