"""Every error the service answers, as one ``application/problem+json`` shape (RFC 9457).

    {"type": "urn:switchyard:problem:<slug>", "title": ..., "status": ..., "detail": ...,
     "errors": {"field.path": ["message", ...]}}

The adapters' exceptions, werkzeug's HTTP errors, webargs' validation errors,
the rate limit's 429 and Redis errors raised outside the adapters are all mapped here
and nowhere else.
"""

from __future__ import annotations

import http
import logging
from typing import Mapping

import flask
import redis
from werkzeug.exceptions import HTTPException, InternalServerError

from adapters import (
    BackendUnavailable,
    IdempotencyKeyReused,
    InvalidJob,
    InvalidState,
    JobNotFound,
    SwitchyardError,
    UnsupportedFeature,
)
from adapters.validation import flatten_errors

__all__ = ["PROBLEM_JSON", "problem", "problem_body", "flatten_errors", "ValidationProblem", "init_app",
           "handle_http_exception"]

log = logging.getLogger("switchyard.http")

PROBLEM_JSON = "application/problem+json"
BACKEND_RETRY_AFTER = 5
"""Seconds a client is told to wait when Redis or the broker is unreachable."""

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "content-too-large",
    414: "uri-too-long",
    415: "unsupported-media-type",
    417: "expectation-failed",
    422: "validation-failed",
    429: "rate-limited",
    431: "request-header-fields-too-large",
    500: "internal-error",
    501: "not-implemented",
    503: "backend-unavailable",
}


class ValidationProblem(Exception):
    """Raised by views for a 422 whose field errors they computed themselves."""

    def __init__(self, detail: str, errors: Mapping[str, list[str]]):
        super().__init__(detail)
        self.detail = detail
        self.errors = dict(errors)


def problem_body(status: int, detail: str | None = None, *, errors: Mapping | None = None,
                 title: str | None = None) -> dict:
    """The problem document itself (also what gunicorn.conf.py has gunicorn send)."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {
        "type": f"urn:switchyard:problem:{_SLUGS.get(status, str(status))}",
        "title": title or phrase,
        "status": status,
        "detail": detail or phrase,
        "errors": {k: list(v) for k, v in (errors or {}).items()},
    }


def problem(status: int, detail: str | None = None, *, errors: Mapping | None = None,
            title: str | None = None, headers: Mapping[str, str] | None = None) -> flask.Response:
    """A problem+json response."""
    body = problem_body(status, detail, errors=errors, title=title)
    response = flask.current_app.response_class(
        flask.json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _retry_after_rate_limit() -> str:
    # the rate limit (service/ratelimit.py) notes how long its window has to run
    return str(flask.g.get("retry_after", 1))


def handle_http_exception(error: HTTPException) -> flask.Response:
    """werkzeug errors, webargs validation (``error.data``) and the rate limit's 429."""
    status = error.code or 500
    if isinstance(error, InternalServerError) and error.original_exception is not None:
        return _unexpected(error.original_exception)
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    errors = data.get("errors") or data.get("messages")
    if errors:
        # webargs nests by location: {"json": {...}} or {"query": {...}}
        if isinstance(errors, Mapping) and set(errors) <= {"json", "query", "view_args",
                                                           "headers", "form", "files"}:
            merged: dict = {}
            for value in errors.values():
                merged.update(value if isinstance(value, Mapping) else {"_schema": value})
            errors = merged
        errors = flatten_errors(errors)
    detail = data.get("message") or error.description
    if status == 422 and errors:
        detail = "the request is not valid; see errors"
    if status == 429:
        headers["Retry-After"] = _retry_after_rate_limit()
        detail = f"rate limit of {error.description} per API key exceeded"
    if status == 405 and isinstance(getattr(error, "valid_methods", None), (list, tuple, set)):
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="switchyard"')
    return problem(status, detail, errors=errors, headers=headers)


def _switchyard_error(error: SwitchyardError) -> flask.Response:
    if isinstance(error, JobNotFound):
        return problem(404, "no such job")
    if isinstance(error, IdempotencyKeyReused):
        return problem(409, str(error), errors=error.errors)
    if isinstance(error, InvalidState):
        return problem(409, str(error), errors={"state": [f"is {error.state}"]} if error.state
                       else None)
    if isinstance(error, InvalidJob):
        return problem(422, str(error), errors=error.errors)
    if isinstance(error, UnsupportedFeature):
        return problem(422, str(error), errors={"options": [str(error)]})
    if isinstance(error, BackendUnavailable):
        log.warning("backend unavailable: %s", error)
        return problem(503, "the job store or broker cannot be reached; nothing was written",
                       headers={"Retry-After": str(BACKEND_RETRY_AFTER)})
    return _unexpected(error)


def _redis_error(error: redis.RedisError) -> flask.Response:
    log.warning("Redis error outside the adapter: %s", error)
    return problem(503, "Redis cannot be reached", headers={"Retry-After": str(BACKEND_RETRY_AFTER)})


def _validation_problem(error: ValidationProblem) -> flask.Response:
    return problem(422, error.detail, errors=error.errors)


def _unexpected(error: BaseException) -> flask.Response:
    log.error("unhandled error on %s %s", flask.request.method, flask.request.path,
              exc_info=(type(error), error, error.__traceback__))
    return problem(500, "an unexpected error occurred; it has been logged")


def init_app(app: flask.Flask) -> None:
    """Register the handlers (flask-smorest's own HTTPException handler is replaced)."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ValidationProblem, _validation_problem)
    app.register_error_handler(SwitchyardError, _switchyard_error)
    app.register_error_handler(redis.RedisError, _redis_error)
    app.register_error_handler(Exception, _unexpected)
