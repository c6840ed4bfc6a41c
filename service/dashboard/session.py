"""Signing in to the dashboard with an API key, its session, and its CSRF token.

The session is Flask's signed cookie (``SECRET_KEY``, see :func:`service.apikeys.
session_secret`), so any gunicorn worker on any web machine with the same settings
reads it. It holds the key's non-secret label and a random CSRF token, never the key
nor its digest. Every request looks the label up in ``API_KEYS`` again: a key taken
out of the settings is signed out at its next request.

The cookie is HttpOnly, ``SameSite=Lax`` (a link from elsewhere, e.g. a job's URL in a
chat, opens signed in; a cross-site POST carries no cookie, and every POST also needs
the form's token) and ``Secure`` whenever the request came over https, as gunicorn
reports it (``X-Forwarded-Proto`` from ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import datetime
import hmac
import secrets

import flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import BadRequest, Forbidden

from ..apikeys import ApiKey

__all__ = ["DashboardSession", "signed_in_key", "sign_in", "sign_out", "csrf_token",
           "check_csrf", "LIFETIME"]

LIFETIME = datetime.timedelta(hours=12)
"""How long a sign-in lasts (the cookie's signature is refused after it, too)."""
_KEY, _CSRF = "key", "csrf"


class DashboardSession(SecureCookieSessionInterface):
    """Flask's signed-cookie session, ``Secure`` exactly when the request is https."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        return flask.request.is_secure or bool(app.config.get("SESSION_COOKIE_SECURE"))


def configure(app: flask.Flask, secret_key: str) -> None:
    """The app's session: signed with ``secret_key``, HttpOnly, SameSite=Lax, 12 hours."""
    app.secret_key = secret_key
    app.session_interface = DashboardSession()
    app.config.update(SESSION_COOKIE_NAME="switchyard_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=LIFETIME)


def signed_in_key(keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The key this session signed in with, if it is still configured."""
    label = flask.session.get(_KEY)
    if not isinstance(label, str):
        return None
    for key in keys:
        if hmac.compare_digest(key.label, label):
            return key
    flask.session.pop(_KEY, None)  # removed from API_KEYS: signed out
    return None


def sign_in(key: ApiKey) -> None:
    """A fresh session for ``key`` (a new CSRF token: none from before signing in)."""
    flask.session.clear()
    flask.session.permanent = True
    flask.session[_KEY] = key.label
    flask.session[_CSRF] = secrets.token_urlsafe(32)


def sign_out() -> None:
    flask.session.clear()


def csrf_token() -> str:
    """The session's CSRF token, made on first use (the sign-in form has one too)."""
    token = flask.session.get(_CSRF)
    if not isinstance(token, str) or not token:
        token = flask.session[_CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Every POST carries the session's token in the form field ``csrf_token`` (or the
    ``X-CSRF-Token`` header): 400 if it has none, 403 if it is not the session's."""
    sent = flask.request.form.get("csrf_token") or flask.request.headers.get("X-CSRF-Token")
    if not sent:
        raise BadRequest("the form has no CSRF token; reload the page and try again")
    expected = flask.session.get(_CSRF)
    if not isinstance(expected, str) or not hmac.compare_digest(
            sent.encode("utf-8", "surrogateescape"), expected.encode()):
        raise Forbidden("the form's CSRF token is not this session's; reload the page and "
                        "try again")
