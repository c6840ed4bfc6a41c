"""Inbound webhooks: ``POST /v1/hooks/{source}``, authenticated by signature, not API key."""

from __future__ import annotations

import flask
from flask.views import MethodView

from ..errors import problem
from ..extensions import current
from ..hooks import HookError, accept_hook
from ..schemas import HookRecordSchema
from . import Blueprint, problems

__all__ = ["blp", "PATH_PREFIX"]

PATH_PREFIX = "/v1/hooks/"
"""Exempt from bearer auth and the per-key rate limit: the signature is the authentication."""

blp = Blueprint("hooks", __name__, url_prefix="/v1/hooks",
                description="Accept webhooks from other services (Standard Webhooks signatures).")

_SIGNED = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"},
     "description": description}
    for name, description in (
        ("webhook-id", "the sender's unique id of this delivery (deduplicates retries)"),
        ("webhook-timestamp", "Unix seconds; refused when over 5 minutes off"),
        ("webhook-signature", "v1,<base64 HMAC-SHA256> with the source's secret"),
    )
]


@blp.route("/<source>")
class Hook(MethodView):
    """One inbound hook source (a name in HOOK_SECRETS)."""

    @blp.doc(security=[], parameters=_SIGNED, requestBody={
        "required": True, "description": "the event, as the sender signed it",
        "content": {"application/json": {"schema": {}}}})
    @blp.response(202, HookRecordSchema, description="Accepted: stored, and a webhook.process "
                                                      "job enqueued")
    @blp.alt_response(200, schema=HookRecordSchema, success=True,
                      description="Already received (same webhook-id): nothing enqueued again")
    @problems(blp, 400, 401, 404, 413, 422, 503)
    def post(self, source):
        """Accept a signed webhook, store it once, and process it in the background."""
        try:
            created, record = accept_hook(current().adapter, None, source,
                                          flask.request.headers, flask.request.get_data())
        except HookError as exc:
            return problem(exc.status, str(exc), errors=exc.errors)
        return record, 202 if created else 200
