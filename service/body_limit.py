"""413 for request bodies over ``MAX_CONTENT_LENGTH``, chunked ones included.

werkzeug refuses a declared ``Content-Length`` over the limit by itself. A chunked
body has none: werkzeug caps the stream at the limit and hands the view a silently
truncated body (which then fails as bad JSON, a 400). So a chunked body is read here,
before the view, and one more byte of the raw stream tells "exactly at the limit"
from "over it".
"""

from __future__ import annotations

import flask
from werkzeug.exceptions import RequestEntityTooLarge

__all__ = ["enforce", "init_app"]


def enforce() -> None:
    """Before each request: read a chunked body now; 413 if it runs past the limit."""
    request = flask.request
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        return
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    data = request.get_data(cache=True)  # capped at the limit; views reuse the cache
    if len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge(f"the request body is over {limit} bytes")


def init_app(app: flask.Flask) -> None:
    app.before_request(enforce)
