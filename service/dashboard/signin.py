"""``/login`` and ``/logout``: an API key in, a session out (:mod:`.session`)."""

from __future__ import annotations

import flask

from ..apikeys import match
from ..extensions import current
from . import bp, safe_next, session


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; a valid key starts a session and goes back where it was going."""
    target = safe_next(flask.request.values.get("next"))
    if flask.request.method == "GET":
        if session.signed_in_key(current().settings.api_keys) is not None:
            return flask.redirect(target)
        return flask.render_template("dashboard/login.html", next=target, error=None)
    presented = (flask.request.form.get("api_key") or "").strip()
    found = match(presented, current().settings.api_keys) if presented else None
    if found is None:
        return flask.render_template("dashboard/login.html", next=target,
                                     error="That API key is not valid."), 401
    session.sign_in(found)
    return flask.redirect(target)


LOGIN_FAILURES = "20/minute"
"""Wrong keys a client address may try at ``/login`` (right ones are not counted)."""


def limit_guessing(app: flask.Flask) -> None:
    """Count refused sign-ins per client address in the shared limiter (429 above
    ``LOGIN_FAILURES``), so the form is no faster a way to guess keys than the API."""
    limiter = app.extensions.get("switchyard_limiter")
    if limiter is None:
        return
    app.view_functions["dashboard.login"] = limiter.guard(
        login, LOGIN_FAILURES, key=lambda: f"login:{flask.request.remote_addr}",
        counts=lambda response: response.status_code == 401, methods=frozenset({"POST"}))


@bp.route("/logout", methods=["POST"])
def logout():
    session.sign_out()
    return flask.redirect(flask.url_for("dashboard.login"))
