"""Fixtures of the dashboard tests: an app on the session's Redis with keys of every role,
and a signed-in test client per key."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import ACME_KEY, GLOBEX_KEY, make_app  # noqa: F401 - fixtures

OPERATOR_KEY = "operator-key-0123456789abcdef"
READ_KEY = "acme-read-key-0123456789abcdef"
OPERATOR_READ_KEY = "operator-read-key-0123456789abcdef"
DASH_KEYS = (f"acme:{ACME_KEY},globex:{GLOBEX_KEY},*:{OPERATOR_KEY},acme+read:{READ_KEY},"
             f"*+read:{OPERATOR_READ_KEY}")
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(response) -> str:
    """The CSRF token of a page's form."""
    found = TOKEN.search(response.get_data(as_text=True))
    assert found, response.get_data(as_text=True)[:2000]
    return found.group(1)


def sign_in(client, key: str, follow: bool = False):
    token = csrf(client.get("/login"))
    return client.post("/login", data={"csrf_token": token, "api_key": key},
                       follow_redirects=follow)


@pytest.fixture
def app(make_app):  # noqa: F811
    return make_app(API_KEYS=DASH_KEYS)


@pytest.fixture
def adapter(app):
    return app.extensions["switchyard"].adapter


@pytest.fixture
def as_key(app):
    """``as_key(key)``: a test client signed in with ``key``."""
    def make(key: str):
        client = app.test_client()
        response = sign_in(client, key)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return client
    return make
