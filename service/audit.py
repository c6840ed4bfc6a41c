"""The audit log from a view: one line per action, ``audited(action, target)``.

The entry names the request's API key (its label, role and tenant); the log itself is
the client's (``adapters/audit.py``). A write that fails is logged, not answered: the
action it records has already happened.
"""

from __future__ import annotations

import logging
from typing import Any

import flask
import redis

from .extensions import current

__all__ = ["audited"]

log = logging.getLogger("switchyard.audit")


def audited(action: str, target: Any, count: int | None = None, detail: Any = None) -> None:
    """Record that the request's API key did ``action`` to ``target`` (e.g.
    ``{"job": id}``, ``{"schedule": name}``), to ``count`` jobs if it says."""
    try:
        current().adapter.audit().record(flask.g.api_key, action, target, count, detail)
    except redis.RedisError:
        log.exception("could not write the audit entry of %s on %s", action, target)
