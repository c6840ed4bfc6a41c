"""The caller's jobs per state: ``GET /v1/stats``, from the ledger's state indexes."""

from __future__ import annotations

from flask.views import MethodView

from ..auth import current_tenant
from ..extensions import current
from ..schemas import StatsSchema
from . import Blueprint, problems

__all__ = ["blp"]

blp = Blueprint("stats", __name__, url_prefix="/v1/stats",
                description="How many of the tenant's jobs are in each state.")


@blp.route("")
class Stats(MethodView):
    """The tenant's counts."""

    @blp.response(200, StatsSchema)
    @problems(blp, 401, 429, 503)
    def get(self):
        """Count the tenant's jobs per state (one read per state: cheap at any size).

        Jobs whose record has expired leave the counts within a maintenance tick."""
        counts = current().adapter.search().counts(current_tenant())
        total = counts.pop("total")
        return {"states": counts, "total": total}
