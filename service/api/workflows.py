"""The workflows resource: enqueue a chain, group or chord, read it, cancel it."""

from __future__ import annotations

import flask
from flask.views import MethodView

from adapters import InvalidJob, JobNotFound, WorkflowInfo

from ..auth import current_tenant
from ..errors import ValidationProblem
from ..extensions import current
from ..schemas import WorkflowRequestSchema, WorkflowSchema
from . import Blueprint, Resource, problems
from .jobs import _validated, job_body

__all__ = ["blp", "workflow_body", "workflow_url", "document_workflows"]

blp = Blueprint("workflows", __name__, url_prefix="/v1/workflows",
                description="Chains, groups and chords of jobs.")

WORKFLOW = Resource("workflows.Workflow", "workflow_id", "workflow")
workflow_url = WORKFLOW.url


def workflow_body(info: WorkflowInfo) -> dict:
    """The JSON shape of a workflow (WorkflowSchema dumps it)."""
    return {"id": info.id, "kind": info.kind, "state": info.state,
            "jobs": [job_body(job) for job in info.jobs], "created_at": info.created_at,
            "finished_at": info.finished_at, "links": {"self": workflow_url(info.id)}}


def document_workflows(api) -> None:
    """Say in the spec what the request schema's validators enforce: exactly one shape,
    and jobs without ``idempotency_key``."""
    schemas = api.spec.components.schemas
    request = schemas["WorkflowRequest"]
    request["minProperties"] = 1
    request["maxProperties"] = 1
    job = {"$ref": "#/components/schemas/WorkflowJobRequest"}
    for kind in ("chain", "group"):
        request["properties"][kind]["items"] = job
    schemas["ChordRequest"]["properties"]["header"]["items"] = job
    schemas["ChordRequest"]["properties"]["body"] = job


def _field_names(kind: str, header_size: int) -> list[str]:
    """The request's name of each job, in the adapter's order (a chord's body last)."""
    if kind == "chord":
        return [f"chord.header.{i}" for i in range(header_size)] + ["chord.body"]
    return [f"{kind}.{i}" for i in range(header_size)]


def _renamed(errors: dict, names: list[str]) -> dict[str, list[str]]:
    """The adapter's ``jobs.<i>.<option>`` / ``body.<option>`` as the request names them."""
    renamed: dict[str, list[str]] = {}
    for key, messages in errors.items():
        head, _, rest = key.partition(".")
        if head == "jobs" and rest:
            index, _, rest = rest.partition(".")
            name = names[int(index)] if index.isdigit() and int(index) < len(names) else "jobs"
        elif head == "body" and names[-1] == "chord.body":
            name = names[-1]
        else:
            name, rest = key, ""
        if rest and rest.split(".")[0] not in ("payload", "type"):
            rest = f"options.{rest}"
        elif not rest and name != key:
            rest = "options"
        renamed.setdefault(f"{name}.{rest}" if rest else name, []).extend(messages)
    return renamed


@blp.route("")
class Workflows(MethodView):
    """The tenant's workflows."""

    @blp.arguments(WorkflowRequestSchema)
    @blp.response(202, WorkflowSchema, headers=WORKFLOW.location,
                  description="Accepted: the jobs that wait on nothing are queued")
    @problems(blp, 400, 401, 413, 429, 503)
    def post(self, request):
        """Enqueue a chain, a group or a chord.

        Every job is validated like `POST /v1/jobs`; errors name it by its place, e.g.
        `chain.1.payload.to` or `chord.body.type`. A chain's job reads the previous
        job's result, a chord's body the header's results in order. When a job fails
        for good, the jobs waiting on it end `canceled` (`upstream_failed`).
        """
        kind = next(k for k in ("chain", "group", "chord") if k in request)
        requests = request["chord"]["header"] + [request["chord"]["body"]] \
            if kind == "chord" else request[kind]
        header_size = len(request["chord"]["header"]) if kind == "chord" else len(requests)
        names = _field_names(kind, header_size)
        specs, errors = [], {}
        for name, item in zip(names, requests):
            spec, item_errors = _validated(item, prefix=f"{name}.")
            specs.append(spec)
            errors.update(item_errors)
        if errors:
            raise ValidationProblem("some jobs of the workflow are not valid; none was "
                                    "enqueued", errors)
        body = specs.pop() if kind == "chord" else None
        try:
            info = current().adapter.enqueue_workflow(kind, specs, body, tenant=current_tenant())
        except InvalidJob as exc:
            raise ValidationProblem(str(exc), _renamed(exc.errors, names)) from exc
        return workflow_body(info), 202, {"Location": workflow_url(info.id)}


def _load(workflow_id: str, cancel: bool = False) -> WorkflowInfo:
    adapter = current().adapter
    try:
        if cancel:
            return adapter.cancel_workflow(workflow_id, tenant=current_tenant())
        return adapter.get_workflow(workflow_id, tenant=current_tenant())
    except JobNotFound:
        flask.abort(404, "no such workflow")


@blp.route("/<workflow_id>")
class Workflow(MethodView):
    """One workflow."""

    @blp.response(200, WorkflowSchema)
    @problems(blp, 401, 404, 429, 503)
    def get(self, workflow_id):
        """Read a workflow: its state and each of its jobs."""
        return workflow_body(_load(workflow_id))


@blp.route("/<workflow_id>/cancel")
class Cancel(MethodView):
    """Cancel a workflow."""

    @blp.response(202, WorkflowSchema, description="Accepted: every job that had not ended "
                                                   "is canceled (a running one asked to stop)")
    @problems(blp, 401, 404, 409, 429, 503)
    def post(self, workflow_id):
        """Cancel every job of the workflow that has not ended; 409 if it already ended."""
        return workflow_body(_load(workflow_id, cancel=True))
