"""The workflows resource: enqueue a chain, group or chord, read it, cancel it."""

from __future__ import annotations

import flask
from flask.views import MethodView

from adapters import JobNotFound, WorkflowInfo

from ..auth import current_tenant, owning_tenant
from ..extensions import current
from ..schemas import WorkflowRequestSchema, WorkflowSchema
from . import Blueprint, Resource, problems
from .jobs import job_body, job_spec

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


@blp.route("")
class Workflows(MethodView):
    """The tenant's workflows."""

    @blp.arguments(WorkflowRequestSchema)
    @blp.response(202, WorkflowSchema, headers=WORKFLOW.location,
                  description="Accepted: the jobs that wait on nothing are queued")
    @problems(blp, 400, 401, 403, 413, 429, 503)
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
        specs = [job_spec(item) for item in requests]
        body = specs.pop() if kind == "chord" else None
        info = current().adapter.enqueue_workflow(kind, specs, body, tenant=owning_tenant())
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
    @problems(blp, 401, 403, 404, 429, 503)
    def get(self, workflow_id):
        """Read a workflow: its state and each of its jobs."""
        return workflow_body(_load(workflow_id))


@blp.route("/<workflow_id>/cancel")
class Cancel(MethodView):
    """Cancel a workflow."""

    @blp.response(202, WorkflowSchema, description="Accepted: every job that had not ended "
                                                   "is canceled (a running one asked to stop)")
    @problems(blp, 401, 403, 404, 409, 429, 503)
    def post(self, workflow_id):
        """Cancel every job of the workflow that has not ended; 409 if it already ended."""
        return workflow_body(_load(workflow_id, cancel=True))
