"""One validation path for a job, whoever submits it: HTTP, Python, a workflow, a schedule.

:func:`build_record` checks a job -- its type, its payload (against the job type's
schema or its function's signature), every option -- and turns it into the ledger
record (:mod:`adapters.record`). Its :class:`InvalidJob` errors already name the fields
the way the REST API shows them (``type``, ``payload.to``, ``options.queue``); a batch,
a workflow or a schedule puts the job's own place in front (``jobs.3.``, ``chain.1.``,
``chord.body.``, ``job.``), once, in :func:`prefixed`. The rules themselves are stated
here once; the HTTP schemas import them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from datetime import datetime
from typing import Any, Iterable

from . import record
from .errors import InvalidJob, InvalidState, UnknownJobType, UnsupportedFeature
from .jsonlimits import json_problems, lone_surrogate
from .options import JobOptions, Priority
from .payloads import check_payload, flatten_errors
from .registry import JobDefinition, definitions, get_definition
from .types import Capability, JobState

__all__ = ["QUEUE_NAME", "SCHEDULE_NAME", "PRIORITIES", "MAX_KEY_LENGTH", "MAX_BATCH", "WORKFLOW_KINDS",
           "build_record", "build_records", "build_workflow", "prefixed", "check_payload",
           "flatten_errors", "timestamp", "replay", "placement"]

QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A queue name: 1-64 letters, digits, ``_``, ``-`` or ``.``."""
PRIORITIES = tuple(p.value for p in Priority)
MAX_KEY_LENGTH = 255
"""The longest ``idempotency_key``."""
SCHEDULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
"""A schedule's name (and not ``.`` or ``..``, which a URL drops)."""
MAX_BATCH = 500
"""The most jobs one batch or one workflow holds."""
WORKFLOW_KINDS = ("chain", "group", "chord")

Spec = tuple[str, "dict | None", Any]


def prefixed(prefix: str, exc: InvalidJob) -> InvalidJob:
    """``exc`` with every field name (and its message) put under ``prefix``."""
    renamed = InvalidJob(f"{prefix.rstrip('.')}: {exc}",
                         {f"{prefix}{k}": v for k, v in exc.errors.items()})
    renamed.__cause__ = exc
    return renamed


def timestamp(value: datetime | float | None, field: str) -> float | None:
    """A Unix time of an aware datetime or a number; ``InvalidJob`` naming ``field``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidJob(f"{field} needs a timezone",
                             {f"options.{field}": ["must include a timezone offset"]})
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidJob(f"{field} is not a time",
                     {f"options.{field}": ["must be a datetime or a Unix timestamp"]})


def _definition(job_type: str, builtin: bool = False) -> JobDefinition:
    """The job type's definition; Switchyard's own types only when ``builtin``."""
    try:
        definition = get_definition(job_type)
        if definition.builtin and not builtin:
            raise UnknownJobType(job_type)
        return definition
    except UnknownJobType:
        known = ", ".join(sorted(definitions())) or "none"
        message = f"unknown job type {job_type!r}; known types: {known}"
        raise UnknownJobType(message, {"type": [message]}) from None


def _refuse(option: str, message: str, why: str) -> InvalidJob:
    return InvalidJob(message, {f"options.{option}": [why]})


def build_record(client: Any, job_type: str, payload: dict | None,
                 options: JobOptions | None, tenant: str, now: float,
                 links: dict | None = None, retry_of: str | None = None, *,
                 builtin: bool = False, shard: int | None = None) -> dict:
    """The ledger record of one job, or ``InvalidJob`` / ``UnsupportedFeature``;
    ``builtin`` lets Switchyard enqueue its own job types."""
    settings = client.settings
    definition = _definition(job_type, builtin)
    options = options or JobOptions()
    payload = {} if payload is None else payload
    if not isinstance(payload, dict):
        raise InvalidJob("payload must be a JSON object", {"payload": ["must be an object"]})
    # JSON would change some values on the way (``{1: 2}`` -> ``{"1": 2}``) and cannot
    # carry others; refuse them here rather than hand the job different data.
    problems = json_problems(payload, "payload")
    if problems:
        raise InvalidJob("payload is not JSON as it stands; see errors", problems)
    problems = check_payload(definition, payload)
    if problems:
        raise InvalidJob("the payload is not valid for this job type; see errors", problems)
    for field, name, text in (("tenant", "tenant", tenant),
                              ("options.idempotency_key", "idempotency_key",
                               options.idempotency_key)):
        if text is not None and not isinstance(text, str):
            raise InvalidJob(f"{name} must be a string", {field: ["must be a string"]})
        problem = text and lone_surrogate(text)
        if problem:
            raise InvalidJob(f"{name} {problem}", {field: [problem]})

    # None means "the definition's"; anything else, even "" or 0, must be valid itself
    queue = definition.queue if options.queue is None else options.queue
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise _refuse("queue", "queue names are 1-64 letters, digits, '_', '-' or '.'",
                      f"must match {QUEUE_NAME.pattern}")
    priority = definition.priority if options.priority is None else options.priority
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise _refuse("priority", f"priority must be one of {', '.join(PRIORITIES)}",
                      f"must be one of: {', '.join(PRIORITIES)}")
    priority = Priority(priority).value
    if queue != settings.default_queue:
        client.require(Capability.QUEUES, "named queues")
    if priority != Priority.DEFAULT.value:
        client.require(Capability.PRIORITIES, "priorities")
    if options.delay is not None and options.run_at is not None:
        raise _refuse("delay", "give delay or run_at, not both", "cannot be combined with run_at")
    run_at = asked_run_at = timestamp(options.run_at, "run_at")
    if options.delay is not None:
        if not (isinstance(options.delay, (int, float)) and not isinstance(options.delay, bool)
                and math.isfinite(options.delay) and options.delay >= 0):
            raise _refuse("delay", "delay must be a non-negative number of seconds", "must be >= 0")
        run_at = now + float(options.delay)
    # A time already past is kept as asked (the job is queued at once).
    due = run_at is not None and run_at > now
    if due:
        client.require(Capability.DELAY, "delayed jobs")
    expires_at = timestamp(options.expires_at, "expires_at")
    if expires_at is not None:
        client.require(Capability.EXPIRY, "expiring jobs")
        if expires_at <= (run_at if due else now):
            raise _refuse("expires_at", "expires_at is before the job could start",
                          "must be after now and after run_at")
    max_retries = definition.max_retries if options.max_retries is None else options.max_retries
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise _refuse("max_retries", "max_retries must be >= 0", "must be >= 0")
    if max_retries:
        client.require(Capability.RETRIES, "retries")
    timeout = definition.timeout if options.timeout is None else options.timeout
    if timeout is None:
        timeout = settings.default_timeout
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
            and 0 < timeout <= settings.max_timeout):
        raise _refuse("timeout", f"timeout must be in (0, {settings.max_timeout}] seconds",
                      f"must be > 0 and <= {settings.max_timeout}")
    if definition.rate_limit:
        client.require(Capability.RATE_LIMIT, "rate limits")
    if options.idempotency_key is not None:
        client.require(Capability.IDEMPOTENCY, "idempotency keys")
        if not options.idempotency_key or len(options.idempotency_key) > MAX_KEY_LENGTH:
            raise _refuse("idempotency_key", f"idempotency_key must be 1-{MAX_KEY_LENGTH} "
                          "characters", f"must be 1-{MAX_KEY_LENGTH} characters")
    limit, window = definition.rate_limit or (0, 0.0)
    fingerprint = ""
    if options.idempotency_key:
        # What the request asked for, not what was derived from it: a delay is
        # compared as given, so the same request sent again a second later matches.
        fingerprint = hashlib.sha256(json.dumps(
            [definition.name, payload, queue, priority, options.delay, asked_run_at, expires_at,
             max_retries, float(timeout)],
            sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    rec = record.encode({
        "id": uuid.uuid4().hex if shard is None else client.ledger.shards.new_id(shard),
        "type": definition.name, "tenant": tenant,
        "backend": client.name, "state": (JobState.SCHEDULED if due else JobState.QUEUED).value,
        "queue": queue, "priority": priority, "payload": payload, "attempts": 0,
        "max_retries": max_retries, "timeout": timeout, "rate": (limit, window),
        "created_at": now, "run_at": run_at, "expires_at": expires_at or None,
        "idempotency_key": options.idempotency_key or "", "retry_of": retry_of or "",
        "links": links or {}, "token": os.urandom(6).hex()})
    rec["fingerprint"] = fingerprint  # for the ledger's idempotency check; not stored
    return rec


def replay(info: Any) -> tuple[Spec, dict | None]:
    """``((type, payload, options), links)`` of a failed or canceled job (a ``JobInfo``)
    replayed as a new job: a retry, one by one or in bulk. ``InvalidState`` otherwise."""
    if info.state not in (JobState.FAILED, JobState.CANCELED):
        raise InvalidState(f"job {info.id} is {info.state.value}; only failed or canceled "
                           "jobs can be retried", state=info.state.value)
    options = JobOptions(queue=info.queue, priority=info.priority,
                         max_retries=info.max_retries, timeout=info.timeout)
    return (info.type, info.payload, options), info.links or None


def build_records(client: Any, jobs: Iterable[Spec], tenant: str, now: float,
                  links: dict | None = None, retry_of: str | None = None,
                  batch: bool = True) -> list[dict]:
    """The records of a batch, every one checked before any is written; a job's errors
    are named ``jobs.<index>.<field>``, as ``POST /v1/jobs/batch`` shows them."""
    jobs = list(jobs)
    if len(jobs) > MAX_BATCH:
        raise InvalidJob(f"a batch holds at most {MAX_BATCH} jobs",
                         {"jobs": [f"at most {MAX_BATCH} jobs"]})
    shard = placement(client, jobs, tenant, retry_of)
    if not batch:
        return [build_record(client, *jobs[0], tenant, now, links, retry_of, shard=shard)]
    records, errors = [], {}
    for index, (job_type, payload, options) in enumerate(jobs):
        try:
            records.append(build_record(client, job_type, payload, options, tenant, now,
                                        links, retry_of, shard=shard))
        except InvalidJob as exc:
            errors.update(prefixed(f"jobs.{index}.", exc).errors)
    if errors:
        raise InvalidJob("some jobs are not valid; none was enqueued", errors)
    return records


def placement(client: Any, specs: Iterable[Spec], tenant: str,
              retry_of: str | None = None) -> int | None:
    """The ledger shard every job of one write (a job, a batch, a workflow) goes to
    (:mod:`adapters.shards` gives the rules); ``None`` on a ledger of one shard. An
    unknown type is left for :func:`build_record` to refuse. Jobs whose rules name two
    shards cannot be written by one script: ``UnsupportedFeature`` says which rules."""
    shards = client.ledger.shards
    if shards.count == 1:
        return None
    wants: dict[int, str] = {}
    for job_type, _, options in specs:
        if options is not None and options.idempotency_key:
            wants.setdefault(shards.of_name("idem", tenant),
                             f"idempotency keys of tenant {tenant!r}")
        try:
            definition = get_definition(job_type)
        except UnknownJobType:
            continue
        if definition.rate_limit:
            wants.setdefault(shards.of_name("rl", definition.name),
                             f"the rate limit of {definition.name!r}")
    if retry_of:
        wants.setdefault(shards.of(retry_of), f"the job {retry_of} it retries")
    if len(wants) > 1:
        raise UnsupportedFeature(
            "a sharded ledger (Redis Cluster) writes one request's jobs in one shard, and "
            "these jobs' " + " and ".join(wants.values()) + " are in different shards; "
            "enqueue them separately")
    return next(iter(wants)) if wants else shards.random()


def _place(kind: str, index: int, header: int) -> str:
    """A workflow job's name in the request: ``chain.1``, ``group.0``, ``chord.body``."""
    if kind == "chord":
        return "chord.body" if index == header else f"chord.header.{index}"
    return f"{kind}.{index}"


def build_workflow(client: Any, kind: str, jobs: list[Spec], body: Spec | None,
                   tenant: str, now: float) -> tuple[dict, list[dict]]:
    """The workflow's record and its jobs' records, in order (a chord's body last)."""
    if kind not in WORKFLOW_KINDS:
        raise InvalidJob(f"unknown workflow kind {kind!r}", {"kind": ["chain, group or chord"]})
    if (kind == "chord") != (body is not None):
        raise InvalidJob("a chord needs a body; chains and groups take none",
                         {"chord.body" if kind == "chord" else "body": ["only for chords"]})
    if not jobs or len(jobs) + (body is not None) > MAX_BATCH:
        name = "chord.header" if kind == "chord" else kind
        raise InvalidJob(f"a workflow holds 1 to {MAX_BATCH} jobs", {name: [f"1 to {MAX_BATCH} jobs"]})
    specs = list(jobs) + ([body] if body is not None else [])
    shard = placement(client, specs, tenant)
    workflow_id = uuid.uuid4().hex if shard is None else client.ledger.shards.new_id(shard)
    links = {"workflow": workflow_id}
    records, errors = [], {}
    for index, (job_type, payload, options) in enumerate(specs):
        place = _place(kind, index, len(jobs))
        if options is not None and options.idempotency_key is not None:
            errors[f"{place}.options.idempotency_key"] = ["is not allowed in a workflow"]
            continue
        try:
            rec = build_record(client, job_type, payload, options, tenant, now, links,
                               shard=shard)
        except InvalidJob as exc:
            errors.update(prefixed(f"{place}.", exc).errors)
            continue
        rec["wf"] = workflow_id
        rec["wf_role"] = "body" if index == len(jobs) else (
            "header" if kind == "chord" else "member")
        if (kind == "chain" and index > 0) or (kind == "chord" and index == len(jobs)):
            rec["state"] = JobState.SCHEDULED.value
            rec["waiting"] = "1"
        records.append(rec)
    if errors:
        raise InvalidJob("some jobs of the workflow are not valid; none was enqueued", errors)
    if kind == "chain":
        for rec, nxt in zip(records, records[1:]):
            rec["wf_next"] = nxt["id"]
    ids = [rec["id"] for rec in records]
    workflow = {"id": workflow_id, "kind": kind, "tenant": tenant, "state": "running",
                "created_at": repr(now), "jobs": json.dumps(ids), "pending": str(len(jobs))}
    if kind == "chord":
        workflow["header"] = json.dumps(ids[:-1])
        workflow["body"] = ids[-1]
    return workflow, records
