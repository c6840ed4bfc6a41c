"""A job's life through the HTTP API, on every engine, with real worker processes."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import ACME
from tests.harness import wait_until


def poll(client, job_id: str, states: set[str], timeout: float = 30.0) -> dict:
    """GET the job until its state is one of ``states``."""
    def reached():
        response = client.get(f"/v1/jobs/{job_id}", headers=ACME)
        assert response.status_code == 200, response.json
        return response.json if response.json["state"] in states else None
    return wait_until(reached, timeout, 0.05, f"job {job_id} to reach {sorted(states)}")


def enqueue(client, job_type: str, payload: dict, **options) -> dict:
    response = client.post("/v1/jobs", headers=ACME,
                           json={"type": job_type, "payload": payload, "options": options})
    assert response.status_code == 202, response.json
    assert response.headers["Location"] == f"/v1/jobs/{response.json['id']}"
    return response.json


def test_enqueue_poll_succeeded_failed_canceled_retried(api_engine, engine_client):
    client = engine_client
    api_engine.start_worker(concurrency=2)

    # succeeded
    job = enqueue(client, "demo.echo", {"message": "hello", "data": {"n": 1}})
    assert job["state"] == "queued" and job["backend"] == api_engine.backend
    done = poll(client, job["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    assert done["result"] == {"message": "hello", "data": {"n": 1}}
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"] and done["error"] is None
    assert done["links"] == {"self": f"/v1/jobs/{job['id']}"}

    # failed, then retried as a new job that succeeds
    token = uuid.uuid4().hex
    failing = enqueue(client, "api.fail_once", {"token": token})
    failed = poll(client, failing["id"], {"succeeded", "failed"})
    assert failed["state"] == "failed"
    assert failed["error"] == {"type": "RuntimeError",
                               "message": f"failing once on purpose for {token}"}
    retry = client.post(f"/v1/jobs/{failing['id']}/retry", headers=ACME)
    assert retry.status_code == 202, retry.json
    assert retry.json["id"] != failing["id"]
    assert retry.json["retry_of"] == failing["id"]
    assert retry.json["links"]["retry_of"] == f"/v1/jobs/{failing['id']}"
    assert retry.headers["Location"] == f"/v1/jobs/{retry.json['id']}"
    retried = poll(client, retry.json["id"], {"succeeded", "failed"})
    assert retried["state"] == "succeeded"
    assert retried["result"] == {"token": token, "attempt": 1}

    # canceled while running: progress is visible first, then the worker stops it
    sleeper = enqueue(client, "demo.sleep", {"seconds": 60, "steps": 600})
    running = wait_until(
        lambda: (lambda j: j if j["state"] == "started" and j["progress"] else None)(
            client.get(f"/v1/jobs/{sleeper['id']}", headers=ACME).json),
        30, 0.05, "the sleeper to report progress")
    assert running["progress"]["total"] == 600
    assert running["progress"]["message"].startswith("slept ")
    cancel = client.post(f"/v1/jobs/{sleeper['id']}/cancel", headers=ACME)
    assert cancel.status_code == 202
    assert cancel.json["state"] in ("started", "canceled")
    canceled = poll(client, sleeper["id"], {"canceled", "succeeded", "failed"})
    assert canceled["state"] == "canceled" and canceled["cancel_reason"] == "requested"

    # canceled before it ran: a delayed job never runs
    later = enqueue(client, "demo.echo", {"message": "never"}, delay=3600)
    assert later["state"] == "scheduled" and later["run_at"]
    gone = client.post(f"/v1/jobs/{later['id']}/cancel", headers=ACME)
    assert gone.status_code == 202 and gone.json["state"] == "canceled"
    assert gone.json["started_at"] is None and gone.json["attempts"] == 0

    # an ended job cannot be canceled again; a canceled one can be retried
    again = client.post(f"/v1/jobs/{later['id']}/cancel", headers=ACME)
    assert again.status_code == 409
    assert again.json["errors"] == {"state": ["is canceled"]}
    replay = client.post(f"/v1/jobs/{later['id']}/retry", headers=ACME)
    assert replay.status_code == 202
    assert poll(client, replay.json["id"], {"succeeded", "failed"})["result"] == {
        "message": "never"}

    # a job that has not ended cannot be retried
    busy = enqueue(client, "demo.echo", {"message": "x"}, delay=3600)
    assert client.post(f"/v1/jobs/{busy['id']}/retry", headers=ACME).status_code == 409

    # the list shows all of them, newest first, and filters by state and type
    listed = client.get("/v1/jobs?limit=200", headers=ACME).json
    ids = [j["id"] for j in listed["items"]]
    assert ids[0] == busy["id"] and set(ids) >= {job["id"], failing["id"], sleeper["id"]}
    assert [j["created_at"] for j in listed["items"]] == sorted(
        (j["created_at"] for j in listed["items"]), reverse=True)
    failed_only = client.get("/v1/jobs?state=failed", headers=ACME).json["items"]
    assert [j["id"] for j in failed_only] == [failing["id"]]
    sleeps = client.get("/v1/jobs?type=demo.sleep", headers=ACME).json["items"]
    assert [j["id"] for j in sleeps] == [sleeper["id"]]

    # readiness sees the worker; the metrics count what happened, by type, state and engine
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["status"] == "ready" and ready.json["workers"] == 1
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(
                   client.get("/metrics").get_data(as_text=True)) for s in family.samples}
    backend = api_engine.backend

    def sample(name, **labels):
        return samples.get((name, tuple(sorted({**labels, "backend": backend}.items()))), 0)

    assert sample("switchyard_jobs_enqueued_total", type="demo.echo") == 4
    assert sample("switchyard_jobs_enqueued_total", type="api.fail_once") == 2
    assert sample("switchyard_jobs_finished_total", type="demo.echo", state="succeeded") == 2
    assert sample("switchyard_jobs_finished_total", type="demo.echo", state="canceled") == 1
    assert sample("switchyard_jobs_finished_total", type="api.fail_once", state="failed") == 1
    assert sample("switchyard_jobs_finished_total", type="api.fail_once", state="succeeded") == 1
    assert sample("switchyard_jobs_finished_total", type="demo.sleep", state="canceled") == 1
    assert sample("switchyard_job_duration_seconds_count", type="demo.echo") == 2
    assert sample("switchyard_job_duration_seconds_bucket", type="demo.echo", le="+Inf") == 2
    assert sample("switchyard_job_duration_seconds_bucket", type="demo.sleep", le="0.005") == 0
    assert sample("switchyard_job_duration_seconds_bucket", type="demo.sleep", le="600.0") == 1
    # scheduled and running are counted over all queues: their queue label is empty
    assert sample("switchyard_queue_depth", state="scheduled", queue="") == 1  # busy, an hour away


def test_batch_runs_every_job(api_engine, engine_client):
    client = engine_client
    api_engine.start_worker(concurrency=2)
    jobs = [{"type": "demo.echo", "payload": {"message": f"m{i}"}} for i in range(20)]
    response = client.post("/v1/jobs/batch", headers=ACME, json={"jobs": jobs})
    assert response.status_code == 202, response.json
    items = response.json["items"]
    assert [j["payload"]["message"] for j in items] == [f"m{i}" for i in range(20)]
    for item in items:
        assert poll(client, item["id"], {"succeeded", "failed"})["result"] == item["payload"]
