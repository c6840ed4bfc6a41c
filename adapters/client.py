"""The client: what the service and users hold, the same whatever engine runs the jobs.

``Switchyard(engine, settings)`` (or :func:`adapters.create_adapter`) validates jobs
(:mod:`adapters.validation`), writes them to the ledger (:mod:`adapters.ledger`) and
hands their deliveries to its engine (:mod:`adapters.engine`). Everything a caller does
-- enqueue, read, wait, cancel, retry, workflows, schedules, queues, workers, stats --
is here, once. A job's route, whoever submits it: validated into a record; then, if
the engine shares the ledger's Redis, the records and their deliveries in one MULTI;
otherwise the records under a dispatch guard, the deliveries, the guard lifted.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Iterable, Iterator

import redis

from .client_writes import WRITE_FAILED, JobWrites
from .connections import QUIET_CLIENT, blocking_twin, redis_client
from .engine import Engine
from .errors import (InvalidState, JobNotFound, UnsupportedFeature,
                     WaitTimeout, unavailable)
from .ledger import Ledger
from .options import JobOptions
from .resolve import resolve_engine
from .operations import Operations
from .settings import AdapterSettings
from .types import Capability, JobInfo, JobState, QueueStats, WorkerInfo, utc
from .validation import build_records, replay
from .workflows import Workflows

log = logging.getLogger("switchyard.adapter")

__all__ = ["Switchyard", "KeySpace", "create_adapter"]

_READ = "cannot read from Redis"
WAIT_STEP = 1.0
"""The longest :meth:`Switchyard.wait` blocks before it reads the job again (seconds)."""


class KeySpace:
    """The ledger's Redis for a job module's own small records: ``redis`` (a decoding
    client of this process's own) and ``namespace``, which begins every key it writes
    (then the module's own name: ``sy:hook:...``)."""

    def __init__(self, client: redis.Redis, namespace: str):
        self.redis = client
        self.namespace = namespace


class Switchyard(JobWrites, Workflows, Operations):
    """One ledger and one engine behind Switchyard's vocabulary."""

    def __init__(self, engine: type[Engine] | str | None = None,
                 settings: AdapterSettings | None = None):
        if engine is None or isinstance(engine, str):
            engine = resolve_engine(engine or os.environ.get("QUEUE_BACKEND") or "rq")
        self.settings = settings or AdapterSettings.from_env()
        self._pid = os.getpid()
        self._process_ledger = Ledger(self._connect(), self.settings)
        self._blocking: tuple[int, redis.Redis] | None = None  # (pid, client) of wait's reads
        self.engine: Engine = engine(self)

    @property
    def ledger(self) -> Ledger:
        """The ledger, on a connection of this process's own (:meth:`process_ledger`)."""
        return self.process_ledger()

    @property
    def redis(self) -> redis.Redis:
        """The ledger's Redis client (decoding), of this process's own."""
        return self.process_ledger().r

    @property
    def name(self) -> str:
        """The engine's alias (``rq``, ``celery``, ``inline``, ...)."""
        return self.engine.name

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.engine.capabilities

    def _connect(self) -> redis.Redis:
        s = self.settings
        return redis_client(s, decode_responses=True, socket_connect_timeout=s.redis_timeout,
                            socket_timeout=s.redis_timeout, health_check_interval=30,
                            **QUIET_CLIENT)

    def process_ledger(self) -> Ledger:
        """A ledger on a connection of this process's own: a worker child forked while
        another thread of its parent held a lock of the parent's pool would wait on it
        for ever, so children never touch the parent's client."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._process_ledger = Ledger(self._connect(), self.settings)
        return self._process_ledger

    def supports(self, capability: Capability) -> bool:
        """True if the engine declares ``capability``."""
        return capability in self.engine.capabilities

    def require(self, capability: Capability, what: str | None = None) -> None:
        """Raise ``UnsupportedFeature`` unless ``capability`` is declared."""
        if capability not in self.engine.capabilities:
            raise UnsupportedFeature(
                f"the {self.name} adapter does not support {what or capability.value}")

    # -- enqueue ------------------------------------------------------------------
    def enqueue(self, job_type: str, payload: dict | None = None,
                options: JobOptions | None = None, *, tenant: str = "default",
                links: dict | None = None, retry_of: str | None = None) -> JobInfo:
        """Record a job in the ledger and hand it to the engine (or hold it until due)."""
        return self._enqueue([(job_type, payload, options)], tenant, links, retry_of,
                             batch=False)[0]

    def enqueue_many(self, jobs: Iterable[tuple[str, dict | None, JobOptions | None]], *,
                     tenant: str = "default", links: dict | None = None,
                     retry_of: str | None = None) -> list[JobInfo]:
        """Validate every job first, then write them all at once: all or none. Errors
        name each job by its place (``jobs.3.options.delay``), even in a batch of one."""
        return self._enqueue(list(jobs), tenant, links, retry_of, batch=True)

    def _enqueue(self, jobs: list, tenant: str, links: dict | None, retry_of: str | None,
                 batch: bool) -> list[JobInfo]:
        now = time.time()
        records = build_records(self, jobs, tenant, now, links, retry_of, batch=batch)
        early: list[JobInfo] = []  # built while Redis writes them, where it can be

        def answers() -> None:
            early.extend(JobInfo.from_record(rec) for rec in records)

        outcomes = self._write(records, now, batch=batch,
                               meanwhile=None if self.engine.runs_at_publish else answers)
        if self.engine.runs_at_publish:
            return [self.get(job_id) for _, job_id in outcomes]
        if early and all(created for created, _ in outcomes):
            return early
        # A job just created is what was written; only an idempotent hit is read back.
        return [JobInfo.from_record(rec) if created else self.get(job_id, tenant=tenant)
                for rec, (created, job_id) in zip(records, outcomes)]

    # -- reading ------------------------------------------------------------------
    def get(self, job_id: str, *, tenant: str | None = None) -> JobInfo:
        """The job's ledger record; ``JobNotFound`` if unknown or another tenant's."""
        with unavailable(_READ):
            rec = self.ledger.load(job_id)
        if not rec or (tenant is not None and rec.get("tenant") != tenant):
            raise JobNotFound(f"no job {job_id!r}")
        return JobInfo.from_record(rec)

    def list(self, *, tenant: str = "default", state: str | None = None,
             job_type: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[JobInfo], str | None]:
        """The tenant's jobs, newest first, filtered; returns ``(items, next_cursor)``."""
        with unavailable(_READ):
            records, next_cursor = self.ledger.page(tenant, state=state, job_type=job_type,
                                                    limit=limit, cursor=cursor)
        return [JobInfo.from_record(r) for r in records], next_cursor

    def created_between(self, tenant: str, start: float, end: float) -> Iterator[dict]:
        """``id``, ``type``, ``state`` and ``created_at`` of each of the tenant's jobs
        created in ``[start, end)``, oldest first (for reports over many jobs)."""
        with unavailable(_READ):
            yield from self.ledger.created_between(tenant, start, end)

    def history(self, job_id: str, *, tenant: str | None = None) -> list[dict]:
        """Every state change of the job, oldest first: ``{"state", "at", "attempt"}``;
        ``JobNotFound`` if unknown or another tenant's."""
        self.get(job_id, tenant=tenant)
        with unavailable(_READ):
            return self.ledger.events(job_id)

    def wait(self, job: str | JobInfo, *, timeout: float, tenant: str | None = None) -> JobInfo:
        """The job once it has ended; ``WaitTimeout`` (a ``TimeoutError``) if it has not
        within ``timeout`` seconds. ``job``: its id, or a ``JobInfo`` just read or
        enqueued (of ``tenant``: it saves the first read). Woken as it ends, not
        polling: the ledger counts this caller on the job, and the script that ends it
        pushes to the job's done list, which this blocks on (and reads the job in the
        same round trip, at least once a second)."""
        deadline = time.monotonic() + timeout
        info = job if isinstance(job, JobInfo) else self.get(job, tenant=tenant)
        watch = True
        while not info.state.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {info.id} is still {info.state.value} after "
                                  f"{timeout:g}s")
            with unavailable(_READ):
                rec = self.ledger.await_end(info.id, min(left, WAIT_STEP), self._waiter(),
                                            watch=watch)
            watch = False
            if not rec or (tenant is not None and rec.get("tenant") != tenant):
                raise JobNotFound(f"no job {info.id!r}")
            info = JobInfo.from_record(rec)
        return info

    def _waiter(self) -> redis.Redis:
        """The client of :meth:`wait`'s blocking reads (connections of this process's own)."""
        if self._blocking is None or self._blocking[0] != os.getpid():
            self._blocking = (os.getpid(), blocking_twin(
                self.redis, WAIT_STEP + self.settings.redis_timeout))
        return self._blocking[1]

    def workers(self, *, within: float = 15.0) -> list[WorkerInfo]:
        """The worker and scheduler processes that sent a heartbeat in the last
        ``within`` seconds, on this ledger (any engine's)."""
        with unavailable(_READ):
            raw = self.ledger.workers(within)

        def at(value: str | None):
            return utc(float(value)) if value else None

        return [WorkerInfo(
            name=w["id"], role=w.get("role") or "worker", backend=w.get("backend", ""),
            queues=[q for q in (w.get("queues") or "").split(",") if q],
            concurrency=int(w.get("concurrency") or 0), host=w.get("host", ""),
            pid=int(w.get("pid") or 0), started_at=at(w.get("started_at")),
            seen_at=at(w.get("seen_at"))) for w in raw]

    def wait_for_workers(self, n: int = 1, *, timeout: float,
                         queue: str | None = None) -> list[WorkerInfo]:
        """At least ``n`` live workers of this engine (listening to ``queue`` if given)
        once they are up; ``WaitTimeout`` if they are not within ``timeout``."""
        def live():
            return [w for w in self.workers() if w.role == "worker" and w.backend == self.name
                    and (queue is None or queue in w.queues)]

        return _poll(live, lambda found: len(found) >= n, timeout,
                     lambda found: f"{len(found)} of {n} {self.name} worker(s) up after "
                                   f"{timeout:g}s")

    def queue_stats(self) -> QueueStats:
        """Jobs per waiting state, the backlog of every queue, and the ledger's counters."""
        with unavailable(_READ):
            return QueueStats(states=self.ledger.counts_by_state(), paused=self.ledger.paused(),
                              backlog=self.ledger.backlog(), counters=self.ledger.stats())

    def memory_policy(self) -> str:
        """The ledger Redis's ``maxmemory-policy`` (anything but ``noeviction`` can drop jobs)."""
        with unavailable(_READ):
            return self.redis.config_get("maxmemory-policy").get("maxmemory-policy", "?")

    def keyspace(self) -> KeySpace:
        """The ledger's Redis and namespace, for a job module's own records."""
        return KeySpace(self.redis, self.settings.home_namespace)

    def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless Redis answers."""
        with unavailable("Redis is unreachable"):
            self.redis.ping()

    # -- control ------------------------------------------------------------------
    def cancel(self, job_id: str, *, tenant: str | None = None,
               reason: str = "requested") -> JobInfo:
        """Cancel a scheduled, queued or running job; ``InvalidState`` if it ended."""
        info = self.get(job_id, tenant=tenant)
        if info.state is JobState.STARTED:
            self.require(Capability.CANCEL_RUNNING, "canceling running jobs")
        elif not info.state.ended:
            self.require(Capability.CANCEL_QUEUED, "canceling queued jobs")
        with unavailable(WRITE_FAILED):
            outcome = self.ledger.cancel(job_id, reason, time.time())
        if outcome == "missing":
            raise JobNotFound(f"no job {job_id!r}")
        if outcome.startswith("ended:"):
            state = outcome.split(":", 1)[1]
            raise InvalidState(f"job {job_id} already ended ({state})", state=state)
        return self.get(job_id)

    def retry(self, job_id: str, *, tenant: str | None = None) -> JobInfo:
        """Replay a failed or canceled job as a new job with the same type and payload."""
        self.require(Capability.RETRY_FAILED, "retrying failed jobs")
        info = self.get(job_id, tenant=tenant)
        spec, links = replay(info)
        return self.enqueue(*spec, tenant=info.tenant, links=links, retry_of=info.id)

    def schedules(self, catch_up: int = 1):
        """The schedule store (create/get/list/update/delete) on this ledger."""
        from .schedules import Schedules

        self.require(Capability.SCHEDULES, "periodic schedules")
        return Schedules(self, catch_up=catch_up)

    # -- the processes --------------------------------------------------------------
    def run_worker(self, queues: list[str] | None = None, concurrency: int = 1,
                   name: str | None = None, **engine_options) -> None:
        """Run the engine's worker on ``queues`` (default: the default queue)."""
        self.engine.run_worker(queues or [self.settings.default_queue], concurrency, name,
                               **engine_options)

    def run_scheduler(self, poll: float = 1.0, catch_up: int = 1,
                      name: str | None = None) -> None:
        """Run the scheduler process: it fires the schedules kept in the ledger."""
        self.require(Capability.SCHEDULES, "periodic schedules")
        self.engine.run_scheduler(poll, catch_up, name)

    def dispatch_due(self, limit: int = 100, unpark: int = 0, beat: tuple | None = None) -> int:
        """Release due jobs, reap lost ones, expire stale ones; returns how many were
        published. With ``unpark``, first release up to that many parked jobs of queues
        no longer paused (``ledger.unparked`` then says how many); a ``beat`` (the
        arguments of ``ledger.worker_heartbeat``) rides in the same call."""
        deliveries = self.ledger.maintain(time.time(), limit, unpark, beat)
        if not deliveries:
            return 0
        ids = [d.job_id for d in deliveries]
        try:
            if self.engine.shares_ledger_redis:
                with self.engine.transaction() as pipe:
                    pipe.multi()
                    self.engine.publish(deliveries, pipe)
                    self.ledger.dispatched(ids, pipeline=pipe)
                    pipe.execute()
                return len(ids)
            self.engine.publish(deliveries)
        except Exception:
            log.warning("publishing %d due job(s) at once failed; one by one", len(ids),
                        exc_info=True)
            ids = []
            for delivery in deliveries:
                try:
                    self.engine.publish([delivery])
                    ids.append(delivery.job_id)
                except Exception:
                    log.exception("could not publish job %s; will try again", delivery.job_id)
        if ids:
            self.ledger.dispatched(ids)
        return len(ids)

    def recover_stranded(self) -> int:
        """Deliveries a dead worker took but never claimed, delivered again (the engine's)."""
        return self.engine.recover_stranded()

    def close(self) -> None:
        """Release connections."""
        self.engine.close()
        self.redis.close()
        if self._blocking is not None and self._blocking[0] == os.getpid():
            self._blocking[1].close()

    def __repr__(self) -> str:
        return f"<Switchyard {self.name}>"


def _poll(read, done, timeout: float, why):
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = read()
        if done(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(why(value))
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)


def create_adapter(name: str | None = None, settings: AdapterSettings | None = None) -> Switchyard:
    """A client on the engine ``name`` names (an alias or a dotted path), or on
    ``QUEUE_BACKEND`` (default ``rq``)."""
    return Switchyard(name, settings)
