"""A request rate limit per API key, counted in Redis so every web process shares it."""

from __future__ import annotations

import flask
from flask_limiter import ApplicationLimit, Limiter

from adapters.connections import limiter_storage

from .auth import needs_key, rate_limit_key
from .config import Settings

__all__ = ["init_app"]


def _unprotected() -> bool:
    return not needs_key(flask.request.path)


def init_app(app: flask.Flask, settings: Settings) -> Limiter:
    """One shared bucket per API key over every ``/v1`` route; 429 above ``RATE_LIMIT``."""
    storage_uri, tls = limiter_storage(settings.adapter)
    limiter = Limiter(
        rate_limit_key,
        application_limits=[ApplicationLimit(limit_provider=settings.rate_limit,
                                             key_function=rate_limit_key,
                                             exempt_when=_unprotected)],
        storage_uri=storage_uri,
        storage_options={
            **tls,
            "key_prefix": f"{settings.adapter.home_namespace}limits",
            "socket_connect_timeout": settings.adapter.redis_timeout,
            "socket_timeout": settings.adapter.redis_timeout,
        },
        strategy="fixed-window",
        headers_enabled=False,  # it would put Retry-After on every answer; errors.py adds it on 429
        enabled=app.config.get("RATELIMIT_ENABLED", True),
    )
    limiter.init_app(app)
    app.extensions["switchyard_limiter"] = limiter
    return limiter
