"""The audit log: who did what to which jobs, when (``adapters/audit.py`` keeps it)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from ..auth import current_tenant
from ..extensions import current
from ..schemas_ops import AuditListSchema, AuditQuerySchema
from . import Blueprint, problems

__all__ = ["blp"]

blp = Blueprint("audit", __name__, url_prefix="/v1/audit",
                description="Who retried, canceled, deleted, paused or changed what, and when.")


@blp.route("")
class Audit(MethodView):
    """The audit log, newest first."""

    @blp.arguments(AuditQuerySchema, location="query", unknown=ma.RAISE)
    @blp.response(200, AuditListSchema)
    @problems(blp, 401, 403, 429, 503)
    def get(self, query):
        """List the actions taken, newest first: single and bulk retries, cancels and
        deletes, queue and schedule changes.

        A tenant's key reads the entries of its tenant's keys; an operator's key reads
        every entry. Page with `limit` and the `next_cursor` of the previous page (null
        on the last page).
        """
        items, next_cursor = current().adapter.audit().list(
            query["limit"], before=query.get("cursor"), tenant=current_tenant())
        return {"items": items, "next_cursor": next_cursor}
