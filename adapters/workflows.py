"""Chains, groups and chords: the client's workflow calls (a part of :class:`Switchyard`)."""

from __future__ import annotations

import json
import time

from .errors import InvalidState, JobNotFound, unavailable
from .types import Capability, JobInfo, WorkflowInfo, WorkflowState, utc
from .validation import build_workflow

__all__ = ["Workflows"]

Spec = tuple  # (job type, payload, JobOptions or None)


class Workflows:
    """Mixed into the client: it supplies ``ledger``, ``require`` and ``_write``."""

    def enqueue_workflow(self, kind: str, jobs: list[Spec], body: Spec | None = None, *,
                         tenant: str = "default") -> WorkflowInfo:
        """Enqueue a ``chain`` (one after another), ``group`` (in parallel) or ``chord``
        (a group, then ``body`` once every header job succeeded) in one write.

        A chain's job reads the previous result as ``ctx.upstream``; a chord's body reads
        the header's results, in order. A waiting job's ``delay`` or ``run_at`` is the
        earliest it starts once released. When a job fails for good, the jobs that wait on
        it end canceled with reason ``upstream_failed`` -- so a chord never hangs. Errors
        name a job by its place, as the REST API does (``chain.1.payload.to``,
        ``chord.header.0.options.queue``, ``chord.body.type``).
        """
        self.require(Capability.WORKFLOWS, "workflows")
        now = time.time()
        workflow, records = build_workflow(self, kind, jobs, body, tenant, now)
        self._write(records, now, workflow)
        return self.get_workflow(workflow["id"], tenant=tenant)

    def get_workflow(self, workflow_id: str, *, tenant: str | None = None) -> WorkflowInfo:
        """The workflow and its jobs; ``JobNotFound`` if unknown or another tenant's."""
        with unavailable("cannot read from Redis"):
            wf = self.ledger.load_workflow(workflow_id)
            if not wf or (tenant is not None and wf.get("tenant") != tenant):
                raise JobNotFound(f"no workflow {workflow_id!r}")
            records = self.ledger.load_many(json.loads(wf["jobs"]))
        return WorkflowInfo(
            id=wf["id"], kind=wf["kind"], state=WorkflowState(wf["state"]), tenant=wf["tenant"],
            created_at=utc(float(wf["created_at"])),
            finished_at=utc(float(wf["finished_at"])) if wf.get("finished_at") else None,
            jobs=[JobInfo.from_record(rec) for rec in records if rec])

    def cancel_workflow(self, workflow_id: str, *, tenant: str | None = None) -> WorkflowInfo:
        """Cancel every job of the workflow that has not ended."""
        info = self.get_workflow(workflow_id, tenant=tenant)
        if info.state is not WorkflowState.RUNNING:
            raise InvalidState(f"workflow {workflow_id} already ended ({info.state.value})",
                               state=info.state.value)
        now = time.time()
        with unavailable("cannot write to Redis"):
            for job in reversed(info.jobs):  # waiting jobs first, so none is released meanwhile
                if not job.state.ended:
                    self.ledger.cancel(job.id, "requested", now)
        return self.get_workflow(workflow_id)
