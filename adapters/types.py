"""The values the client hands out: job states, capabilities, and what it reports of
jobs, workflows, workers and queues. Plain frozen data; nothing here talks to Redis."""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timezone
from typing import Any

from . import record

__all__ = ["JobState", "Capability", "JobInfo", "WorkflowState", "WorkflowInfo",
           "WorkerInfo", "QueueStats", "QueueInfo", "utc"]


class JobState(str, enum.Enum):
    """The only states the API shows."""

    SCHEDULED = "scheduled"
    """Waiting for its time (a delay, ``run_at``, a retry backoff or a rate-limit slot)."""
    QUEUED = "queued"
    """Handed to the engine; waiting for a worker."""
    STARTED = "started"
    """A worker is running it."""
    RETRYING = "retrying"
    """An attempt failed and another one is scheduled."""
    SUCCEEDED = "succeeded"
    """Finished; ``result`` holds the return value."""
    FAILED = "failed"
    """Retries are exhausted; ``error`` says why. Failed jobs are the dead-letter list."""
    CANCELED = "canceled"
    """Canceled by a caller, by expiry or by a failed upstream job; ``cancel_reason`` says which."""

    @property
    def ended(self) -> bool:
        """True for the three final states."""
        return self in _ENDED


_ENDED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED}


class Capability(str, enum.Enum):
    """What an adapter can do; the conformance suite checks each declared one."""

    DELAY = "delay"
    """``delay`` / ``run_at``: a job is not run before its time."""
    EXPIRY = "expiry"
    """``expires_at``: a job not started by then is canceled and never run."""
    RETRIES = "retries"
    """Retries with exponential backoff and jitter on listed exception types."""
    TIMEOUTS = "timeouts"
    """A hard per-job timeout stops the job."""
    PROGRESS = "progress"
    """Progress written by a running job can be read while it runs."""
    CANCEL_QUEUED = "cancel_queued"
    """A scheduled or queued job can be canceled and never runs."""
    CANCEL_RUNNING = "cancel_running"
    """A running job can be canceled and stops."""
    RETRY_FAILED = "retry_failed"
    """A failed job can be replayed as a new job."""
    IDEMPOTENCY = "idempotency"
    """``idempotency_key`` returns the first job instead of enqueuing another."""
    QUEUES = "queues"
    """Named queues; a worker runs only the queues it listens to."""
    PRIORITIES = "priorities"
    """``high`` jobs run before ``low`` ones in the same queue."""
    RATE_LIMIT = "rate_limit"
    """A per-job-type rate limit holds across all worker processes."""
    JSON_ONLY = "json_only"
    """The engine's broker refuses anything but JSON (a pickled message never runs)."""
    CRASH_RECOVERY = "crash_recovery"
    """A job whose worker died is run again, up to a capped number of lost deliveries."""
    WORKFLOWS = "workflows"
    """Chains, groups and chords whose edges are kept by the ledger."""
    SCHEDULES = "schedules"
    """Periodic schedules fired by the engine's own scheduler process, once per tick."""
    PAUSE_QUEUES = "pause_queues"
    """A paused queue's jobs stay queued, delivered or not, until it is resumed; then each
    runs once (:meth:`adapters.queues.Queues.pause`)."""


def utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobInfo:
    """One job as the ledger records it, the same whatever the engine."""

    id: str
    """Stable id shared by every attempt."""
    type: str
    """The registered job name, e.g. ``email.send``."""
    state: JobState
    """Current state."""
    tenant: str
    """The tenant that owns the job."""
    backend: str
    """The engine alias that runs it (``rq``, ``celery``, ``inline``)."""
    queue: str
    """Named queue."""
    priority: str
    """``high`` | ``default`` | ``low``."""
    payload: dict
    """The JSON arguments the job function receives."""
    attempts: int
    """Attempts started so far (1 on the first run)."""
    max_retries: int
    """Retries allowed after the first attempt."""
    timeout: float
    """Hard time limit of one attempt, seconds."""
    progress: dict | None
    """``{"current", "total", "message"}`` as last reported by the job."""
    result: Any
    """The JSON return value once succeeded."""
    error: dict | None
    """``{"type", "message"}`` of the last failure."""
    cancel_reason: str | None
    """Why it was canceled: ``requested``, ``expired``, ``upstream_failed``, ..."""
    created_at: datetime
    """When it was enqueued."""
    run_at: datetime | None
    """When it may start, as asked (``delay`` or ``run_at``; kept also when already
    past, the job then queued at once), or when its next retry is due."""
    expires_at: datetime | None
    """Its expiry, if any."""
    started_at: datetime | None
    """When the latest attempt started."""
    finished_at: datetime | None
    """When it ended."""
    worker: str | None
    """``host:pid`` of the worker that ran the latest attempt."""
    lost_deliveries: int
    """How many times a worker died while running it."""
    retry_of: str | None
    """The id of the failed job this one replays."""
    idempotency_key: str | None
    """The key it was enqueued with."""
    links: dict = dataclasses.field(default_factory=dict)
    """Related ids, e.g. ``{"workflow": ...}`` or ``{"schedule": ...}``."""
    retried_as: tuple[str, ...] = ()
    """The ids of the jobs that replay this one (its retries), oldest first."""

    @classmethod
    def from_record(cls, rec: dict[str, str]) -> "JobInfo":
        """Build from the ledger hash, read through the record schema (:mod:`adapters.record`)."""
        f = record.decode(rec, _JOB_FIELDS)
        return cls(
            id=f["id"], type=f["type"], state=JobState(f["state"]), tenant=f["tenant"],
            backend=f["backend"], queue=f["queue"], priority=f["priority"],
            payload=f["payload"] or {}, attempts=f["attempts"], max_retries=f["max_retries"],
            timeout=f["timeout"], progress=f["progress"], result=f["result"], error=f["error"],
            cancel_reason=f["cancel_reason"] or None, created_at=utc(f["created_at"]),
            run_at=utc(f["run_at"]), expires_at=utc(f["expires_at"]),
            started_at=utc(f["started_at"]), finished_at=utc(f["finished_at"]),
            worker=f["worker"] or None, lost_deliveries=f["lost"],
            retry_of=f["retry_of"] or None, idempotency_key=f["idempotency_key"] or None,
            links=f["links"] or {}, retried_as=tuple((f["retried_as"] or "").split()),
        )


_JOB_FIELDS = ("id", "type", "state", "tenant", "backend", "queue", "priority", "payload",
               "attempts", "max_retries", "timeout", "progress", "result", "error",
               "cancel_reason", "created_at", "run_at", "expires_at", "started_at",
               "finished_at", "worker", "lost", "retry_of", "idempotency_key", "links",
               "retried_as")
"""The record's fields a JobInfo shows (not its history, which ``history()`` reads)."""


class WorkflowState(str, enum.Enum):
    """A workflow's overall state."""

    RUNNING = "running"
    """Some of its jobs have not ended."""
    SUCCEEDED = "succeeded"
    """Every job succeeded (for a chord: its body did)."""
    FAILED = "failed"
    """A job failed for good; the jobs after it were canceled (``upstream_failed``)."""
    CANCELED = "canceled"
    """It was canceled."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkflowInfo:
    """A chain, group or chord and its jobs, from the ledger."""

    id: str
    """The workflow's id."""
    kind: str
    """``chain``, ``group`` or ``chord``."""
    state: WorkflowState
    """Overall state."""
    tenant: str
    """The owner."""
    created_at: datetime
    """When it was enqueued."""
    finished_at: datetime | None
    """When it ended."""
    jobs: list[JobInfo]
    """Its jobs in order (a chord's header first, its body last)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """A live worker (or scheduler) process, as its last heartbeat announced it."""

    name: str
    """The name it runs under (``-n``), by default ``host:pid``."""
    role: str
    """``worker``, or ``scheduler`` for a scheduler process."""
    backend: str
    """The engine alias it runs."""
    queues: list[str]
    """The queues it listens to (empty for a scheduler)."""
    concurrency: int
    """Jobs it runs at once (0 for a scheduler)."""
    host: str
    """The machine it runs on."""
    pid: int
    """Its process id there."""
    started_at: datetime | None
    """When it started."""
    seen_at: datetime | None
    """Its last heartbeat."""



@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueStats:
    """What the ledger counts, for health checks and metrics (:meth:`Switchyard.queue_stats`)."""

    states: dict[str, int]
    """Jobs per state, across tenants."""
    backlog: dict[str, tuple[int, float | None]]
    """Per queue: jobs in state queued, and when the oldest of them became queued."""
    counters: dict[str, float]
    """The ledger's running counters (finished jobs by type, backend and outcome; run-time
    histogram buckets), as :mod:`service.metrics` exports them."""
    paused: dict[str, dict] = dataclasses.field(default_factory=dict)
    """The paused queues: ``{queue: {"at": datetime, "by": str | None}}``; their parked
    jobs are in ``backlog`` (they are queued)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueInfo:
    """One queue as the operator sees it (:meth:`adapters.queues.Queues.list`)."""

    name: str
    paused: bool
    paused_at: datetime | None
    """When it was paused (the first pause's time, if paused twice)."""
    paused_by: str | None
    """Who paused it, as the caller said (the REST API: the operator key's label)."""
    queued: int
    """Jobs in state queued, parked ones (held by the pause) included, across tenants."""
    oldest_queued_age: float | None
    """Seconds since the oldest of them became queued; ``None`` when none is."""
    running: int
    """Jobs of this queue running now."""
    waiting: int = 0
    """Its jobs scheduled or retrying (waiting for their time; of the soonest 5000 due)."""
    finished_per_minute: float = 0.0
    """Attempts of its jobs that ended (succeeded, failed, retried or canceled while
    running) per minute, over the last ``THROUGHPUT_MINUTES`` whole minutes."""
