"""Workflows through the HTTP API: chain and chord on every engine, failure, cancel, tenants."""

from __future__ import annotations

import uuid

from tests.api.conftest import ACME, GLOBEX
from tests.harness import wait_until


def start(client, body: dict, headers=ACME, states=("running",)) -> dict:
    """POST a workflow and check the answer's shape (``states``: what it may be in by the
    time the answer is read; a worker may already have failed a one-job-deep one)."""
    response = client.post("/v1/workflows", headers=headers, json=body)
    assert response.status_code == 202, response.json
    workflow = response.json
    assert response.headers["Location"] == f"/v1/workflows/{workflow['id']}"
    assert workflow["links"] == {"self": f"/v1/workflows/{workflow['id']}"}
    assert workflow["state"] in states
    assert (workflow["finished_at"] is None) == (workflow["state"] == "running")
    for job in workflow["jobs"]:
        assert job["links"] == {"self": f"/v1/jobs/{job['id']}", "workflow": workflow["id"]}
    return workflow


def wait_ended(client, workflow_id: str, timeout: float = 30.0) -> dict:
    """GET the workflow until it and every job in it have ended."""
    ended_states = {"succeeded", "failed", "canceled"}

    def ended():
        response = client.get(f"/v1/workflows/{workflow_id}", headers=ACME)
        assert response.status_code == 200, response.json
        body = response.json
        return body if body["state"] != "running" and all(
            j["state"] in ended_states for j in body["jobs"]) else None
    return wait_until(ended, timeout, 0.05, f"workflow {workflow_id} to end")


def add(n: int) -> dict:
    return {"type": "api.add", "payload": {"n": n}}


def test_chain_and_chord_run_to_the_end_on_real_workers(api_engine, engine_client):
    client = engine_client
    api_engine.start_worker(concurrency=2)

    chain = start(client, {"chain": [add(1), add(2), add(3)]})
    assert chain["kind"] == "chain" and [j["type"] for j in chain["jobs"]] == ["api.add"] * 3
    # the first may already be running by the time the answer is read; the last waits
    first, *_, last = (j["state"] for j in chain["jobs"])
    assert first in ("queued", "started", "succeeded") and last == "scheduled"
    done = wait_ended(client, chain["id"])
    assert done["state"] == "succeeded" and done["finished_at"]
    assert [j["result"] for j in done["jobs"]] == [1, 3, 6]  # each read the previous result
    for before, after in zip(done["jobs"], done["jobs"][1:]):
        assert after["started_at"] >= before["finished_at"]
    assert all(j["backend"] == api_engine.backend for j in done["jobs"])

    chord = start(client, {"chord": {"header": [add(10), add(20), add(30)],
                                     "body": {"type": "api.collect"}}})
    assert chord["kind"] == "chord" and chord["jobs"][-1]["type"] == "api.collect"
    done = wait_ended(client, chord["id"])
    assert done["state"] == "succeeded"
    *header, body = done["jobs"]
    assert body["result"] == {"upstream": [10, 20, 30], "workflow": chord["id"]}
    assert body["started_at"] >= max(h["finished_at"] for h in header)

    # a header job that fails for good ends the body canceled: the chord does not hang
    broken = start(client, {"chord": {
        "header": [add(1), {"type": "api.fail_once", "payload": {"token": uuid.uuid4().hex}}],
        "body": {"type": "api.collect"}}}, states=("running", "failed"))
    done = wait_ended(client, broken["id"])
    assert done["state"] == "failed"
    ok, failed, body = done["jobs"]
    assert ok["state"] == "succeeded" and failed["state"] == "failed"
    assert body["state"] == "canceled" and body["cancel_reason"] == "upstream_failed"
    assert body["started_at"] is None and body["attempts"] == 0

    # the jobs are ordinary jobs too
    job = client.get(f"/v1/jobs/{body['id']}", headers=ACME)
    assert job.status_code == 200 and job.json["links"]["workflow"] == broken["id"]


def test_cancel_a_workflow_cancels_every_job_that_has_not_ended(client):
    workflow = start(client, {"chain": [{"type": "demo.echo", "payload": {"message": "a"}},
                                        {"type": "demo.echo", "payload": {"message": "b"}}]})
    canceled = client.post(f"/v1/workflows/{workflow['id']}/cancel", headers=ACME)
    assert canceled.status_code == 202, canceled.json
    assert canceled.json["state"] == "canceled" and canceled.json["finished_at"]
    assert [j["state"] for j in canceled.json["jobs"]] == ["canceled", "canceled"]
    assert all(j["cancel_reason"] == "requested" for j in canceled.json["jobs"])
    assert client.get(f"/v1/workflows/{workflow['id']}", headers=ACME).json == canceled.json

    again = client.post(f"/v1/workflows/{workflow['id']}/cancel", headers=ACME)
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"
    assert again.json["errors"] == {"state": ["is canceled"]}


def test_another_tenants_workflow_is_not_found_like_an_unknown_one(client):
    workflow = start(client, {"group": [{"type": "demo.echo", "payload": {"message": "x"}}]})
    assert workflow["kind"] == "group"
    unknown = client.get(f"/v1/workflows/{uuid.uuid4().hex}", headers=ACME)
    assert unknown.status_code == 404
    for response in (client.get(f"/v1/workflows/{workflow['id']}", headers=GLOBEX),
                     client.post(f"/v1/workflows/{workflow['id']}/cancel", headers=GLOBEX)):
        assert response.status_code == 404
        assert response.json == unknown.json
    still = client.get(f"/v1/workflows/{workflow['id']}", headers=ACME)
    assert still.status_code == 200 and still.json["state"] == "running"
    assert still.json["jobs"][0]["state"] == "queued"  # globex's cancel changed nothing


def test_invalid_workflows_name_the_job_and_field_and_enqueue_nothing(client):
    def refused(body: dict) -> dict:
        response = client.post("/v1/workflows", headers=ACME, json=body)
        assert response.status_code == 422, response.json
        assert response.headers["Content-Type"] == "application/problem+json"
        return response.json["errors"]

    echo = {"type": "demo.echo", "payload": {"message": "ok"}}
    assert refused({"chain": [echo, {"type": "demo.echo", "payload": {"message": 5}}]}) == {
        "chain.1.payload.message": ["Not a valid string."]}
    errors = refused({"chord": {"header": [echo], "body": {"type": "no.such"}}})
    assert list(errors) == ["chord.body.type"] and "unknown job type 'no.such'" in \
        errors["chord.body.type"][0]
    assert list(refused({"group": [echo, {"type": "api.untyped", "payload": {}}]})) == [
        "group.1.payload"]
    assert list(refused({"chain": [echo], "group": [echo]})) == ["_schema"]
    assert list(refused({})) == ["_schema"]
    assert list(refused({"chain": []})) == ["chain"]
    # workflow jobs take no idempotency key
    assert list(refused({"group": [{**echo, "options": {"idempotency_key": "k"}}]})) == [
        "group.0.options.idempotency_key"]
    assert client.get("/v1/jobs", headers=ACME).json["items"] == []
