"""``/login`` and ``/logout``: an API key in, a session out (:mod:`.session`)."""

from __future__ import annotations

import flask

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
    found = session.match_key(presented, current().settings.api_keys) if presented else None
    if found is None:
        return flask.render_template("dashboard/login.html", next=target,
                                     error="That API key is not valid."), 401
    session.sign_in(found)
    return flask.redirect(target)


@bp.route("/logout", methods=["POST"])
def logout():
    session.sign_out()
    return flask.redirect(flask.url_for("dashboard.login"))
