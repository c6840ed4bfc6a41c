"""The schedules resource: periodic jobs by cron or interval, paused and resumed at run time."""

from __future__ import annotations

import copy
import zoneinfo
from datetime import datetime, timezone

import flask
from flask.views import MethodView

from adapters import InvalidJob, InvalidState, JobNotFound, definitions
from adapters.schedules import ScheduleInfo, next_cron_time, validate_cron, validate_timezone

from ..audit import audited
from ..auth import owning_tenant
from ..errors import ValidationProblem, problem
from ..extensions import current
from ..schemas import (
    ScheduleListSchema,
    ScheduleRequestSchema,
    ScheduleSchema,
    ScheduleUpdateSchema,
)
from . import Blueprint, Resource, problems
from .jobs import job_url

__all__ = ["blp", "schedule_body", "schedule_url", "document_schedules"]

blp = Blueprint("schedules", __name__, url_prefix="/v1/schedules",
                description="Periodic jobs: cron (in a timezone) or every N seconds.")

SCHEDULE = Resource("schedules.Schedule", "name", "schedule")
schedule_url = SCHEDULE.url


def schedule_body(info: ScheduleInfo) -> dict:
    """The JSON shape of a schedule (ScheduleSchema dumps it)."""
    links = {"self": schedule_url(info.name)}
    if info.last_job_id:
        links["last_job"] = job_url(info.last_job_id)
    return {"name": info.name,
            "job": {"type": info.job_type, "payload": info.payload, "options": info.options},
            "cron": info.cron, "every": info.every, "timezone": info.timezone,
            "enabled": info.enabled, "next_run_at": info.next_run_at,
            "last_run_at": info.last_run_at, "last_job_id": info.last_job_id,
            "created_at": info.created_at, "links": links}


def document_schedules(api, max_timeout: float) -> None:
    """Say in the spec what the request schemas' validators enforce about cron and every,
    the adapter about a job's timeout, and each job type about its payload."""
    schemas = api.spec.components.schemas
    schemas["ScheduleRequest"]["oneOf"] = [{"required": ["cron"]}, {"required": ["every"]}]
    zones = sorted(zoneinfo.available_timezones() | {"UTC"})
    schemas["ScheduleRequest"]["properties"]["timezone"]["enum"] = zones
    schemas["ScheduleUpdate"]["properties"]["timezone"]["enum"] = zones
    schemas["ScheduleUpdate"]["not"] = {"required": ["cron", "every"]}
    schemas["ScheduleJobOptions"]["properties"]["timeout"].update(maximum=max_timeout,
                                                                  exclusiveMinimum=True)
    # A schedule's job is one of the same types, with the options a schedule takes.
    schedule_variants = []
    for name in sorted(definitions()):
        variant = copy.deepcopy(schemas[f"{name}.request"])
        variant["properties"]["options"] = {"$ref": "#/components/schemas/ScheduleJobOptions"}
        api.spec.components.schema(f"{name}.schedule_job", variant)
        schedule_variants.append({"$ref": f"#/components/schemas/{name}.schedule_job"})
    schedule_job = schemas["ScheduleJob"]
    schedule_job.clear()
    schedule_job.update({"oneOf": schedule_variants, "discriminator": {
        "propertyName": "type", "mapping": {
            name: f"#/components/schemas/{name}.schedule_job" for name in sorted(definitions())}},
        "description": "The job a schedule enqueues on every run."})


def _check_timing(cron: str | None, zone_name: str | None) -> None:
    """422 naming ``cron`` or ``timezone`` for an expression or zone that cannot be used."""
    errors: dict[str, list[str]] = {}
    zone = None
    if zone_name is not None:
        try:
            zone = validate_timezone(zone_name)
        except InvalidJob as exc:
            errors.update(exc.errors)
    if cron is not None:
        try:
            expr = validate_cron(cron)
            # valid fields can still name a day that never comes (0 0 31 2 *)
            next_cron_time(expr, zone or timezone.utc, datetime.now(timezone.utc))
        except InvalidJob as exc:
            errors.update(exc.errors)
        except ValueError:
            errors["cron"] = [f"{cron!r} never fires"]
    if errors:
        raise ValidationProblem("the schedule's timing is not valid; see errors", errors)


def _not_found(name: str):
    flask.abort(404, f"no schedule named {name!r}")


@blp.route("")
class Schedules(MethodView):
    """The tenant's schedules."""

    @blp.arguments(ScheduleRequestSchema)
    @blp.response(201, ScheduleSchema, headers=SCHEDULE.location, description="Created")
    @problems(blp, 400, 401, 403, 409, 413, 429, 503)
    def post(self, request):
        """Create a schedule; 409 if the tenant already has one of that name.

        `cron` has five fields read in `timezone` (default UTC, DST-correct); `every` is
        seconds. Each run enqueues an ordinary job linked to its schedule.
        """
        _check_timing(request.get("cron"), request["timezone"])
        job = request["job"]
        try:
            info = current().adapter.schedules().create(
                owning_tenant(), request["name"], job["type"], job["payload"], job["options"],
                cron=request.get("cron"), every=request.get("every"),
                timezone_name=request["timezone"], enabled=request["enabled"])
        except InvalidState:
            flask.abort(problem(409, f"a schedule named {request['name']!r} already exists",
                                errors={"name": ["already exists"]}))
        audited("schedule.create", {"schedule": info.name})
        return schedule_body(info), 201, {"Location": schedule_url(info.name)}

    @blp.response(200, ScheduleListSchema)
    @problems(blp, 401, 403, 429, 503)
    def get(self):
        """List the tenant's schedules by name."""
        infos = current().adapter.schedules().list(owning_tenant())
        return {"items": [schedule_body(i) for i in infos]}


@blp.route("/<name>")
class Schedule(MethodView):
    """One schedule."""

    @blp.response(200, ScheduleSchema)
    @problems(blp, 401, 403, 404, 429, 503)
    def get(self, name):
        """Read a schedule: its timing, its job, when it runs next and ran last."""
        try:
            return schedule_body(current().adapter.schedules().get(owning_tenant(), name))
        except JobNotFound:
            _not_found(name)

    @blp.arguments(ScheduleUpdateSchema)
    @blp.response(200, ScheduleSchema)
    @problems(blp, 400, 401, 403, 404, 413, 429, 503)
    def patch(self, changes, name):
        """Change a schedule: `enabled: false` pauses it, `true` resumes it.

        `cron` replaces `every` and the other way round; `job` replaces the whole job.
        Running schedulers pick the change up at their next beat.
        """
        if not flask.request.get_data(cache=True):
            # webargs reads a missing body as {}: a PATCH that changes nothing by accident
            flask.abort(400, "the request needs a JSON body")
        schedules = current().adapter.schedules()
        try:
            schedules.get(owning_tenant(), name)  # an unknown name is a 404 before any 422
        except JobNotFound:
            _not_found(name)
        _check_timing(changes.get("cron"), changes.get("timezone"))
        try:
            info = schedules.update(owning_tenant(), name, **changes)
        except JobNotFound:
            _not_found(name)
        audited("schedule.update", {"schedule": name}, detail={
            "changed": sorted(changes), **({"enabled": changes["enabled"]} if "enabled" in changes
                                           else {})})
        return schedule_body(info)

    @blp.response(204, description="Removed; jobs it already made stay")
    @problems(blp, 401, 403, 404, 429, 503)
    def delete(self, name):
        """Remove a schedule; the jobs it already created stay."""
        try:
            current().adapter.schedules().delete(owning_tenant(), name)
        except JobNotFound:
            _not_found(name)
        audited("schedule.delete", {"schedule": name})
        return None
