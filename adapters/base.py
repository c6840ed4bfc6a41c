"""The adapter interface: value types, capability flags and the QueueAdapter base.

An engine adapter implements three things: ``_publish`` (hand one job delivery to
the engine), ``run_worker`` (run the engine's own worker) and its ``capabilities``.
Everything else -- the ledger writes, cancel, retry, idempotency, expiry, schedules
held in Redis -- lives here and in :mod:`adapters.runner`, once for every engine.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import hashlib
import inspect
import json
import logging
import math
import os
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

import redis

from .connections import redis_client
from .errors import (
    BackendUnavailable,
    InvalidJob,
    InvalidState,
    JobNotFound,
    UnsupportedFeature,
    WaitTimeout,
)
from .jsonlimits import json_problems, lone_surrogate
from .options import JobOptions, Priority
from .ledger import Dispatch, Ledger
from .registry import JobDefinition, get_definition
from .settings import AdapterSettings

log = logging.getLogger("switchyard.adapter")

__all__ = [
    "JobState",
    "Priority",
    "Capability",
    "JobOptions",
    "JobInfo",
    "WorkflowInfo",
    "WorkflowState",
    "WorkerInfo",
    "QueueAdapter",
    "Dispatch",
]


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


_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_ENDED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED}


_PRIORITIES = tuple(p.value for p in Priority)


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


# Connections skip CLIENT SETINFO: it only labels them in CLIENT LIST, and redis-py
# reads its package metadata from disk for it on every new connection -- once per job
# in a fork-per-job worker, whose work horse connects afresh.
QUIET_CLIENT = ({"driver_info": None}
                if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
                else {"lib_name": None, "lib_version": None})


def _utc(ts: float | None) -> datetime | None:
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

    @classmethod
    def from_record(cls, rec: dict[str, str]) -> "JobInfo":
        """Build from the ledger hash."""

        def num(key: str) -> float | None:
            value = rec.get(key)
            return float(value) if value not in (None, "") else None

        def js(key: str) -> Any:
            value = rec.get(key)
            return json.loads(value) if value not in (None, "") else None

        return cls(
            id=rec["id"],
            type=rec["type"],
            state=JobState(rec["state"]),
            tenant=rec["tenant"],
            backend=rec.get("backend", ""),
            queue=rec["queue"],
            priority=rec.get("priority", "default"),
            payload=js("payload") or {},
            attempts=int(rec.get("attempts") or 0),
            max_retries=int(rec.get("max_retries") or 0),
            timeout=float(rec.get("timeout") or 0),
            progress=js("progress"),
            result=js("result"),
            error=js("error"),
            cancel_reason=rec.get("cancel_reason") or None,
            created_at=_utc(num("created_at")),
            run_at=_utc(num("run_at")),
            expires_at=_utc(num("expires_at")),
            started_at=_utc(num("started_at")),
            finished_at=_utc(num("finished_at")),
            worker=rec.get("worker") or None,
            lost_deliveries=int(rec.get("lost") or 0),
            retry_of=rec.get("retry_of") or None,
            idempotency_key=rec.get("idempotency_key") or None,
            links=js("links") or {},
        )


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


def _timestamp(value: datetime | float | None, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidJob(f"{field} needs a timezone", {field: ["must include a timezone offset"]})
        return value.timestamp()
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise InvalidJob(f"{field} is not a time", {field: ["must be a datetime or a Unix timestamp"]})


class QueueAdapter(abc.ABC):
    """One queue engine behind Switchyard's vocabulary.

    Subclasses set ``name`` and ``capabilities`` and implement ``_publish`` and
    ``run_worker``; they may override ``_publish_many`` to batch.
    """

    name: str = "abstract"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, settings: AdapterSettings | None = None):
        self.settings = settings or AdapterSettings.from_env()
        self.redis = self._connect()
        self.ledger = Ledger(self.redis, self.settings)
        self._pid = os.getpid()
        self._process_ledger = self.ledger

    def _connect(self) -> redis.Redis:
        return redis_client(
            self.settings,
            decode_responses=True,
            socket_connect_timeout=self.settings.redis_timeout,
            socket_timeout=self.settings.redis_timeout,
            health_check_interval=30,
            **QUIET_CLIENT,
        )

    def process_ledger(self) -> Ledger:
        """A ledger on a connection of this process's own.

        A worker child forked while another thread of its parent held a lock of the
        parent's connection pool would wait on that lock for ever, so children never
        touch the parent's client.
        """
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._process_ledger = Ledger(self._connect(), self.settings)
        return self._process_ledger

    # -- engine glue ------------------------------------------------------------
    @abc.abstractmethod
    def _publish(self, dispatch: Dispatch) -> None:
        """Hand one delivery of a job to the engine; raise on failure."""

    @abc.abstractmethod
    def run_worker(self, queues: list[str] | None = None, concurrency: int = 1,
                   name: str | None = None) -> None:
        """Run the engine's own worker in this process until it is told to stop."""

    def run_scheduler(self, poll: float = 1.0, catch_up: int = 1,
                      name: str | None = None) -> None:
        """Run the engine's own scheduler process over the schedules in Redis."""
        self.require(Capability.SCHEDULES, "periodic schedules")
        raise NotImplementedError  # pragma: no cover - an adapter that declares it overrides this

    def schedules(self, catch_up: int = 1):
        """The schedule store (create/list/update/delete) of this adapter's ledger."""
        from .schedules import Schedules

        self.require(Capability.SCHEDULES, "periodic schedules")
        return Schedules(self, catch_up=catch_up)

    def close(self) -> None:
        """Release connections."""
        self.redis.close()

    # -- capabilities -------------------------------------------------------------
    def supports(self, capability: Capability) -> bool:
        """True if this adapter declares ``capability``."""
        return capability in self.capabilities

    def require(self, capability: Capability, what: str | None = None) -> None:
        """Raise ``UnsupportedFeature`` unless ``capability`` is declared."""
        if capability not in self.capabilities:
            raise UnsupportedFeature(
                f"the {self.name} adapter does not support {what or capability.value}"
            )

    # -- enqueue ------------------------------------------------------------------
    def enqueue(self, job_type: str, payload: dict | None = None,
                options: JobOptions | None = None, *, tenant: str = "default",
                links: dict | None = None, retry_of: str | None = None) -> JobInfo:
        """Record a job in the ledger and hand it to the engine (or hold it until due)."""
        return self.enqueue_many([(job_type, payload, options)], tenant=tenant,
                                 links=links, retry_of=retry_of)[0]

    def enqueue_many(self, jobs: Iterable[tuple[str, dict | None, JobOptions | None]], *,
                     tenant: str = "default", links: dict | None = None,
                     retry_of: str | None = None) -> list[JobInfo]:
        """Validate every job first, then write them all in one pipeline and publish."""
        now = time.time()
        records = [self._build_record(t, p, o, tenant, now, links, retry_of)
                   for t, p, o in jobs]
        if self._create_and_publish is not None and records and all(
                rec["state"] == JobState.QUEUED.value and not rec.get("idempotency_key")
                for rec in records):
            try:
                self._create_and_publish(records, now)
            except Exception as exc:
                # The transaction committed whole or not at all; if it did and the
                # answer was lost, removing the records makes the deliveries stale.
                self._rollback(records)
                raise BackendUnavailable(f"cannot write the job to Redis: {exc}") from exc
            return [JobInfo.from_record(rec) for rec in records]
        try:
            outcomes = self.ledger.create_many(records, now)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot write the job to Redis: {exc}") from exc
        self._publish_fresh([rec for rec, (created, _) in zip(records, outcomes) if created])
        # A job just created is what was written; only an idempotent hit is read back.
        return [JobInfo.from_record(rec) if created else self.get(job_id, tenant=tenant)
                for rec, (created, job_id) in zip(records, outcomes)]

    def _publish_fresh(self, records: list[dict]) -> None:
        """Hand newly written queued jobs to the engine; undo them all if it refuses."""
        fresh = [rec for rec in records if rec["state"] == JobState.QUEUED.value]
        if fresh:
            dispatches = [Dispatch.from_record(rec) for rec in fresh]
            try:
                confirmed = self._publish_many(dispatches)
            except Exception as exc:
                self._rollback(fresh)
                raise BackendUnavailable(f"the {self.name} broker refused the job: {exc}") from exc
            try:
                if not confirmed:
                    self.ledger.dispatched([d.job_id for d in dispatches])
            except redis.RedisError:
                # The dispatch guard expires on its own; the reaper then re-dispatches,
                # and the engine drops the now-stale first delivery by its token.
                log.warning("could not clear the dispatch guard of %d job(s)", len(dispatches))

    _create_and_publish = None
    """An engine whose queues live in the ledger's Redis defines
    ``_create_and_publish(records, now)``: it writes queued records without an
    idempotency key and publishes them in one transaction, so they need no guard."""

    def _publish_many(self, dispatches: list[Dispatch]) -> bool:
        """Hand the deliveries to the engine; True if their dispatch guard was lifted in
        the same write (an engine whose broker is the ledger's Redis can commit both in
        one transaction), else the caller lifts it."""
        for dispatch in dispatches:
            self._publish(dispatch)
        return False

    def _rollback(self, records: list[dict]) -> None:
        try:
            self.ledger.delete_many([(rec["id"], rec["tenant"], rec.get("idempotency_key") or "")
                                     for rec in records])
        except redis.RedisError:
            log.exception("rollback of %d unpublished job(s) failed", len(records))

    def _build_record(self, job_type: str, payload: dict | None, options: JobOptions | None,
                      tenant: str, now: float, links: dict | None, retry_of: str | None) -> dict:
        definition: JobDefinition = get_definition(job_type)
        options = options or JobOptions()
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise InvalidJob("payload must be a JSON object", {"payload": ["must be an object"]})
        # JSON would change some values on the way (``{1: 2}`` -> ``{"1": 2}``) and cannot
        # carry others; refuse them here rather than hand the job different data.
        problems = json_problems(payload, "payload")
        if problems:
            raise InvalidJob("payload is not JSON as it stands; see errors", problems)
        payload_json = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        for field, text in (("tenant", tenant), ("idempotency_key", options.idempotency_key)):
            if text is not None and not isinstance(text, str):
                raise InvalidJob(f"{field} must be a string", {field: ["must be a string"]})
            problem = text and lone_surrogate(text)
            if problem:
                raise InvalidJob(f"{field} {problem}", {field: [problem]})

        # None means "the definition's"; anything else, even "" or 0, must be valid itself
        queue = definition.queue if options.queue is None else options.queue
        if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
            raise InvalidJob("queue names are 1-64 letters, digits, '_', '-' or '.'",
                             {"queue": ["must match [A-Za-z0-9_.-]{1,64}"]})
        priority = definition.priority if options.priority is None else options.priority
        if not isinstance(priority, str) or priority not in _PRIORITIES:
            raise InvalidJob(f"priority must be one of {', '.join(_PRIORITIES)}",
                             {"priority": [f"must be one of: {', '.join(_PRIORITIES)}"]})
        priority = Priority(priority).value
        if queue != self.settings.default_queue:
            self.require(Capability.QUEUES, "named queues")
        if priority != Priority.DEFAULT.value:
            self.require(Capability.PRIORITIES, "priorities")
        if options.delay is not None and options.run_at is not None:
            raise InvalidJob("give delay or run_at, not both",
                             {"delay": ["cannot be combined with run_at"]})
        run_at = _timestamp(options.run_at, "run_at")
        if options.delay is not None:
            if not (isinstance(options.delay, (int, float)) and math.isfinite(options.delay)
                    and options.delay >= 0):
                raise InvalidJob("delay must be a non-negative number of seconds",
                                 {"delay": ["must be >= 0"]})
            run_at = now + float(options.delay)
        # A time already past is kept as asked (the job is queued at once).
        due = run_at is not None and run_at > now
        if due:
            self.require(Capability.DELAY, "delayed jobs")
        expires_at = _timestamp(options.expires_at, "expires_at")
        if expires_at is not None:
            self.require(Capability.EXPIRY, "expiring jobs")
            if expires_at <= (run_at if due else now):
                raise InvalidJob("expires_at is before the job could start",
                                 {"expires_at": ["must be after now and after run_at"]})
        max_retries = definition.max_retries if options.max_retries is None else options.max_retries
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise InvalidJob("max_retries must be >= 0", {"max_retries": ["must be >= 0"]})
        if max_retries and not self.supports(Capability.RETRIES):
            self.require(Capability.RETRIES, "retries")
        timeout = definition.timeout if options.timeout is None else options.timeout
        if timeout is None:
            timeout = self.settings.default_timeout
        if not (isinstance(timeout, (int, float)) and 0 < timeout <= self.settings.max_timeout):
            raise InvalidJob(f"timeout must be in (0, {self.settings.max_timeout}] seconds",
                             {"timeout": [f"must be > 0 and <= {self.settings.max_timeout}"]})
        if definition.rate_limit:
            self.require(Capability.RATE_LIMIT, "rate limits")
        if options.idempotency_key is not None:
            self.require(Capability.IDEMPOTENCY, "idempotency keys")
            if not options.idempotency_key or len(options.idempotency_key) > 255:
                raise InvalidJob("idempotency_key must be 1-255 characters",
                                 {"idempotency_key": ["must be 1-255 characters"]})
        limit, window = definition.rate_limit or (0, 0.0)
        fingerprint = ""
        if options.idempotency_key:
            # What the request asked for, not what was derived from it: a delay is
            # compared as given, so the same request sent again a second later matches.
            fingerprint = hashlib.sha256(json.dumps(
                [definition.name, payload, queue, priority, options.delay,
                 _timestamp(options.run_at, "run_at"), expires_at, max_retries, float(timeout)],
                sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return {
            "id": uuid.uuid4().hex,
            "type": definition.name,
            "tenant": tenant,
            "backend": self.name,
            "state": (JobState.SCHEDULED if due else JobState.QUEUED).value,
            "queue": queue,
            "priority": priority,
            "payload": payload_json,
            "attempts": "0",
            "max_retries": str(max_retries),
            "timeout": repr(float(timeout)),
            "rate": f"{limit} {window!r}" if limit else "",
            "created_at": repr(now),
            "run_at": repr(run_at) if run_at is not None else "",
            "expires_at": repr(expires_at) if expires_at else "",
            "idempotency_key": options.idempotency_key or "",
            "retry_of": retry_of or "",
            "links": json.dumps(links) if links else "",
            "token": uuid.uuid4().hex[:12],
            "fingerprint": fingerprint,  # for the ledger's idempotency check; not stored
        }

    # -- workflows ------------------------------------------------------------------
    def enqueue_workflow(self, kind: str, jobs: list[tuple[str, dict | None, JobOptions | None]],
                         body: tuple[str, dict | None, JobOptions | None] | None = None, *,
                         tenant: str = "default") -> WorkflowInfo:
        """Enqueue a ``chain`` (one after another), ``group`` (in parallel) or ``chord``
        (a group, then ``body`` once every header job succeeded) in one write.

        A chain's job reads the previous result as ``ctx.upstream``; a chord's body reads
        the header's results, in order. A waiting job's ``delay`` or ``run_at`` is the
        earliest it starts once released. When a job fails for good, the jobs that wait on
        it end canceled with reason ``upstream_failed`` -- so a chord never hangs.
        """
        self.require(Capability.WORKFLOWS, "workflows")
        if kind not in ("chain", "group", "chord"):
            raise InvalidJob(f"unknown workflow kind {kind!r}", {"kind": ["chain, group or chord"]})
        if (kind == "chord") != (body is not None):
            raise InvalidJob("a chord needs a body; chains and groups take none",
                             {"body": ["only for chords"]})
        if not jobs or len(jobs) + (body is not None) > 500:
            raise InvalidJob("a workflow holds 1 to 500 jobs", {"jobs": ["1 to 500 jobs"]})
        now = time.time()
        workflow_id = uuid.uuid4().hex
        links = {"workflow": workflow_id}
        specs = list(jobs) + ([body] if body is not None else [])
        records = []
        for index, (job_type, payload, options) in enumerate(specs):
            waits = (kind == "chain" and index > 0) or (kind == "chord" and index == len(jobs))
            options = options or JobOptions()
            field = f"jobs.{index}" if index < len(jobs) else "body"
            if options.idempotency_key is not None:
                raise InvalidJob("workflow jobs take no idempotency_key",
                                 {field: ["idempotency_key is not allowed in a workflow"]})
            try:
                rec = self._build_record(job_type, payload, options, tenant, now, links, None)
            except InvalidJob as exc:
                raise InvalidJob(f"{field}: {exc}",
                                 {f"{field}.{k}": v for k, v in exc.errors.items()}) from exc
            rec["wf"] = workflow_id
            rec["wf_role"] = "body" if index == len(jobs) else (
                "header" if kind == "chord" else "member")
            if waits:
                rec["state"] = JobState.SCHEDULED.value
                rec["waiting"] = "1"
            records.append(rec)
        if kind == "chain":
            for rec, nxt in zip(records, records[1:]):
                rec["wf_next"] = nxt["id"]
        ids = [rec["id"] for rec in records]
        workflow = {"id": workflow_id, "kind": kind, "tenant": tenant, "state": "running",
                    "created_at": repr(now), "jobs": json.dumps(ids),
                    "pending": str(len(jobs))}
        if kind == "chord":
            workflow["header"] = json.dumps(ids[:-1])
            workflow["body"] = ids[-1]
        try:
            self.ledger.create_workflow(workflow, records, now)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot write the workflow to Redis: {exc}") from exc
        try:
            self._publish_fresh(records)
        except BackendUnavailable:
            self._rollback(records)
            self.redis.delete(f"{self.settings.namespace}wf:{workflow_id}")
            raise
        return self.get_workflow(workflow_id, tenant=tenant)

    def get_workflow(self, workflow_id: str, *, tenant: str | None = None) -> WorkflowInfo:
        """The workflow and its jobs; ``JobNotFound`` if unknown or another tenant's."""
        try:
            wf = self.ledger.load_workflow(workflow_id)
            if not wf or (tenant is not None and wf.get("tenant") != tenant):
                raise JobNotFound(f"no workflow {workflow_id!r}")
            records = self.ledger.load_many(json.loads(wf["jobs"]))
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot read from Redis: {exc}") from exc
        return WorkflowInfo(
            id=wf["id"], kind=wf["kind"], state=WorkflowState(wf["state"]), tenant=wf["tenant"],
            created_at=_utc(float(wf["created_at"])),
            finished_at=_utc(float(wf["finished_at"])) if wf.get("finished_at") else None,
            jobs=[JobInfo.from_record(rec) for rec in records if rec])

    def cancel_workflow(self, workflow_id: str, *, tenant: str | None = None) -> WorkflowInfo:
        """Cancel every job of the workflow that has not ended."""
        info = self.get_workflow(workflow_id, tenant=tenant)
        if info.state is not WorkflowState.RUNNING:
            raise InvalidState(f"workflow {workflow_id} already ended ({info.state.value})",
                               state=info.state.value)
        now = time.time()
        try:
            for job in reversed(info.jobs):  # waiting jobs first, so none is released meanwhile
                if not job.state.ended:
                    self.ledger.cancel(job.id, "requested", now)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot write to Redis: {exc}") from exc
        return self.get_workflow(workflow_id)

    # -- reading ------------------------------------------------------------------
    def get(self, job_id: str, *, tenant: str | None = None) -> JobInfo:
        """The job's ledger record; ``JobNotFound`` if unknown or another tenant's."""
        try:
            rec = self.ledger.load(job_id)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot read from Redis: {exc}") from exc
        if not rec or (tenant is not None and rec.get("tenant") != tenant):
            raise JobNotFound(f"no job {job_id!r}")
        return JobInfo.from_record(rec)

    def list(self, *, tenant: str = "default", state: str | None = None,
             job_type: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[JobInfo], str | None]:
        """The tenant's jobs, newest first, filtered; returns ``(items, next_cursor)``."""
        try:
            records, next_cursor = self.ledger.page(tenant, state=state, job_type=job_type,
                                                    limit=limit, cursor=cursor)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot read from Redis: {exc}") from exc
        return [JobInfo.from_record(r) for r in records], next_cursor

    def history(self, job_id: str, *, tenant: str | None = None) -> list[dict]:
        """Every state change of the job, oldest first: ``{"state", "at", "attempt"}``;
        ``JobNotFound`` if unknown or another tenant's."""
        self.get(job_id, tenant=tenant)
        try:
            return self.ledger.events(job_id)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot read from Redis: {exc}") from exc

    def wait(self, job_id: str, *, timeout: float, tenant: str | None = None) -> JobInfo:
        """The job once it has ended (succeeded, failed or canceled); ``WaitTimeout``
        (a ``TimeoutError``) if it has not within ``timeout`` seconds, ``JobNotFound``
        if unknown or another tenant's.

        It reads the ledger, first every 10 ms, then less often, up to every 250 ms.
        """
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            info = self.get(job_id, tenant=tenant)
            if info.state.ended:
                return info
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {job_id} is still {info.state.value} after {timeout:g}s")
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.25)

    def workers(self, *, within: float = 15.0) -> list[WorkerInfo]:
        """The worker and scheduler processes that sent a heartbeat in the last
        ``within`` seconds, on this adapter's ledger (any engine's)."""
        try:
            raw = self.ledger.workers(within)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot read from Redis: {exc}") from exc

        def at(value: str | None) -> datetime | None:
            return _utc(float(value)) if value else None

        return [WorkerInfo(
            name=w["id"], role=w.get("role") or "worker", backend=w.get("backend", ""),
            queues=[q for q in (w.get("queues") or "").split(",") if q],
            concurrency=int(w.get("concurrency") or 0), host=w.get("host", ""),
            pid=int(w.get("pid") or 0), started_at=at(w.get("started_at")),
            seen_at=at(w.get("seen_at"))) for w in raw]

    def wait_for_workers(self, n: int = 1, *, timeout: float, queue: str | None = None,
                         ) -> list[WorkerInfo]:
        """At least ``n`` live workers of this adapter's engine (listening to ``queue``
        if given) once they are up; ``WaitTimeout`` if they are not within ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            live = [w for w in self.workers() if w.role == "worker" and w.backend == self.name
                    and (queue is None or queue in w.queues)]
            if len(live) >= n:
                return live
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"{len(live)} of {n} {self.name} worker(s) up after "
                                  f"{timeout:g}s")
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.25)

    # -- control ------------------------------------------------------------------
    def cancel(self, job_id: str, *, tenant: str | None = None,
               reason: str = "requested") -> JobInfo:
        """Cancel a scheduled, queued or running job; ``InvalidState`` if it ended."""
        info = self.get(job_id, tenant=tenant)
        if info.state in (JobState.STARTED,):
            self.require(Capability.CANCEL_RUNNING, "canceling running jobs")
        elif not info.state.ended:
            self.require(Capability.CANCEL_QUEUED, "canceling queued jobs")
        try:
            outcome = self.ledger.cancel(job_id, reason, time.time())
        except redis.RedisError as exc:
            raise BackendUnavailable(f"cannot write to Redis: {exc}") from exc
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
        if info.state not in (JobState.FAILED, JobState.CANCELED):
            raise InvalidState(f"job {job_id} is {info.state.value}; only failed or canceled "
                               "jobs can be retried", state=info.state.value)
        options = JobOptions(queue=info.queue, priority=info.priority,
                             max_retries=info.max_retries, timeout=info.timeout)
        return self.enqueue(info.type, info.payload, options, tenant=info.tenant,
                            links=info.links or None, retry_of=info.id)

    # -- worker side ----------------------------------------------------------------
    def dispatch_due(self, limit: int = 100) -> int:
        """Release due jobs, reap lost ones, expire stale ones; returns how many were published."""
        dispatches = self.ledger.maintain(time.time(), limit)
        if not dispatches:
            return 0
        try:
            # All at once (RQ: one transaction with the guard lift; Celery: one pipeline).
            confirmed = self._publish_many(dispatches)
            published = [d.job_id for d in dispatches]
        except Exception:
            log.warning("publishing %d due job(s) at once failed; one by one", len(dispatches),
                        exc_info=True)
            confirmed, published = False, []
            for dispatch in dispatches:
                try:
                    self._publish(dispatch)
                    published.append(dispatch.job_id)
                except Exception:
                    log.exception("could not publish job %s; will try again", dispatch.job_id)
        if published and not confirmed:
            self.ledger.dispatched(published)
        return len(published)

    def recover_stranded(self) -> int:
        """Find deliveries a worker took from the engine but died with before claiming
        them, and have them delivered again (:meth:`Ledger.redeliver_unclaimed`); returns
        how many. The maintenance loop calls it a few times per lease. An engine whose
        broker hands an unacknowledged message back when its consumer dies (RabbitMQ)
        needs nothing here; one that holds it aside instead overrides this."""
        return 0

    def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless Redis answers."""
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis is unreachable: {exc}") from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
