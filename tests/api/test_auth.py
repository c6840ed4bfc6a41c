"""API keys, tenant isolation and the per-key rate limit."""

from __future__ import annotations

import pytest
import redis

from service.auth import _match
from service.config import parse_api_keys
from tests.api.conftest import ACME, ACME_KEY, GLOBEX

PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


def _job(client, headers=ACME, **payload) -> dict:
    response = client.post("/v1/jobs", headers=headers,
                           json={"type": "demo.echo", "payload": {"message": "m", **payload}})
    assert response.status_code == 202, response.json
    return response.json


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer not-a-key-of-anyone"},
    {"Authorization": f"Basic {ACME_KEY}"},
    {"Authorization": f"Bearer {ACME_KEY}x"},
    {"Authorization": f"Bearer {ACME_KEY[:-1]}"},
])
@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/abc"),
    ("POST", "/v1/jobs/abc/cancel"), ("POST", "/v1/jobs/abc/retry"), ("POST", "/v1/jobs/batch"),
])
def test_every_v1_call_needs_a_valid_key(client, headers, method, path):
    response = client.open(path, method=method, headers=headers, json={})
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="switchyard"'
    assert set(response.json) == PROBLEM_KEYS
    assert response.json["status"] == 401
    assert response.json["type"] == "urn:switchyard:problem:unauthorized"


def test_a_rejected_call_writes_nothing(client, make_app):
    client.post("/v1/jobs", json={"type": "demo.echo", "payload": {"message": "x"}})
    assert client.get("/v1/jobs", headers=ACME).json["items"] == []
    assert client.get("/v1/jobs", headers=GLOBEX).json["items"] == []


def test_health_docs_and_metrics_need_no_key(client):
    for path in ("/healthz", "/openapi.json", "/docs", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_another_tenants_job_answers_exactly_like_an_unknown_one(client):
    job = _job(client)
    unknown = "0" * 32
    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        theirs = client.open(f"/v1/jobs/{job['id']}{suffix}", method=method, headers=GLOBEX)
        never = client.open(f"/v1/jobs/{unknown}{suffix}", method=method, headers=GLOBEX)
        assert theirs.status_code == never.status_code == 404
        assert theirs.get_data() == never.get_data()
        assert dict(theirs.headers) == dict(never.headers)
    # nothing changed, and globex's list does not show it
    assert client.get(f"/v1/jobs/{job['id']}", headers=ACME).json["state"] == "queued"
    assert client.get("/v1/jobs", headers=GLOBEX).json == {"items": [], "next_cursor": None}
    assert [j["id"] for j in client.get("/v1/jobs", headers=ACME).json["items"]] == [job["id"]]


def test_idempotency_keys_are_per_tenant(client):
    first = client.post("/v1/jobs", headers=ACME, json={
        "type": "demo.echo", "payload": {"message": "a"}, "options": {"idempotency_key": "k1"}})
    repeat = client.post("/v1/jobs", headers=ACME, json={
        "type": "demo.echo", "payload": {"message": "a"}, "options": {"idempotency_key": "k1"}})
    other = client.post("/v1/jobs", headers=GLOBEX, json={
        "type": "demo.echo", "payload": {"message": "c"}, "options": {"idempotency_key": "k1"}})
    assert first.status_code == repeat.status_code == other.status_code == 202
    assert repeat.json["id"] == first.json["id"]
    assert other.json["id"] != first.json["id"]  # another tenant's key, however it was used
    changed = client.post("/v1/jobs", headers=ACME, json={
        "type": "demo.echo", "payload": {"message": "b"}, "options": {"idempotency_key": "k1"}})
    assert changed.status_code == 409


def test_rate_limit_is_per_key_and_answers_429_with_retry_after(make_app):
    client = make_app(RATE_LIMIT="3/minute").test_client()
    for _ in range(3):
        assert client.get("/v1/jobs", headers=ACME).status_code == 200
    limited = client.get("/v1/jobs", headers=ACME)
    assert limited.status_code == 429
    assert limited.content_type == "application/problem+json"
    assert set(limited.json) == PROBLEM_KEYS
    assert limited.json["type"] == "urn:switchyard:problem:rate-limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61  # the window, rounded up
    assert "3 per 1 minute" in limited.json["detail"], limited.json  # which limit
    # every /v1 route shares the key's bucket
    assert client.post("/v1/jobs", headers=ACME, json={}).status_code == 429
    # another key has its own bucket; health and metrics are not limited
    assert client.get("/v1/jobs", headers=GLOBEX).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_rate_limit_is_shared_by_every_web_process(make_app):
    first = make_app(RATE_LIMIT="2/minute").test_client()
    second = make_app(RATE_LIMIT="2/minute").test_client()
    assert first.get("/v1/jobs", headers=ACME).status_code == 200
    assert second.get("/v1/jobs", headers=ACME).status_code == 200
    assert first.get("/v1/jobs", headers=ACME).status_code == 429


def test_the_rate_limit_is_one_script_call_per_v1_call_and_none_elsewhere(make_app, redis_url):
    """Every limit of the key counted in one call on the ledger's client (flask-limiter
    sent one per limit, with a request's worth of its own machinery around them), and
    nothing at all for a call that needs no key."""
    client = make_app(RATE_LIMIT="100/minute;1000/hour").test_client()
    raw = redis.Redis.from_url(redis_url)
    assert client.get("/v1/jobs", headers=ACME).status_code == 200  # the script loaded

    def ran(call) -> dict[str, int]:
        raw.config_resetstat()
        call()
        return {k.removeprefix("cmdstat_"): v["calls"]
                for k, v in raw.info("commandstats").items() if k != "cmdstat_config|resetstat"}

    commands = ran(lambda: client.get(f"/v1/jobs/{'0' * 32}", headers=ACME))
    assert commands.get("evalsha") == 1 and commands.get("incr") == 2, commands
    assert "incr" not in ran(lambda: client.get("/healthz"))
    counters = sorted(raw.scan_iter("*limits:key:*"))
    assert len(counters) == 2 and all(0 < raw.ttl(k) <= 3600 for k in counters), counters
    raw.close()


def test_key_lookup_finds_the_keys_tenant():
    keys = parse_api_keys("a:key-of-tenant-a,b:key-of-tenant-b,a:second-key-of-a")
    assert _match("key-of-tenant-b", keys).tenant == "b"
    assert _match("second-key-of-a", keys).tenant == "a"
    assert _match("key-of-tenant-", keys) is None
    assert _match("", keys) is None


OPS_KEY = "ops-key-0123456789"
ACME_READ_KEY = "acme-read-0123456789"
ROLES_KEYS = (f"acme:{ACME_KEY},globex:{GLOBEX['Authorization'].split()[1]},"
              f"*:{OPS_KEY},acme+read:{ACME_READ_KEY},*+read:ops-read-0123456789")


def test_roles_are_given_in_api_keys():
    keys = {k.label.split("/")[0] + ("+read" if k.read_only else ""): k
            for k in parse_api_keys(ROLES_KEYS)}
    assert keys["operator"].operator and not keys["operator"].read_only
    assert keys["operator+read"].operator and keys["operator+read"].read_only
    assert keys["acme+read"].tenant == "acme" and keys["acme+read"].role == "tenant-read"
    assert keys["acme"].role == "tenant" and keys["operator"].role == "operator"


@pytest.mark.parametrize("raw", ["**:abcdefghij", "*+write:abcdefghij", "acme+read+read:abcdefghij",
                                 "acme:abcdefghij,acme+read:abcdefghij"])
def test_malformed_roles_are_refused(raw):
    from service.config import ConfigurationError
    with pytest.raises(ConfigurationError):
        parse_api_keys(raw)


def test_a_read_only_key_reads_and_changes_nothing(make_app):
    client = make_app(API_KEYS=ROLES_KEYS).test_client()
    job = _job(client)
    read = {"Authorization": f"Bearer {ACME_READ_KEY}"}
    assert client.get(f"/v1/jobs/{job['id']}", headers=read).json["id"] == job["id"]
    assert [j["id"] for j in client.get("/v1/jobs", headers=read).json["items"]] == [job["id"]]
    for path in ("/v1/jobs", f"/v1/jobs/{job['id']}/cancel", "/v1/jobs/batch", "/v1/schedules"):
        response = client.post(path, headers=read, json={"type": "demo.echo", "payload": {}})
        assert response.status_code == 403, path
        assert response.content_type == "application/problem+json"
        assert "read-only" in response.json["detail"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=ACME).json["state"] == "queued"
    assert len(client.get("/v1/jobs", headers=ACME).json["items"]) == 1


def test_an_operator_key_reaches_every_tenants_job_by_id_and_creates_nothing(make_app):
    client = make_app(API_KEYS=ROLES_KEYS).test_client()
    ops = {"Authorization": f"Bearer {OPS_KEY}"}
    acme_job, globex_job = _job(client), _job(client, headers=GLOBEX)
    assert client.get(f"/v1/jobs/{globex_job['id']}", headers=ops).json["id"] == globex_job["id"]
    canceled = client.post(f"/v1/jobs/{acme_job['id']}/cancel", headers=ops)
    assert canceled.status_code == 202 and canceled.json["state"] == "canceled"
    created = client.post("/v1/jobs", headers=ops, json={"type": "demo.echo",
                                                          "payload": {"message": "m"}})
    assert created.status_code == 403 and "tenant's key" in created.json["detail"]
    listed = client.get("/v1/jobs", headers=ops)
    assert {j["id"] for j in listed.json["items"]} == {acme_job["id"], globex_job["id"]}
    assert len(client.get("/v1/jobs", headers=GLOBEX).json["items"]) == 1
