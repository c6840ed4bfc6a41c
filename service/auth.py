"""API key -> tenant: ``Authorization: Bearer <key>`` on every ``/v1`` call."""

from __future__ import annotations

import flask
from werkzeug.exceptions import Forbidden, Unauthorized

from .apikeys import ApiKey, match as _match

__all__ = ["authenticate", "current_tenant", "owning_tenant", "rate_limit_key", "needs_key",
           "init_app", "READ_METHODS"]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""What a read-only key may send."""

PROTECTED_PREFIX = "/v1/"
SIGNED_PREFIXES = ("/v1/hooks/",)
"""Calls authenticated by their own signature instead of an API key (inbound webhooks)."""


def needs_key(path: str) -> bool:
    """True for the calls that need an API key (and count against its rate limit)."""
    return path.startswith(PROTECTED_PREFIX) and not path.startswith(SIGNED_PREFIXES)


def authenticate() -> None:
    """Before every ``/v1`` request: set ``g.api_key`` or answer 401."""
    if not needs_key(flask.request.path):
        return
    header = flask.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <api key>'")
    keys = flask.current_app.extensions["switchyard"].settings.api_keys
    key = _match(token.strip(), keys)
    if key is None:
        raise Unauthorized("the API key is not valid")
    flask.g.api_key = key
    if key.read_only and flask.request.method not in READ_METHODS:
        raise Forbidden("this API key is read-only: it reads jobs and changes nothing")


def current_tenant() -> str | None:
    """The tenant of the request's API key (only inside ``/v1`` views); ``None`` for an
    operator's key, whose reads and actions by job id reach every tenant's jobs."""
    key: ApiKey = flask.g.api_key
    return None if key.operator else key.tenant


def owning_tenant() -> str:
    """The tenant that new jobs, workflows and schedules of this request belong to, and
    whose lists it reads; an operator's key has none and answers 403 here."""
    key: ApiKey = flask.g.api_key
    if key.operator:
        raise Forbidden("an operator's key reads and acts on any tenant's job by its id; "
                        "creating and listing use a tenant's key")
    return key.tenant


def rate_limit_key() -> str:
    """The rate-limit bucket: one per API key (never the key itself)."""
    key = flask.g.get("api_key")
    return f"key:{key.label}" if key is not None else f"addr:{flask.request.remote_addr}"


def init_app(app: flask.Flask) -> None:
    """Register authentication; it must run before the rate limiter's check."""
    app.before_request(authenticate)
