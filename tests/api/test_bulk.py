"""Bulk retry, cancel and delete through POST /v1/jobs/bulk, run by real workers, and
the audit log they (and single actions) write, read through GET /v1/audit."""

from __future__ import annotations

import collections
import uuid

import pytest

from adapters import Capability
from service import create_app
from tests.api.conftest import ACME, GLOBEX, app_config
from tests.harness import wait_until

OPERATOR_KEY = "operator-key-0123456789abcdef"
ACME_READ_KEY = "acme-read-key-0123456789abcdef"
OPERATOR_READ_KEY = "operator-read-key-0123456789abcdef"
KEYS = (f"acme:{ACME['Authorization'].split()[1]},globex:{GLOBEX['Authorization'].split()[1]},"
        f"*:{OPERATOR_KEY},acme+read:{ACME_READ_KEY},*+read:{OPERATOR_READ_KEY}")
OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
ACME_READ = {"Authorization": f"Bearer {ACME_READ_KEY}"}
OPERATOR_READ = {"Authorization": f"Bearer {OPERATOR_READ_KEY}"}


@pytest.fixture
def bulk_client(api_engine):
    """A test client of an app on ``api_engine`` that also knows operator and read keys."""
    app = create_app(app_config(api_engine.env(), QUEUE_BACKEND=api_engine.backend,
                                API_KEYS=KEYS))
    yield app.test_client()
    app.extensions["switchyard"].adapter.close()


def bulk(client, headers, action: str, **filter_) -> dict:
    response = client.post("/v1/jobs/bulk", headers=headers,
                           json={"action": action, "filter": filter_})
    assert response.status_code == 202, response.json
    assert response.json["type"] == "switchyard.bulk"
    assert response.headers["Location"] == f"/v1/jobs/{response.json['id']}"
    return response.json


def ended(client, headers, job_id: str, timeout: float = 60.0) -> dict:
    def done():
        response = client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.json
        state = response.json["state"]
        return response.json if state in ("succeeded", "failed", "canceled") else None
    return wait_until(done, timeout, 0.05, f"job {job_id} to end")


def all_ended(client, headers, ids: list[str], timeout: float = 90.0) -> dict[str, dict]:
    """Every job of ``ids`` once each has ended (read page by page of the tenant's list)."""
    wanted = set(ids)

    def read():
        jobs = {j["id"]: j for j in listed(client, headers) if j["id"] in wanted}
        if len(jobs) == len(wanted) and all(
                j["state"] in ("succeeded", "failed", "canceled") for j in jobs.values()):
            return jobs
        return None
    return wait_until(read, timeout, 0.2, f"{len(ids)} jobs to end")


def listed(client, headers, **query) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": 200, **query, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/jobs", headers=headers, query_string=params)
        assert response.status_code == 200, response.json
        items += response.json["items"]
        cursor = response.json["next_cursor"]
        if cursor is None:
            return items


def audit(client, headers) -> list[dict]:
    response = client.get("/v1/audit", headers=headers, query_string={"limit": 200})
    assert response.status_code == 200, response.json
    return response.json["items"]


def enqueue_batch(client, headers, jobs: list[dict]) -> list[str]:
    response = client.post("/v1/jobs/batch", headers=headers, json={"jobs": jobs})
    assert response.status_code == 202, response.json
    return [j["id"] for j in response.json["items"]]


def test_bulk_retry_makes_one_new_job_per_failed_job_and_leaves_other_tenants_alone(
        api_engine, bulk_client):
    if not api_engine.supports(Capability.RETRY_FAILED):
        pytest.skip("the engine does not declare retry_failed")
    client = bulk_client
    api_engine.start_worker(concurrency=2)
    n = 300
    failing = enqueue_batch(client, ACME, [
        {"type": "api.fail_once", "payload": {"token": uuid.uuid4().hex}} for _ in range(n)])
    theirs = enqueue_batch(client, GLOBEX, [
        {"type": "api.fail_once", "payload": {"token": uuid.uuid4().hex}} for _ in range(5)])
    assert {j["state"] for j in all_ended(client, ACME, failing).values()} == {"failed"}
    assert {j["state"] for j in all_ended(client, GLOBEX, theirs).values()} == {"failed"}

    op = bulk(client, ACME, "retry", type="api.fail_once")
    assert op["payload"]["filter"]["tenant"] == "acme"  # a tenant's key: its own jobs
    done = ended(client, ACME, op["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["matched"] == n and done["result"]["done"] == n, done["result"]
    assert done["result"]["skipped"] == {} and done["result"]["errors"] == {}
    assert done["progress"]["current"] == done["progress"]["total"] == n

    retries = [j for j in listed(client, ACME, type="api.fail_once") if j["retry_of"]]
    assert collections.Counter(j["retry_of"] for j in retries) == collections.Counter(failing)
    finished = all_ended(client, ACME, [j["id"] for j in retries])
    assert {(j["state"], j["attempts"], j["result"]["attempt"])
            for j in finished.values()} == {("succeeded", 1, 1)}
    # the originals stay failed; globex's failed jobs were not matched, nor retried
    assert {j["state"] for j in all_ended(client, ACME, failing).values()} == {"failed"}
    globex_jobs = listed(client, GLOBEX)
    assert sorted(j["id"] for j in globex_jobs) == sorted(theirs)
    assert {j["state"] for j in globex_jobs} == {"failed"}
    assert client.get(f"/v1/jobs/{op['id']}", headers=GLOBEX).status_code == 404

    entries = audit(client, ACME)
    actions = [e["action"] for e in entries]
    assert actions[:2] == ["bulk.retry.finished", "bulk.retry"], actions
    finished_entry, asked = entries[0], entries[1]
    assert asked["actor"]["role"] == "tenant" and asked["actor"]["tenant"] == "acme"
    assert asked["detail"] == {"operation": op["id"]}
    assert asked["target"]["filter"]["type"] == "api.fail_once"
    assert finished_entry["count"] == n and finished_entry["detail"]["done"] == n
    assert audit(client, GLOBEX) == []


def test_bulk_cancel_queued_and_delete_failed_jobs(api_engine, bulk_client):
    for capability in (Capability.QUEUES, Capability.CANCEL_QUEUED):
        if not api_engine.supports(capability):
            pytest.skip(f"the engine does not declare {capability.value}")
    client = bulk_client
    api_engine.start_worker(concurrency=2)  # listens to the default queue only
    parked = {headers["Authorization"]: enqueue_batch(client, headers, [
        {"type": "demo.echo", "payload": {"message": str(i)}, "options": {"queue": "parked"}}
        for i in range(20)]) for headers in (ACME, GLOBEX)}
    failing = enqueue_batch(client, ACME, [
        {"type": "api.fail_once", "payload": {"token": uuid.uuid4().hex}} for _ in range(30)])
    all_ended(client, ACME, failing)

    # a tenant's cancel: its own queued jobs only
    op = ended(client, ACME, bulk(client, ACME, "cancel", state="queued", queue="parked")["id"])
    assert op["state"] == "succeeded", op
    assert (op["result"]["matched"], op["result"]["done"]) == (20, 20), op["result"]
    canceled = all_ended(client, ACME, parked[ACME["Authorization"]])
    assert {(j["state"], j["cancel_reason"]) for j in canceled.values()} == {
        ("canceled", "requested")}
    assert {j["state"] for j in listed(client, GLOBEX)} == {"queued"}

    # an operator's cancel over every tenant reaches globex's; acme's have ended
    op = bulk(client, OPERATOR, "cancel", queue="parked")
    assert op["payload"]["filter"]["tenant"] is None
    assert client.get(f"/v1/jobs/{op['id']}", headers=ACME).status_code == 404
    op = ended(client, OPERATOR, op["id"])
    assert (op["result"]["matched"], op["result"]["done"]) == (20, 20), op["result"]
    assert {j["state"] for j in listed(client, GLOBEX)} == {"canceled"}

    # delete of the failed jobs: they are gone; the canceled ones stay
    op = ended(client, ACME, bulk(client, ACME, "delete", state="failed")["id"])
    assert (op["result"]["matched"], op["result"]["done"]) == (30, 30), op["result"]
    for job_id in failing:
        assert client.get(f"/v1/jobs/{job_id}", headers=ACME).status_code == 404
    left = {j["id"]: j["state"] for j in listed(client, ACME) if j["type"] != "switchyard.bulk"}
    assert set(left) == set(parked[ACME["Authorization"]])

    # a running job is not deleted: skipped, and counted
    sleeper = client.post("/v1/jobs", headers=ACME, json={
        "type": "demo.sleep", "payload": {"seconds": 60, "steps": 600}}).json
    wait_until(lambda: client.get(f"/v1/jobs/{sleeper['id']}", headers=ACME
                                  ).json["state"] == "started", 30, 0.05, "the sleeper to start")
    op = ended(client, ACME, bulk(client, ACME, "delete", state="started")["id"])
    assert op["result"]["matched"] == 1 and op["result"]["done"] == 0, op["result"]
    assert op["result"]["skipped"] == {"running": 1}
    assert client.get(f"/v1/jobs/{sleeper['id']}", headers=ACME).json["state"] == "started"
    assert client.post(f"/v1/jobs/{sleeper['id']}/cancel", headers=ACME).status_code == 202

    # a filter that matches nothing ends at once with nothing done
    op = ended(client, ACME, bulk(client, ACME, "delete", type="no.such.type")["id"])
    assert op["state"] == "succeeded"
    assert (op["result"]["matched"], op["result"]["done"]) == (0, 0)
    assert op["progress"]["current"] == op["progress"]["total"] == 0

    actions = collections.Counter(e["action"] for e in audit(client, ACME))
    assert actions == {"bulk.cancel": 1, "bulk.cancel.finished": 1, "bulk.delete": 3,
                       "bulk.delete.finished": 3, "job.cancel": 1}, actions
    operator_actions = [(e["action"], e["actor"]["role"]) for e in audit(client, OPERATOR)]
    assert ("bulk.cancel", "operator") in operator_actions
    assert ("bulk.cancel", "tenant") in operator_actions  # operators read every entry
    assert all(e["actor"]["tenant"] == "acme" for e in audit(client, ACME))


def test_bulk_and_audit_roles(make_app):
    client = make_app(API_KEYS=KEYS).test_client()  # no worker: operations stay queued
    for headers in (ACME_READ, OPERATOR_READ):
        response = client.post("/v1/jobs/bulk", headers=headers, json={"action": "retry"})
        assert response.status_code == 403, response.json
    response = client.post("/v1/jobs/bulk", headers=ACME,
                           json={"action": "cancel", "filter": {"tenant": "globex"}})
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    response = client.post("/v1/jobs/bulk", headers=ACME, json={
        "action": "purge", "filter": {"state": "lost", "queue": "no spaces", "color": "red",
                                      "created_after": "yesterday"}})
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert set(response.json["errors"]) == {"action", "filter.state", "filter.queue",
                                            "filter.color", "filter.created_after"}
    # nobody enqueues Switchyard's own job type by hand
    response = client.post("/v1/jobs", headers=ACME, json={
        "type": "switchyard.bulk", "payload": {"action": "delete", "filter": {}, "as_of": 0}})
    assert response.status_code == 422 and "type" in response.json["errors"]

    op = bulk(client, ACME, "delete", state="failed", created_after="2020-01-01T00:00:00Z")
    assert op["state"] == "queued" and op["payload"]["filter"]["tenant"] == "acme"
    assert client.get(f"/v1/jobs/{op['id']}", headers=ACME_READ).status_code == 200
    assert client.get(f"/v1/jobs/{op['id']}", headers=GLOBEX).status_code == 404
    assert client.get(f"/v1/jobs/{op['id']}", headers=OPERATOR).status_code == 200
    theirs = bulk(client, OPERATOR, "retry", tenant="globex")
    assert theirs["payload"]["filter"]["tenant"] == "globex"
    assert client.get(f"/v1/jobs/{theirs['id']}", headers=GLOBEX).status_code == 404

    # single actions and schedule changes go to the log too, one entry each
    job = client.post("/v1/jobs", headers=ACME, json={"type": "demo.echo",
                                                      "payload": {"message": "x"}}).json
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=ACME).status_code == 202
    retried = client.post(f"/v1/jobs/{job['id']}/retry", headers=ACME).json
    schedule = {"name": "nightly", "every": 3600,
                "job": {"type": "demo.echo", "payload": {"message": "tick"}}}
    assert client.post("/v1/schedules", headers=ACME, json=schedule).status_code == 201
    assert client.patch("/v1/schedules/nightly", headers=ACME,
                        json={"enabled": False}).status_code == 200
    assert client.delete("/v1/schedules/nightly", headers=ACME).status_code == 204
    entries = audit(client, ACME)
    assert [(e["action"], e["target"]) for e in entries] == [
        ("schedule.delete", {"schedule": "nightly"}),
        ("schedule.update", {"schedule": "nightly"}),
        ("schedule.create", {"schedule": "nightly"}),
        ("job.retry", {"job": job["id"]}),
        ("job.cancel", {"job": job["id"]}),
        ("bulk.delete", {"filter": op["payload"]["filter"]}),
    ]
    assert entries[1]["detail"] == {"changed": ["enabled"], "enabled": False}
    assert entries[3]["detail"] == {"new_job": retried["id"]} and entries[3]["count"] == 1
    assert entries[0]["actor"] == {"label": entries[0]["actor"]["label"], "role": "tenant",
                                   "tenant": "acme"}
    assert audit(client, ACME_READ) == entries  # a read-only key reads its tenant's log
    assert audit(client, GLOBEX) == []
    everything = audit(client, OPERATOR)
    assert [e["action"] for e in everything] == ["schedule.delete", "schedule.update",
                                                 "schedule.create", "job.retry", "job.cancel",
                                                 "bulk.retry", "bulk.delete"]
    assert everything[5]["actor"]["role"] == "operator"

    # paging: newest first, one by one, to the end
    seen, cursor = [], None
    while True:
        response = client.get("/v1/audit", headers=OPERATOR,
                              query_string={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.json
        seen += [e["id"] for e in response.json["items"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in everything]
    assert client.get("/v1/audit", headers=OPERATOR,
                      query_string={"cursor": "0-0"}).json == {"items": [], "next_cursor": None}
    assert client.get("/v1/audit", headers=OPERATOR,
                      query_string={"cursor": "later"}).status_code == 422


def test_a_bulk_operation_that_ends_at_once_is_audited_request_first(make_app):
    """The request's audit entry is written before its job exists: on an engine that
    runs the job as it is published (inline), the outcome still comes after it."""
    client = make_app(API_KEYS=KEYS, QUEUE_BACKEND="inline").test_client()
    op = bulk(client, ACME, "retry", state="failed")
    assert ended(client, ACME, op["id"])["state"] == "succeeded"
    actions = [e["action"] for e in audit(client, ACME)]
    assert actions[:2] == ["bulk.retry.finished", "bulk.retry"], actions
