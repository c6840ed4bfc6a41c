"""GET /v1/queues, POST /v1/queues/{queue}/pause and /resume: roles, idempotency, names,
what a tenant sees, the /metrics gauge; and a paused queue over HTTP on a real worker."""

from __future__ import annotations

import pytest

from tests.api.conftest import ACME
from tests.api.test_auth import ACME_READ_KEY, OPS_KEY, ROLES_KEYS

OPS = {"Authorization": f"Bearer {OPS_KEY}"}
OPS_READ = {"Authorization": "Bearer ops-read-0123456789"}
ACME_READ = {"Authorization": f"Bearer {ACME_READ_KEY}"}
ECHO = {"type": "demo.echo", "payload": {"message": "m"}}


@pytest.fixture
def roles(make_app):
    return make_app(API_KEYS=ROLES_KEYS).test_client()


def _queues(client, headers) -> dict:
    response = client.get("/v1/queues", headers=headers)
    assert response.status_code == 200, response.json
    return {q["name"]: q for q in response.json["items"]}


def test_an_operator_pauses_and_resumes_a_queue_idempotently(roles):
    assert roles.post("/v1/jobs", headers=ACME, json=ECHO).status_code == 202
    first = roles.post("/v1/queues/default/pause", headers=OPS)
    assert first.status_code == 200, first.json
    assert first.json["paused"] is True and first.json["paused_by"].startswith("operator/")
    assert first.json["queued"] == 1 and first.json["running"] == 0
    again = roles.post("/v1/queues/default/pause", headers=OPS)
    assert again.status_code == 200 and again.json["paused_at"] == first.json["paused_at"]
    assert _queues(roles, OPS)["default"]["paused"] is True
    resumed = roles.post("/v1/queues/default/resume", headers=OPS)
    assert resumed.status_code == 200 and resumed.json["paused"] is False
    assert resumed.json["paused_at"] is None and resumed.json["queued"] == 1
    assert roles.post("/v1/queues/default/resume", headers=OPS).status_code == 200
    # a queue no job used yet may be paused ahead of them
    ahead = roles.post("/v1/queues/reports.v2/pause", headers=OPS)
    assert ahead.status_code == 200 and ahead.json["queued"] == 0
    assert set(_queues(roles, OPS)) == {"default", "reports.v2"}


@pytest.mark.parametrize("who", [ACME, ACME_READ, OPS_READ])
def test_only_an_operator_key_that_may_write_pauses_or_resumes(roles, who):
    for action in ("pause", "resume"):
        response = roles.post(f"/v1/queues/default/{action}", headers=who)
        assert response.status_code == 403, response.json
        assert response.content_type == "application/problem+json"
    assert _queues(roles, OPS) == {}  # a refused call writes nothing


def test_a_tenant_sees_names_and_paused_flags_but_no_counts(roles):
    assert roles.post("/v1/jobs", headers=ACME, json=ECHO).status_code == 202
    assert roles.post("/v1/queues/default/pause", headers=OPS).status_code == 200
    for headers in (ACME, ACME_READ):
        seen = _queues(roles, headers)["default"]
        assert seen["paused"] is True
        assert [seen[k] for k in ("paused_at", "paused_by", "queued", "oldest_queued_seconds",
                                  "running")] == [None] * 5
    assert _queues(roles, OPS_READ)["default"]["queued"] == 1


@pytest.mark.parametrize("name", ["a%20b", "x" * 65, "%C3%A9", "..", "a:b"])
def test_a_malformed_queue_name_is_no_queue(roles, name):
    response = roles.post(f"/v1/queues/{name}/pause", headers=OPS)
    assert response.status_code == 404, (name, response.json)
    assert response.content_type == "application/problem+json"
    assert _queues(roles, OPS) == {}


def test_metrics_show_each_queue_paused_or_not(roles):
    assert roles.post("/v1/jobs", headers=ACME, json=ECHO).status_code == 202
    assert roles.post("/v1/queues/reports/pause", headers=OPS).status_code == 200
    lines = roles.get("/metrics").get_data(as_text=True).splitlines()
    assert 'switchyard_queue_paused{queue="reports"} 1.0' in lines, lines
    assert 'switchyard_queue_paused{queue="default"} 0.0' in lines, lines
    assert roles.post("/v1/queues/reports/resume", headers=OPS).status_code == 200
    lines = roles.get("/metrics").get_data(as_text=True).splitlines()
    assert 'switchyard_queue_paused{queue="reports"} 0.0' in lines, lines
