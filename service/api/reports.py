"""The PDF a ``report.generate`` job made: ``GET /v1/reports/{job id}/file``."""

from __future__ import annotations

import io

import flask
from flask.views import MethodView

from ..auth import current_tenant
from ..extensions import current
from ..jobs.reports import report_file
from . import Blueprint, problems

__all__ = ["blp"]

blp = Blueprint("reports", __name__, url_prefix="/v1/reports",
                description="Download the files report jobs made.")


@blp.route("/<job_id>/file")
class ReportFile(MethodView):
    """The report's file."""

    @blp.response(200, description="The report", content_type="application/pdf")
    @problems(blp, 401, 403, 404, 409, 429, 503)
    def get(self, job_id):
        """Download a succeeded report job's PDF; 409 while the job has not succeeded."""
        data = report_file(current().adapter, current_tenant(), job_id)
        return flask.send_file(io.BytesIO(data), mimetype="application/pdf", as_attachment=True,
                               download_name=f"report-{job_id}.pdf", max_age=0)
