"""marshmallow schemas of the operator's calls: bulk operations and the audit log."""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import Schema, fields, validate

from adapters import JobState
from adapters.bulk import ACTIONS
from adapters.validation import QUEUE_NAME

__all__ = ["BulkFilterSchema", "BulkRequestSchema", "AuditQuerySchema", "AuditListSchema",
           "AUDIT_CURSOR"]

AUDIT_CURSOR = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")
"""An audit entry's id (a Redis stream id), the cursor of the next page."""


class _Strict(Schema):
    class Meta:
        unknown = ma.RAISE


class BulkFilterSchema(_Strict):
    """Which jobs: every field given must match; none given matches every job of the
    tenant (every tenant, for an operator's key) in the states the action applies to."""

    tenant = fields.String(validate=validate.Length(min=1, max=128), metadata={
        "description": "an operator's key only: one tenant (default: every tenant); a "
                       "tenant's key acts on its own jobs, whatever this says"})
    state = fields.Enum(JobState, by_value=True, metadata={
        "description": "default: retry failed and canceled jobs, cancel scheduled, queued, "
                       "started and retrying ones, delete succeeded, failed and canceled ones"})
    type = fields.String(validate=validate.Length(min=1, max=128),
                         metadata={"example": "demo.echo"})
    queue = fields.String(validate=validate.Regexp(
        rf"^{QUEUE_NAME.pattern}$", error="must be 1-64 letters, digits, '_', '-' or '.'"))
    created_after = fields.AwareDateTime(metadata={"description": "created at or after"})
    created_before = fields.AwareDateTime(metadata={"description": "created before"})


class BulkRequestSchema(_Strict):
    """One bulk operation."""

    action = fields.String(required=True, validate=validate.OneOf(ACTIONS),
                           metadata={"description": "retry (each as a new job), cancel, or "
                                                    "delete (running jobs are skipped)"})
    filter = fields.Nested(BulkFilterSchema, load_default=dict)


class AuditQuerySchema(_Strict):
    """Paging of ``GET /v1/audit``."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Regexp(f"^{AUDIT_CURSOR.pattern}$",
                                                    error="is not a next_cursor of this API"),
                           metadata={"description": "next_cursor of the previous page"})


class ActorSchema(Schema):
    label = fields.String(required=True, metadata={"description": "the API key's label"})
    role = fields.String(required=True, metadata={"example": "tenant"})
    tenant = fields.String(required=True, metadata={"description": "* for an operator's key"})


class AuditEntrySchema(Schema):
    """Who did what, to what, when, and to how many jobs."""

    id = fields.String(required=True)
    at = fields.AwareDateTime(required=True)
    actor = fields.Nested(ActorSchema, required=True)
    action = fields.String(required=True, metadata={"example": "job.retry"})
    target = fields.Raw(allow_none=True, required=True, metadata={
        "type": "object", "description": "e.g. {\"job\": id}, {\"filter\": {...}}"})
    count = fields.Integer(allow_none=True, required=True)
    detail = fields.Raw(allow_none=True, required=True, metadata={"type": "object"})


class AuditListSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)
