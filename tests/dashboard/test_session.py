"""Signing in and out, the session cookie, the key re-checked on every request, CSRF."""

from __future__ import annotations

from service import create_app
from tests.api.conftest import ACME_KEY, JOB_MODULES
from tests.dashboard.conftest import DASH_KEYS, OPERATOR_KEY, csrf, sign_in


def test_root_unauthenticated_redirects_to_login(app):
    client = app.test_client()
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    page = client.get("/login")
    assert page.status_code == 200 and 'name="api_key"' in page.get_data(as_text=True)


def test_sign_in_goes_where_it_was_going_and_sign_out_ends_the_session(app, adapter):
    job = adapter.enqueue("demo.echo", {"message": "hi"}, tenant="acme")
    client = app.test_client()
    first = client.get(f"/ui/jobs/{job.id}")
    assert first.status_code == 302
    token = csrf(client.get(first.headers["Location"]))
    response = client.post("/login", data={"csrf_token": token, "api_key": ACME_KEY,
                                           "next": f"/ui/jobs/{job.id}"})
    assert response.status_code == 302 and response.headers["Location"] == f"/ui/jobs/{job.id}"
    assert client.get(f"/ui/jobs/{job.id}").status_code == 200
    page = client.get("/")
    out = client.post("/logout", data={"csrf_token": csrf(page)})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_next_never_leaves_the_site(app):
    client = app.test_client()
    token = csrf(client.get("/login"))
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        response = client.post("/login", data={"csrf_token": token, "api_key": ACME_KEY,
                                               "next": target})
        assert response.status_code == 302 and response.headers["Location"] == "/", target
        client.post("/logout", data={"csrf_token": csrf(client.get("/"))})
        token = csrf(client.get("/login"))


def test_a_wrong_key_is_refused(app):
    client = app.test_client()
    token = csrf(client.get("/login"))
    for key in ("not-a-key-at-all", "", ACME_KEY + "x", "\x00" * 20, "é" * 300):
        response = client.post("/login", data={"csrf_token": token, "api_key": key})
        assert response.status_code == 401, key
        assert "not valid" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_cookie_is_httponly_samesite_and_secure_over_https(app):
    client = app.test_client()
    response = sign_in(client, ACME_KEY)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Expires=" in cookie
    assert ACME_KEY not in cookie
    secure = app.test_client()
    token = csrf(secure.get("/login", base_url="https://localhost"))
    response = secure.post("/login", data={"csrf_token": token, "api_key": ACME_KEY},
                           base_url="https://localhost")
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_removed_key_is_signed_out(make_app, redis_url):
    client = make_app(API_KEYS=DASH_KEYS).test_client()
    sign_in(client, OPERATOR_KEY)
    assert client.get("/ui/queues").status_code == 200
    # another web process (same SECRET_KEY) whose API_KEYS no longer has the key
    secret = "s" * 40
    both = make_app(API_KEYS=DASH_KEYS, SECRET_KEY=secret)
    without = make_app(API_KEYS=DASH_KEYS.replace(f"*:{OPERATOR_KEY},", ""), SECRET_KEY=secret)
    client = both.test_client()
    sign_in(client, OPERATOR_KEY)
    cookie = client.get_cookie("switchyard_session")
    other = without.test_client()
    other.set_cookie("switchyard_session", cookie.value)
    response = other.get("/ui/queues")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_session_holds_across_processes_with_the_same_keys(make_app):
    """No SECRET_KEY: two apps (two web processes or machines) derive the same secret."""
    one, two = make_app(API_KEYS=DASH_KEYS), make_app(API_KEYS=DASH_KEYS)
    client = one.test_client()
    sign_in(client, ACME_KEY)
    other = two.test_client()
    other.set_cookie("switchyard_session", client.get_cookie("switchyard_session").value)
    assert other.get("/").status_code == 200
    changed = make_app(API_KEYS=DASH_KEYS + ",extra:extra-key-0123456789")
    third = changed.test_client()
    third.set_cookie("switchyard_session", client.get_cookie("switchyard_session").value)
    assert third.get("/").status_code == 302  # other keys, another secret: signed out


def test_a_short_secret_key_is_a_configuration_error(redis_url):
    import pytest

    from adapters import ConfigurationError

    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app({"REDIS_URL": redis_url, "API_KEYS": DASH_KEYS, "JOB_MODULES": JOB_MODULES,
                    "SECRET_KEY": "short"})


def test_csrf_missing_is_400_and_wrong_is_403(app, adapter, as_key):
    job = adapter.enqueue("demo.echo", {"message": "hi"}, tenant="acme")
    client = as_key(ACME_KEY)
    assert client.post(f"/ui/jobs/{job.id}/cancel").status_code == 400
    assert client.post(f"/ui/jobs/{job.id}/cancel",
                       data={"csrf_token": "x" * 43}).status_code == 403
    assert adapter.get(job.id).state.value == "queued"
    # the sign-in form is checked too
    fresh = app.test_client()
    assert fresh.post("/login", data={"api_key": ACME_KEY}).status_code == 400
    # another session's token is not this one's
    other = as_key(ACME_KEY)
    token = csrf(other.get(f"/ui/jobs/{job.id}/cancel"))
    assert client.post(f"/ui/jobs/{job.id}/cancel", data={"csrf_token": token}).status_code == 403
    ok = client.post(f"/ui/jobs/{job.id}/cancel",
                     data={"csrf_token": csrf(client.get(f"/ui/jobs/{job.id}/cancel"))})
    assert ok.status_code == 302 and adapter.get(job.id).state.value == "canceled"


def test_the_api_keeps_bearer_auth_and_ignores_the_session(as_key):
    client = as_key(ACME_KEY)
    assert client.get("/v1/jobs").status_code == 401


def test_guessing_keys_at_the_form_is_rate_limited(app):
    client = app.test_client()
    token = csrf(client.get("/login"))

    def attempt(key, who=client, tok=None):
        return who.post("/login", data={"csrf_token": tok or token, "api_key": key}).status_code

    assert [attempt(f"guess-{i:04d}x") for i in range(19)] == [401] * 19
    assert attempt(ACME_KEY) == 302  # a right key does not count
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})
    token = csrf(client.get("/login"))
    assert attempt("guess-last-x") == 401
    assert attempt("guess-over-x") == 429
    assert attempt(ACME_KEY) == 429  # held back for the rest of the minute
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.2"  # another address is not
    assert attempt(ACME_KEY, other, csrf(other.get("/login"))) == 302


def test_the_pages_json_needs_the_session(app, adapter):
    job = adapter.enqueue("demo.echo", {"message": "hi"}, tenant="acme")
    response = app.test_client().get(f"/ui/api/jobs/{job.id}")
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
