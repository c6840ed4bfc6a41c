"""The queues resource: which queues there are, pausing and resuming one (operators only).

Queues are shared by every tenant, so what a queue holds (counts across tenants) and
who paused it are shown to an operator's key only; a tenant's key sees each queue's
name and whether it is paused (so it can tell why its jobs wait), the rest ``null``.
"""

from __future__ import annotations

import flask
import marshmallow as ma
from flask.views import MethodView
from marshmallow import fields
from werkzeug.exceptions import Forbidden
from werkzeug.routing import BaseConverter

from adapters import QueueInfo
from adapters.validation import QUEUE_NAME

from ..extensions import current
from . import Blueprint, problems

__all__ = ["blp", "QueueNameConverter", "queue_body", "register_converter"]

blp = Blueprint("queues", __name__, url_prefix="/v1/queues",
                description="The queues jobs wait in: list them; an operator pauses and "
                            "resumes one.")



class QueueNameConverter(BaseConverter):
    """A queue name in a path (``adapters.validation.QUEUE_NAME``); anything else names
    no queue at all (404). ``.`` and ``..`` are queue names no URL can carry (a URL
    drops them as path steps)."""

    regex = rf"(?!\.\.?(?:/|$)){QUEUE_NAME.pattern}"


class QueueSchema(ma.Schema):
    name = fields.String(required=True)
    paused = fields.Boolean(required=True)
    paused_at = fields.AwareDateTime(required=True, allow_none=True,
                                     metadata={"description": "operator keys only"})
    paused_by = fields.String(required=True, allow_none=True,
                              metadata={"description": "the pausing operator key's label; "
                                                       "operator keys only"})
    queued = fields.Integer(required=True, allow_none=True,
                            metadata={"description": "jobs in state queued across tenants, "
                                                     "those held by a pause included; "
                                                     "operator keys only"})
    oldest_queued_seconds = fields.Float(required=True, allow_none=True,
                                         metadata={"description": "age of the oldest queued "
                                                                  "job; operator keys only"})
    running = fields.Integer(required=True, allow_none=True,
                             metadata={"description": "jobs of the queue running now; "
                                                      "operator keys only"})


class QueueListSchema(ma.Schema):
    items = fields.List(fields.Nested(QueueSchema), required=True)


def queue_body(info: QueueInfo, operator: bool) -> dict:
    """The JSON shape of a queue; counts and who paused it for an operator only."""
    body = {"name": info.name, "paused": info.paused, "paused_at": None, "paused_by": None,
            "queued": None, "oldest_queued_seconds": None, "running": None}
    if operator:
        body.update(paused_at=info.paused_at, paused_by=info.paused_by, queued=info.queued,
                    oldest_queued_seconds=info.oldest_queued_age, running=info.running)
    return body


def _operator() -> bool:
    return flask.g.api_key.operator


def _require_operator() -> None:
    if not _operator():
        raise Forbidden("pausing and resuming a queue needs an operator's key: queues are "
                        "shared by every tenant")


@blp.route("")
class Queues(MethodView):
    """Every queue a job was ever enqueued to, or that is paused."""

    @blp.response(200, QueueListSchema)
    @problems(blp, 401, 429, 503)
    def get(self):
        """List the queues by name, each with whether it is paused.

        An operator's key also sees what each holds (jobs queued, the oldest one's age,
        jobs running, across tenants) and when and by whom it was paused.
        """
        operator = _operator()
        return {"items": [queue_body(q, operator) for q in current().adapter.queues().list()]}


@blp.route("/<queue_name:queue>/pause")
class PauseQueue(MethodView):
    @blp.response(200, QueueSchema)
    @problems(blp, 401, 403, 404, 422, 429, 503)
    def post(self, queue):
        """Pause a queue (operator keys): no job of it starts, on any worker, until it is
        resumed; its jobs stay `queued`, and jobs enqueued meanwhile wait too.

        Jobs already running finish. Pausing a paused queue answers its state unchanged.
        A queue no job used yet may be paused ahead of them. 422 if the engine cannot
        pause queues.
        """
        _require_operator()
        info = current().adapter.queues().pause(queue, by=flask.g.api_key.label)
        return queue_body(info, True)


@blp.route("/<queue_name:queue>/resume")
class ResumeQueue(MethodView):
    @blp.response(200, QueueSchema)
    @problems(blp, 401, 403, 404, 422, 429, 503)
    def post(self, queue):
        """Resume a queue (operator keys): its waiting jobs run again, each once, oldest
        first. Resuming a queue that is not paused answers its state."""
        _require_operator()
        return queue_body(current().adapter.queues().resume(queue), True)


def register_converter(app: flask.Flask, api) -> None:
    """The ``queue_name`` path converter, and in the spec the names it takes."""
    app.url_map.converters["queue_name"] = QueueNameConverter
    api.register_converter(QueueNameConverter,
                           lambda converter: {"type": "string",
                                              "pattern": f"^{QUEUE_NAME.pattern}$"})
