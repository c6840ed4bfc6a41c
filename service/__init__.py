"""The Switchyard Flask service."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from flask import Flask

from adapters import create_adapter, load_job_modules
from adapters.connections import check_tls

from . import api, auth, body_limit, cli, config, dashboard, errors, ratelimit
from .api import SPEC_DEFAULTS
from .extensions import Switchyard
from .metrics import make_registry

__all__ = ["create_app"]

log = logging.getLogger("switchyard.service")

DEFAULTS: dict[str, Any] = {
    **SPEC_DEFAULTS,
    "RATELIMIT_ENABLED": True,
}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment (validated), then extensions, then blueprints.

    ``test_config`` overrides both: a string value named like an environment variable
    (``REDIS_URL``, ``API_KEYS``, ...) replaces that variable; every entry also lands
    in ``app.config``. A bad setting raises ``ConfigurationError``.
    """
    app = Flask(__name__)
    app.json.sort_keys = False  # a job reads in the order JobSchema declares
    app.config.from_mapping(DEFAULTS)
    overrides = dict(test_config or {})
    env = {**os.environ, **{k: v for k, v in overrides.items() if isinstance(v, str)}}
    settings = config.check(env)  # the service's settings and its jobs', all of them
    check_tls(settings.adapter)  # a certificate that fails now fails for ever: say so at start
    app.config.update(overrides)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length

    load_job_modules(settings.job_modules)
    adapter = create_adapter(settings.backend, settings.adapter)
    app.extensions["switchyard"] = Switchyard(settings=settings, adapter=adapter)
    app.extensions["switchyard_metrics"] = make_registry(adapter)
    if not settings.api_keys:
        log.warning("API_KEYS is empty: every /v1 call will answer 401 (make a key with "
                    "`flask --app wsgi keys`)")

    errors.init_app(app)
    auth.init_app(app)  # before the limiter: its bucket is the caller's API key
    ratelimit.init_app(app, settings)
    body_limit.init_app(app)  # after both: a body is read only for a caller let in
    api.init_app(app)  # its Api sends HTTP errors through errors.handle_http_exception too
    dashboard.init_app(app)  # the operator's page at /, on a session of its own
    cli.init_app(app)
    return app
