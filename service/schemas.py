"""marshmallow schemas of every request and response body; the OpenAPI spec is built from them."""

from __future__ import annotations

import datetime as dt
import re

import marshmallow as ma
from marshmallow import fields, validate

from adapters import JobState, WorkflowState
from adapters.validation import (MAX_BATCH, MAX_KEY_LENGTH, PRIORITIES, QUEUE_NAME,
                                 SCHEDULE_NAME)

__all__ = [
    "MAX_BATCH",
    "MAX_SCHEDULE_AHEAD",
    "JobOptionsSchema",
    "JobRequestSchema",
    "BatchRequestSchema",
    "ListQuerySchema",
    "WaitQuerySchema",
    "MAX_WAIT",
    "StatsSchema",
    "JobSchema",
    "JobListSchema",
    "BatchResponseSchema",
    "ProblemSchema",
    "HealthSchema",
    "ReadySchema",
    "HookRecordSchema",
    "WorkflowRequestSchema",
    "WorkflowSchema",
    "ScheduleRequestSchema",
    "ScheduleUpdateSchema",
    "ScheduleSchema",
    "ScheduleListSchema",
    "MAX_EVERY",
    "CURSOR_PATTERN",
]

# The rules of a job are the client's (adapters.validation), stated once; these schemas
# check the request's shape with them, so the spec shows each rule too.
MAX_SCHEDULE_AHEAD = dt.timedelta(days=366)
"""How far ahead ``delay``, ``run_at`` and ``expires_at`` may reach."""

MAX_EVERY = 366 * 24 * 3600.0
"""Longest ``every`` of a schedule, in seconds."""

_QUEUE = validate.Regexp(rf"^{QUEUE_NAME.pattern}$",
                         error="must be 1-64 letters, digits, '_', '-' or '.'")


def _not_too_far(value: dt.datetime) -> None:
    if value - dt.datetime.now(dt.timezone.utc) > MAX_SCHEDULE_AHEAD:
        raise ma.ValidationError(f"must be at most {MAX_SCHEDULE_AHEAD.days} days ahead")


class _JsonBoolean(fields.Boolean):
    """``true`` or ``false`` only, as the spec's ``boolean`` says (marshmallow's own
    Boolean also takes 0, 1, "yes", "on", ...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class JobOptionsSchema(_Strict):
    """How to enqueue: every field is optional and defaults to the job type's own."""

    queue = fields.String(validate=_QUEUE, metadata={"description": "named queue",
                                                     "example": "default"})
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    delay = fields.Float(validate=validate.Range(min=0, max=MAX_SCHEDULE_AHEAD.total_seconds()),
                         metadata={"description": "seconds to wait before the job may start"})
    run_at = fields.AwareDateTime(validate=_not_too_far,
                                  metadata={"description": "ISO 8601 time with an offset; "
                                                           "not with delay"})
    expires_at = fields.AwareDateTime(validate=_not_too_far,
                                      metadata={"description": "cancel the job if it has not "
                                                               "started by then"})
    max_retries = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False),
                           metadata={"description": "hard time limit of one attempt, seconds"})
    idempotency_key = fields.String(validate=validate.Length(min=1, max=MAX_KEY_LENGTH),
                                    metadata={"description": "a second enqueue with the same "
                                                             "key returns the first job"})

    @ma.validates_schema
    def _delay_or_run_at(self, data, **kwargs):
        if data.get("delay") is not None and data.get("run_at") is not None:
            raise ma.ValidationError("give delay or run_at, not both", "delay")


class JobRequestSchema(_Strict):
    """One job to enqueue."""

    type = fields.String(required=True, validate=validate.Length(min=1, max=128),
                         metadata={"description": "a registered job type", "example": "demo.echo"})
    payload = fields.Dict(keys=fields.String(), load_default=dict,
                          metadata={"description": "the job's arguments; validated by the job "
                                                   "type's schema",
                                    "example": {"message": "hello"}})
    options = fields.Nested(JobOptionsSchema, load_default=dict)


class BatchRequestSchema(_Strict):
    """Up to MAX_BATCH (500) jobs, validated all together: one invalid job and none is enqueued."""

    jobs = fields.List(fields.Nested(JobRequestSchema), required=True,
                       validate=validate.Length(min=1, max=MAX_BATCH))


CURSOR_PATTERN = re.compile(r"-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?(~[0-9A-Za-z]{1,64})?")
"""A cursor: the score (creation time) and id of the last job of the previous page."""


class ListQuerySchema(_Strict):
    """Filters and paging of ``GET /v1/jobs``."""

    state = fields.Enum(JobState, by_value=True)
    type = fields.String(validate=validate.Length(min=1, max=128))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=[validate.Length(min=1, max=200),
                                     validate.Regexp(f"^{CURSOR_PATTERN.pattern}$",
                                                     error="is not a next_cursor of this API")],
                           metadata={"description": "next_cursor of the previous page"})
    queue = fields.String(validate=_QUEUE, metadata={"description": "only jobs of this queue"})
    created_after = fields.AwareDateTime(metadata={"description": "only jobs created strictly "
                                                                  "after this ISO 8601 time"})
    created_before = fields.AwareDateTime(metadata={"description": "only jobs created strictly "
                                                                   "before this ISO 8601 time"})


MAX_WAIT = 20.0
"""The longest ``?wait=`` in seconds: well under gunicorn's 30 s worker timeout."""


class WaitQuerySchema(ma.Schema):
    """``?wait=<seconds>`` on ``POST /v1/jobs`` and ``GET /v1/jobs/{id}``; any other
    query parameter is ignored there, as it always was."""

    class Meta:
        unknown = ma.EXCLUDE

    wait = fields.Float(validate=validate.Range(min=0, max=MAX_WAIT), metadata={
        "description": f"wait up to this many seconds (at most {MAX_WAIT:g}) for the job to "
                       "end, and answer then; the caller is woken as it ends, not polled"})


class StatsSchema(ma.Schema):
    """The caller's jobs per state, now."""

    states = fields.Dict(keys=fields.String(validate=validate.OneOf([s.value for s in JobState])),
                         values=fields.Integer(), required=True,
                         metadata={"description": "jobs in each state (every state named)"})
    total = fields.Integer(required=True, metadata={"description": "all of the tenant's jobs"})


class ProgressSchema(ma.Schema):
    # passed through as the job reported them: 3 of 10 reads back 3 and 10, not 3.0 and 10.0
    current = fields.Raw(allow_none=True, metadata={"type": "number"})
    total = fields.Raw(allow_none=True, metadata={"type": "number"})
    message = fields.String(allow_none=True)


class JobErrorSchema(ma.Schema):
    type = fields.String()
    message = fields.String()


class JobSchema(ma.Schema):
    """A job as the API shows it, the same on every engine."""

    id = fields.String(required=True)
    type = fields.String(required=True)
    state = fields.Enum(JobState, by_value=True, required=True)
    backend = fields.String(required=True, metadata={"description": "rq, celery, ..."})
    queue = fields.String(required=True)
    priority = fields.String(required=True)
    payload = fields.Dict(keys=fields.String())
    attempts = fields.Integer(required=True)
    max_retries = fields.Integer()
    timeout = fields.Float()
    progress = fields.Nested(ProgressSchema, allow_none=True)
    result = fields.Raw(allow_none=True, metadata={"description": "the JSON return value"})
    error = fields.Nested(JobErrorSchema, allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    run_at = fields.AwareDateTime(allow_none=True)
    expires_at = fields.AwareDateTime(allow_none=True)
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)
    retry_of = fields.String(allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                        metadata={"description": "self: this job's URL; retry_of: the job it "
                                                 "replays"})


class JobListSchema(ma.Schema):
    items = fields.List(fields.Nested(JobSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True,
                                metadata={"description": "pass as cursor for the next page; "
                                                         "null on the last page"})


class BatchResponseSchema(ma.Schema):
    items = fields.List(fields.Nested(JobSchema), required=True)


class ProblemSchema(ma.Schema):
    """An error (RFC 9457 problem details)."""

    type = fields.String(required=True, metadata={"example": "urn:switchyard:problem:not-found"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True,
                         metadata={"description": "field -> messages, e.g. payload.to"})


class HealthSchema(ma.Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class QueueBacklogSchema(ma.Schema):
    queued = fields.Integer(required=True, metadata={"description": "jobs queued now"})
    oldest_age_seconds = fields.Float(allow_none=True, required=True,
                                      metadata={"description": "age of the oldest queued job"})
    workers = fields.Boolean(required=True, metadata={"description": "a live worker listens"})


class CheckSchema(ma.Schema):
    ok = fields.Boolean(required=True)
    detail = fields.String(required=True)
    backlog = fields.Dict(keys=fields.String(), values=fields.Nested(QueueBacklogSchema),
                          metadata={"description": "the queues check: each queue's backlog"})


class ReadySchema(ma.Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not ready"]))
    backend = fields.String(required=True)
    workers = fields.Integer(required=True, metadata={"description": "live workers seen"})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema), required=True)
    warnings = fields.List(fields.String(), required=True)


class HookRecordSchema(ma.Schema):
    """An inbound hook as stored."""

    source = fields.String(required=True)
    webhook_id = fields.String(required=True)
    received_at = fields.String(required=True, metadata={"description": "ISO 8601"})
    job_id = fields.String(allow_none=True, metadata={"description": "its webhook.process job"})
    processed_at = fields.String(allow_none=True)


class ChordRequestSchema(_Strict):
    """A chord: its header jobs run in parallel, then its body once, with their results."""

    header = fields.List(fields.Nested(JobRequestSchema), required=True,
                         validate=validate.Length(min=1, max=MAX_BATCH - 1))
    body = fields.Nested(JobRequestSchema, required=True)


class WorkflowRequestSchema(_Strict):
    """Exactly one of ``chain``, ``group`` or ``chord``."""

    chain = fields.List(fields.Nested(JobRequestSchema), validate=validate.Length(min=1,
                                                                                  max=MAX_BATCH),
                        metadata={"description": "jobs run one after another; each reads the "
                                                 "previous result"})
    group = fields.List(fields.Nested(JobRequestSchema), validate=validate.Length(min=1,
                                                                                  max=MAX_BATCH),
                        metadata={"description": "jobs run in parallel"})
    chord = fields.Nested(ChordRequestSchema)

    @ma.validates_schema
    def _exactly_one(self, data, **kwargs):
        if len([k for k in ("chain", "group", "chord") if k in data]) != 1:
            raise ma.ValidationError("give exactly one of chain, group or chord", "_schema")


class WorkflowSchema(ma.Schema):
    """A workflow and its jobs (a chord's header first, its body last)."""

    id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["chain", "group", "chord"]))
    state = fields.Enum(WorkflowState, by_value=True, required=True)
    jobs = fields.List(fields.Nested(JobSchema), required=True)
    created_at = fields.AwareDateTime(required=True)
    finished_at = fields.AwareDateTime(allow_none=True, required=True)
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                        metadata={"description": "self: this workflow's URL"})


class ScheduleJobOptionsSchema(_Strict):
    """How every job of a schedule is enqueued."""

    queue = fields.String(validate=_QUEUE)
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    max_retries = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False),
                           metadata={"description": "hard time limit of one attempt, seconds"})


class ScheduleJobSchema(_Strict):
    """The job a schedule enqueues on every run."""

    type = fields.String(required=True, validate=validate.Length(min=1, max=128),
                         metadata={"example": "demo.echo"})
    payload = fields.Dict(keys=fields.String(), load_default=dict,
                          metadata={"example": {"message": "tick"}})
    options = fields.Nested(ScheduleJobOptionsSchema, load_default=dict)


_CRON = fields.String(validate=validate.Length(min=1, max=200),
                      metadata={"description": "five fields: minute hour day-of-month month "
                                               "day-of-week, read in timezone",
                                "example": "0 2 * * *"})
_EVERY = fields.Float(validate=validate.Range(min=1, max=MAX_EVERY),
                      metadata={"description": "seconds between runs"})
_TIMEZONE = fields.String(validate=validate.Length(min=1, max=64),
                          metadata={"description": "IANA zone of the cron expression",
                                    "example": "Europe/Berlin"})


class ScheduleRequestSchema(_Strict):
    """A new periodic schedule: ``cron`` or ``every``, not both."""

    name = fields.String(required=True, validate=validate.Regexp(
        rf"^{SCHEDULE_NAME.pattern}$", error="must be 1-100 letters, digits, '_', '-' or '.'"),
        metadata={"example": "nightly-report"})
    job = fields.Nested(ScheduleJobSchema, required=True)
    cron = _CRON
    every = _EVERY
    timezone = fields.String(load_default="UTC", validate=validate.Length(min=1, max=64),
                             metadata=_TIMEZONE.metadata)
    enabled = _JsonBoolean(load_default=True, metadata={"description": "false: paused"})

    @ma.validates_schema
    def _cron_or_every(self, data, **kwargs):
        if ("cron" in data) == ("every" in data):
            raise ma.ValidationError("give exactly one of cron and every", "cron")


class ScheduleUpdateSchema(_Strict):
    """Changes to a schedule; ``job`` replaces its whole job, ``cron`` replaces ``every``
    and the other way round."""

    enabled = _JsonBoolean(metadata={"description": "false pauses, true resumes"})
    cron = _CRON
    every = _EVERY
    timezone = _TIMEZONE
    job = fields.Nested(ScheduleJobSchema)

    @ma.validates_schema
    def _not_both(self, data, **kwargs):
        if "cron" in data and "every" in data:
            raise ma.ValidationError("give cron or every, not both", "cron")


class ScheduleSchema(ma.Schema):
    """A periodic schedule as the API shows it."""

    name = fields.String(required=True)
    job = fields.Nested(ScheduleJobSchema, required=True)
    cron = fields.String(allow_none=True, required=True)
    every = fields.Float(allow_none=True, required=True)
    timezone = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    next_run_at = fields.AwareDateTime(allow_none=True, required=True,
                                       metadata={"description": "null while paused"})
    last_run_at = fields.AwareDateTime(allow_none=True, required=True,
                                       metadata={"description": "the tick time of the last run"})
    last_job_id = fields.String(allow_none=True, required=True)
    created_at = fields.AwareDateTime(required=True)
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                        metadata={"description": "self; last_job: the job the last run made"})


class ScheduleListSchema(ma.Schema):
    items = fields.List(fields.Nested(ScheduleSchema), required=True)
