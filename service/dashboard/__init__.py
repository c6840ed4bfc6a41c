"""The operator's page: server-rendered HTML over the client, at ``/``.

Signed in with an API key (:mod:`.session`), a tenant's key sees exactly what the API
shows it (another tenant's job answers "not found", as an unknown one); an operator's
key (``*``) sees every tenant and the process-wide pages (queues, workers, audit,
charts); a read-only key sees no action and its POSTs answer 403. Every action is a
GET that shows what it will do and a confirming POST carrying the CSRF token.

Pages live in :mod:`.jobs` (jobs, a job, failures, bulk actions) and :mod:`.ops`
(queues, workers, schedules, workflows, audit, charts); JSON for the pages' polling
is under ``/ui/api/``, on the session, never on the ``/v1`` API's Bearer keys.
"""

from __future__ import annotations

import datetime
import json
import logging
from urllib.parse import urlsplit

import flask
import redis
from werkzeug.exceptions import Forbidden, HTTPException, NotFound

from adapters import BackendUnavailable, JobNotFound, SwitchyardError

from .. import errors
from ..extensions import current
from . import session

__all__ = ["bp", "init_app", "key", "scope", "require_operator"]

log = logging.getLogger("switchyard.dashboard")

bp = flask.Blueprint("dashboard", __name__, template_folder="templates",
                     static_folder="static", static_url_path="/ui/static")
_OPEN = {"dashboard.login", "dashboard.static"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def key():
    """The signed-in API key of this request."""
    return flask.g.dash_key


def scope() -> str | None:
    """The tenant whose jobs this request sees; None for an operator (every tenant)."""
    return None if key().operator else key().tenant


def require_operator() -> None:
    if not key().operator:
        raise Forbidden("this page is for an operator's key ('*' in API_KEYS)")


def safe_next(target: str | None) -> str:
    """A local path to go back to after signing in (never another site)."""
    parts = urlsplit(target or "")
    if not target or parts.scheme or parts.netloc or not target.startswith("/") \
            or target.startswith("//") or "\\" in target:
        return flask.url_for("dashboard.jobs")
    return target


def _is_api() -> bool:
    return flask.request.path.startswith("/ui/api/")


@bp.before_request
def _guard():
    """Sign-in, read-only and CSRF checks before every dashboard view."""
    request = flask.request
    if request.endpoint == "dashboard.static":
        return None
    if request.endpoint != "dashboard.login":
        found = session.signed_in_key(current().settings.api_keys)
        if found is None:
            if _is_api():
                return errors.problem(401, "sign in at /login first")
            back = request.full_path.rstrip("?") if request.method == "GET" else None
            return flask.redirect(flask.url_for("dashboard.login", next=back))
        flask.g.dash_key = found
        if request.method == "POST" and found.read_only and \
                request.endpoint != "dashboard.logout":
            raise Forbidden("this key is read-only: it looks, and changes nothing")
    if request.method == "POST":
        session.check_csrf()
    return None


@bp.after_request
def _headers(response: flask.Response) -> flask.Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if flask.request.endpoint != "dashboard.static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.context_processor
def _helpers():
    found = flask.g.get("dash_key")
    client = current().adapter
    from .data import features

    return {"me": found, "can_act": found is not None and not found.read_only,
            "is_operator": found is not None and found.operator,
            "csrf_token": session.csrf_token, "features": features(client),
            "fmt_time": fmt_time, "fmt_age": fmt_age, "to_json": to_json}


def fmt_time(at) -> str:
    if at is None or at == "":
        return "–"
    if isinstance(at, str):
        try:
            at = float(at)
        except ValueError:
            return at
    if isinstance(at, (int, float)):
        at = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
    return at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds) -> str:
    """``3h 12m``: an age or a duration, to the two largest units."""
    if seconds is None:
        return "–"
    s = max(0, int(seconds))
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def to_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _page_error(status: int, detail: str):
    if _is_api():
        return errors.problem(status, detail)
    return flask.render_template("dashboard/error.html", status=status, detail=detail), status


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    if _is_api():
        return errors.handle_http_exception(error)
    if isinstance(error, NotFound):
        return _page_error(404, "not found")
    return _page_error(error.code or 500, error.description or error.name)


@bp.errorhandler(SwitchyardError)
def _switchyard_error(error: SwitchyardError):
    if isinstance(error, JobNotFound):
        return _page_error(404, "not found")
    if isinstance(error, BackendUnavailable):
        log.warning("backend unavailable: %s", error)
        return _page_error(503, "the job store cannot be reached; try again shortly")
    return _page_error(409, str(error))


@bp.errorhandler(redis.RedisError)
def _redis_error(error):
    log.warning("Redis error on the dashboard: %s", error)
    return _page_error(503, "Redis cannot be reached; try again shortly")


@bp.errorhandler(Exception)
def _unexpected(error):
    log.error("unhandled error on %s %s", flask.request.method, flask.request.path,
              exc_info=(type(error), error, error.__traceback__))
    return _page_error(500, "an unexpected error occurred; it has been logged")


def init_app(app: flask.Flask) -> None:
    """Register the pages (at ``/``, ``/login``, ``/ui/...``) and the session."""
    from . import jobs, ops, signin  # noqa: F401 - their routes register on bp

    session.configure(app, current_settings(app).secret_key)
    app.register_blueprint(bp)
    signin.limit_guessing(app)


def current_settings(app: flask.Flask):
    return app.extensions["switchyard"].settings
