"""The jobs resource: enqueue, read, list, cancel, retry and batch-enqueue."""

from __future__ import annotations

import copy
import inspect

import flask
import marshmallow as ma
from flask.views import MethodView
from werkzeug.routing import BaseConverter

from adapters import JobFilter, JobInfo, JobOptions, WaitTimeout, definitions
from adapters.audit import OPERATOR

from ..audit import audited
from ..auth import current_tenant, owning_tenant
from ..errors import ValidationProblem
from ..extensions import current
from ..schemas import (
    BatchRequestSchema,
    BatchResponseSchema,
    JobListSchema,
    JobRequestSchema,
    JobSchema,
    CURSOR_PATTERN,
    ListQuerySchema,
    WaitQuerySchema,
)
from ..schemas_ops import BulkRequestSchema
from . import Blueprint, Resource, problems

__all__ = ["blp", "job_body", "job_spec", "job_url", "document_job_types", "JobIdConverter"]

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs",
                description="Enqueue jobs and follow them to the end.")

JOB = Resource("jobs.Job", "job_id", "job")
_HALF_US = 5e-7
job_url = JOB.url


class JobIdConverter(BaseConverter):
    """A job id in a URL: any segment but ``batch`` and ``bulk``, resources of their own.

    Without it ``/v1/jobs/batch`` also matches ``/v1/jobs/<job_id>``, so werkzeug
    answers OPTIONS there with ``Allow: GET`` and GET with a 404 instead of a 405.
    """

    regex = r"(?!(?:batch|bulk)(?:/|$))[^/]+"


def job_body(info: JobInfo) -> dict:
    """The JSON shape of a job (JobSchema dumps it)."""
    links = {k: v for k, v in info.links.items() if isinstance(v, str) and k != "self"}
    links["self"] = job_url(info.id)
    if info.retry_of:
        links["retry_of"] = job_url(info.retry_of)
    return {
        "id": info.id, "type": info.type, "state": info.state, "backend": info.backend,
        "queue": info.queue, "priority": info.priority, "payload": info.payload,
        "attempts": info.attempts, "max_retries": info.max_retries, "timeout": info.timeout,
        "progress": info.progress, "result": info.result, "error": info.error,
        "cancel_reason": info.cancel_reason, "created_at": info.created_at,
        "run_at": info.run_at, "expires_at": info.expires_at, "started_at": info.started_at,
        "finished_at": info.finished_at, "retry_of": info.retry_of,
        "idempotency_key": info.idempotency_key, "links": links,
    }


def _waited(info: JobInfo, wait: float | None, tenant: str | None) -> JobInfo:
    """``info``, or once the job has ended if it does within ``wait`` seconds."""
    if not wait or info.state.ended:
        return info
    try:
        return current().adapter.wait(info, timeout=wait, tenant=tenant)
    except WaitTimeout:
        return current().adapter.get(info.id, tenant=tenant)


def job_spec(request: dict) -> tuple[str, dict, JobOptions]:
    """``(type, payload, JobOptions)`` of one job request as the schema loaded it; the
    client validates the job itself (:mod:`adapters.validation`)."""
    return (request["type"], request.get("payload") or {},
            JobOptions(**(request.get("options") or {})))


def _decode_cursor(cursor: str | None) -> str | None:
    """The ledger's ``<score>|<id>`` position of an API cursor ``<score>~<id>``.

    The cursor is a position, not a token: every string of the spec's pattern names
    one (``0`` is "older than the epoch", an empty page), so the spec can say exactly
    which cursors are accepted.
    """
    if cursor is None:
        return None
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValidationProblem("the cursor is not one this API gave out",
                                {"cursor": ["is not a next_cursor of this API"]})
    return cursor.replace("~", "|")


def _encode_cursor(cursor: str | None) -> str | None:
    return None if cursor is None else cursor.replace("|", "~")


def _signature_schema(func) -> dict:
    """A JSON schema of the keyword arguments a job function takes after its context."""
    params = list(inspect.signature(func).parameters.values())[1:]
    properties, required, open_ended = {}, [], False
    for param in params:
        if param.kind is param.VAR_KEYWORD:
            open_ended = True
        elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            properties[param.name] = {}
            if param.default is param.empty:
                required.append(param.name)
    schema = {"type": "object", "properties": properties, "additionalProperties": open_ended}
    if required:
        schema["required"] = required
    return schema


def document_job_types(api, max_timeout: float) -> None:
    """Spell every registered job type out in the spec: its name and its payload's schema.

    ``JobRequest`` becomes a ``oneOf`` over the types (discriminated by ``type``), so
    the docs show each payload and generated clients get typed requests.
    """
    spec = api.spec
    schemas = spec.components.schemas
    variants, mapping = [], {}
    for name, definition in sorted(definitions().items()):
        payload_id = f"{name}.payload"
        if isinstance(definition.schema, ma.Schema):
            spec.components.schema(payload_id, schema=definition.schema)
            fields_required = any(f.required for f in definition.schema.load_fields.values())
        else:
            spec.components.schema(payload_id, _signature_schema(definition.func)
                                   if definition.schema is None else {"type": "object"})
            fields_required = bool(schemas[payload_id].get("required"))
        variant_id = f"{name}.request"
        spec.components.schema(variant_id, {
            "type": "object",
            "description": definition.description or name,
            "properties": {
                "type": {"type": "string", "enum": [name]},
                "payload": {"$ref": f"#/components/schemas/{payload_id}"},
                "options": {"$ref": "#/components/schemas/JobOptions"},
            },
            "required": ["type", "payload"] if fields_required else ["type"],
            "additionalProperties": False,
        })
        variants.append({"$ref": f"#/components/schemas/{variant_id}"})
        mapping[name] = f"#/components/schemas/{variant_id}"
    request = schemas["JobRequest"]
    request.clear()
    request.update({"oneOf": variants, "discriminator": {"propertyName": "type",
                                                           "mapping": mapping},
                    "description": "One job: its type, the type's payload, and options."})
    options = schemas["JobOptions"]
    options["properties"]["timeout"].update(maximum=max_timeout, exclusiveMinimum=True)
    options["not"] = {"required": ["delay", "run_at"]}
    # Workflow jobs are JobRequests without idempotency_key, which a workflow refuses.
    workflow_variants = []
    for name in sorted(definitions()):
        variant = copy.deepcopy(schemas[f"{name}.request"])
        variant["properties"]["options"] = {"$ref": "#/components/schemas/WorkflowJobOptions"}
        spec.components.schema(f"{name}.workflow_request", variant)
        workflow_variants.append({"$ref": f"#/components/schemas/{name}.workflow_request"})
    workflow_options = copy.deepcopy(options)
    del workflow_options["properties"]["idempotency_key"]
    spec.components.schema("WorkflowJobOptions", workflow_options)
    spec.components.schema("WorkflowJobRequest", {
        "oneOf": workflow_variants,
        "discriminator": {"propertyName": "type", "mapping": {
            name: f"#/components/schemas/{name}.workflow_request" for name in sorted(definitions())}},
        "description": "One job of a workflow: as JobRequest, without idempotency_key."})


@blp.route("")
class Jobs(MethodView):
    """The tenant's jobs."""

    @blp.arguments(WaitQuerySchema, location="query")
    @blp.arguments(JobRequestSchema)
    @blp.response(202, JobSchema, headers=JOB.location,
                  description="Accepted: the job is queued (or scheduled); with `wait`, "
                              "it had not ended when the wait ran out")
    @blp.alt_response(200, schema=JobSchema, headers=JOB.location,
                      description="With `wait`: the job ended within it (succeeded, failed "
                                  "or canceled)")
    @problems(blp, 400, 401, 403, 409, 413, 422, 429, 503)
    def post(self, query, request):
        """Enqueue a job.

        The payload is validated by the job type's schema; errors name the field as
        `payload.<field>`. With `idempotency_key`, a repeat returns the first job; the
        same key with a different type, payload or options is a 409. With
        `?wait=<seconds>` the call also waits (at most 20 s) for the job to end: 200 with
        the ended job, or 202 with the job as it is when the wait runs out. Each waiting
        call holds a web worker meanwhile.
        """
        tenant = owning_tenant()
        info = current().adapter.enqueue(*job_spec(request), tenant=tenant)
        info = _waited(info, query.get("wait"), tenant)
        return job_body(info), 200 if info.state.ended else 202, {"Location": job_url(info.id)}

    @blp.arguments(ListQuerySchema, location="query", unknown=ma.RAISE)  # a typo is an error
    @blp.response(200, JobListSchema)
    @problems(blp, 401, 403, 429, 503)
    def get(self, query):
        """List the tenant's jobs, newest first.

        Filter by `state`, `type`, `queue` and the creation time (`created_after`,
        `created_before`, both exclusive; an empty range lists nothing); page with
        `limit` and the `next_cursor` of the previous page (null on the last page). A
        state is answered from its own index; type and queue are checked on at most 5000
        jobs per page, so a page of a rare type may be short (or empty) with a
        `next_cursor` that goes on.
        """
        after, before = query.get("created_after"), query.get("created_before")
        # the API shows times to the microsecond: a job shown at a bound is outside it
        wanted = JobFilter(
            tenant=current_tenant(), state=query.get("state") and query["state"].value,
            type=query.get("type"), queue=query.get("queue"),
            created_after=after and after.timestamp() + _HALF_US,
            created_before=before and before.timestamp() - _HALF_US)
        items, next_cursor = current().adapter.search().page(
            wanted, limit=query["limit"], cursor=_decode_cursor(query.get("cursor")))
        return {"items": [job_body(i) for i in items], "next_cursor": _encode_cursor(next_cursor)}


@blp.route("/batch")
class Batch(MethodView):
    """Many jobs in one call."""

    @blp.arguments(BatchRequestSchema)
    @blp.response(202, BatchResponseSchema, description="Accepted: every job is queued")
    @problems(blp, 400, 401, 403, 409, 413, 429, 503)
    def post(self, request):
        """Enqueue up to 500 jobs at once, all or nothing.

        Every job is validated first (errors are named `jobs.<index>.<field>`); then
        they are written in one pipelined round trip.
        """
        infos = current().adapter.enqueue_many([job_spec(item) for item in request["jobs"]],
                                               tenant=owning_tenant())
        return {"items": [job_body(i) for i in infos]}, 202


@blp.route("/bulk")
class Bulk(MethodView):
    """Act on every job a filter matches."""

    @blp.arguments(BulkRequestSchema)
    @blp.response(202, JobSchema, headers=JOB.location,
                  description="Accepted: the operation, a job of type switchyard.bulk")
    @problems(blp, 400, 401, 403, 413, 422, 429, 503)
    def post(self, request):
        """Retry, cancel or delete every job the filter matches, in the background.

        The operation is a job (`GET /v1/jobs/{id}` follows it): its progress counts the
        jobs acted on, its result is `{matched, done, skipped, errors}` (the last two by
        reason). It acts on the jobs that matched when it was asked for: the new jobs a
        retry makes are not matched again. Running jobs are not deleted (skipped as
        `running`). A tenant's key acts on its own jobs only; an operator's key on one
        tenant's (`filter.tenant`) or every tenant's. Each operation is in the audit log.
        """
        wanted = dict(request["filter"])
        tenant = current_tenant()
        if tenant is not None:
            if wanted.get("tenant", tenant) != tenant:
                flask.abort(403, "a tenant's key acts on its own tenant's jobs only")
            wanted["tenant"] = tenant
        if wanted.get("state") is not None:
            wanted["state"] = wanted["state"].value
        info = current().adapter.bulk().submit(request["action"], wanted, actor=flask.g.api_key,
                                               owner=tenant or OPERATOR)
        return job_body(info), 202, {"Location": job_url(info.id)}


@blp.route("/<job_id:job_id>")
class Job(MethodView):
    """One job."""

    @blp.arguments(WaitQuerySchema, location="query")
    @blp.response(200, JobSchema)
    @problems(blp, 401, 403, 404, 422, 429, 503)
    def get(self, query, job_id):
        """Read a job: its state, progress, result or error.

        With `?wait=<seconds>` (at most 20), a job that has not ended is answered when it
        ends or when the wait runs out, whichever is first (a long poll: the caller is
        woken as the job ends, not polled).
        """
        info = current().adapter.get(job_id, tenant=current_tenant())
        return job_body(_waited(info, query.get("wait"), current_tenant()))


@blp.route("/<job_id>/cancel")
class Cancel(MethodView):
    """Cancel a job."""

    @blp.response(202, JobSchema, description="Accepted: canceled, or (if it is running) "
                                              "asked to stop")
    @problems(blp, 401, 403, 404, 409, 429, 503)
    def post(self, job_id):
        """Cancel a scheduled, queued or running job; 409 if it already ended."""
        info = current().adapter.cancel(job_id, tenant=current_tenant())
        audited("job.cancel", {"job": job_id}, 1)
        return job_body(info)


@blp.route("/<job_id>/retry")
class Retry(MethodView):
    """Run a failed or canceled job again."""

    @blp.response(202, JobSchema, headers=JOB.location, description="Accepted: the new job")
    @problems(blp, 401, 403, 404, 409, 429, 503)
    def post(self, job_id):
        """Replay a failed or canceled job as a new job (its `retry_of` names the old one)."""
        info = current().adapter.retry(job_id, tenant=current_tenant())
        audited("job.retry", {"job": job_id}, 1, {"new_job": info.id})
        return job_body(info), 202, {"Location": job_url(info.id)}
