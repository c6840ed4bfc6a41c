"""Schedules through the HTTP API: create, read, pause, change, remove, and a real scheduler."""

from __future__ import annotations

import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.api.conftest import ACME, GLOBEX, app_config
from tests.harness import wait_until
from tests.processes import Process

NIGHTLY = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
           "job": {"type": "demo.echo", "payload": {"message": "nightly"},
                   "options": {"queue": "reports", "max_retries": 2}}}


def refused(client, method: str, url: str, body: dict, status: int = 422) -> dict:
    response = client.open(url, method=method, headers=ACME, json=body)
    assert response.status_code == status, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json["errors"]


def test_create_read_list_pause_change_and_delete(client):
    created = client.post("/v1/schedules", headers=ACME, json=NIGHTLY)
    assert created.status_code == 201, created.json
    assert created.headers["Location"] == "/v1/schedules/nightly"
    body = created.json
    assert body["job"] == NIGHTLY["job"]
    assert (body["cron"], body["every"], body["timezone"]) == ("0 2 * * *", None, "Europe/Berlin")
    assert body["enabled"] is True and body["links"] == {"self": "/v1/schedules/nightly"}
    assert body["last_run_at"] is None and body["last_job_id"] is None
    local = datetime.fromisoformat(body["next_run_at"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (2, 0)

    assert client.get("/v1/schedules/nightly", headers=ACME).json == body
    assert client.get("/v1/schedules", headers=ACME).json == {"items": [body]}

    # another tenant neither sees it nor can touch it, and may use the same name
    assert client.get("/v1/schedules", headers=GLOBEX).json == {"items": []}
    for method in ("GET", "PATCH", "DELETE"):
        response = client.open("/v1/schedules/nightly", method=method, headers=GLOBEX,
                               json={"enabled": False} if method == "PATCH" else None)
        assert response.status_code == 404, (method, response.json)
    theirs = client.post("/v1/schedules", headers=GLOBEX, json={**NIGHTLY, "timezone": "UTC"})
    assert theirs.status_code == 201 and theirs.json["timezone"] == "UTC"

    # the same name again is a conflict
    errors = refused(client, "POST", "/v1/schedules", {**NIGHTLY, "cron": "0 3 * * *"}, 409)
    assert errors == {"name": ["already exists"]}

    # pause, resume
    paused = client.patch("/v1/schedules/nightly", headers=ACME, json={"enabled": False})
    assert paused.status_code == 200, paused.json
    assert paused.json["enabled"] is False and paused.json["next_run_at"] is None
    resumed = client.patch("/v1/schedules/nightly", headers=ACME, json={"enabled": True})
    assert resumed.json["enabled"] is True and resumed.json["next_run_at"]

    # change the timing and the job; an interval replaces the cron expression
    changed = client.patch("/v1/schedules/nightly", headers=ACME,
                           json={"cron": "30 4 * * 1", "timezone": "America/New_York"})
    assert changed.status_code == 200, changed.json
    local = datetime.fromisoformat(changed.json["next_run_at"]).astimezone(
        ZoneInfo("America/New_York"))
    assert (local.weekday(), local.hour, local.minute) == (0, 4, 30)
    assert changed.json["job"] == NIGHTLY["job"]
    job = {"type": "demo.sleep", "payload": {"seconds": 1}}
    interval = client.patch("/v1/schedules/nightly", headers=ACME, json={"every": 3600,
                                                                         "job": job})
    assert interval.status_code == 200, interval.json
    assert (interval.json["cron"], interval.json["every"]) == (None, 3600.0)
    assert interval.json["job"] == {**job, "options": {}}

    deleted = client.delete("/v1/schedules/nightly", headers=ACME)
    assert deleted.status_code == 204 and deleted.data == b""
    assert client.get("/v1/schedules/nightly", headers=ACME).status_code == 404
    assert client.delete("/v1/schedules/nightly", headers=ACME).status_code == 404
    assert client.get("/v1/schedules", headers=ACME).json == {"items": []}
    assert [s["name"] for s in client.get("/v1/schedules", headers=GLOBEX).json["items"]] == [
        "nightly"]


def test_invalid_schedules_say_why_under_the_field(client):
    def create(**changes):
        return refused(client, "POST", "/v1/schedules", {**NIGHTLY, **changes})

    errors = create(cron="61 2 * * *")
    assert list(errors) == ["cron"] and "not a valid cron expression" in errors["cron"][0]
    errors = create(cron="0 2 * *")
    assert errors == {"cron": ["needs five fields: minute hour day-of-month month day-of-week "
                               "(got 4)"]}
    assert create(cron="0 0 31 2 *") == {"cron": ["'0 0 31 2 *' never fires"]}
    errors = create(timezone="Mars/Olympus_Mons")
    assert list(errors) == ["timezone"] and "unknown timezone 'Mars/Olympus_Mons'" in \
        errors["timezone"][0]
    assert set(create(cron="61 * * * *", timezone="Nowhere")) == {"timezone", "cron"}
    assert list(create(every=60)) == ["cron"]  # cron and every
    assert list(refused(client, "POST", "/v1/schedules",
                        {k: v for k, v in NIGHTLY.items() if k != "cron"})) == ["cron"]
    assert set(create(every=0.5, cron=None)) == {"cron", "every"}
    assert list(create(job={"type": "demo.echo", "payload": {}})) == ["job.payload.message"]
    assert list(create(job={"type": "no.such"})) == ["job.type"]
    assert list(create(job={"type": "demo.echo", "payload": {"message": "x"},
                            "options": {"delay": 5}})) == ["job.options.delay"]
    assert list(create(name="no spaces")) == ["name"]
    assert client.get("/v1/schedules", headers=ACME).json == {"items": []}

    assert client.post("/v1/schedules", headers=ACME, json=NIGHTLY).status_code == 201
    errors = refused(client, "PATCH", "/v1/schedules/nightly", {"cron": "0 25 * * *"})
    assert list(errors) == ["cron"]
    assert list(refused(client, "PATCH", "/v1/schedules/nightly", {"timezone": "Nowhere"})) == [
        "timezone"]
    assert list(refused(client, "PATCH", "/v1/schedules/nightly",
                        {"cron": "0 1 * * *", "every": 5})) == ["cron"]
    assert list(refused(client, "PATCH", "/v1/schedules/nightly",
                        {"job": {"type": "demo.echo", "payload": {"message": 1}}})) == [
        "job.payload.message"]
    assert client.get("/v1/schedules/nightly", headers=ACME).json["cron"] == "0 2 * * *"
    assert refused(client, "PATCH", "/v1/schedules/other", {"cron": "bad"}, 404) == {}


def test_every_second_fires_through_a_real_scheduler_into_linked_jobs(api_engine, engine_client,
                                                                      tmp_path):
    client = engine_client
    api_engine.start_worker(concurrency=2)
    env = {**api_engine.env(), **{k: v for k, v in app_config(
        api_engine.env(), QUEUE_BACKEND=api_engine.backend).items() if isinstance(v, str)}}
    scheduler = Process([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler",
                         "--poll", "0.1"], env, tmp_path / "scheduler.log")
    try:
        created = client.post("/v1/schedules", headers=ACME, json={
            "name": "heartbeat", "every": 1,
            "job": {"type": "demo.echo", "payload": {"message": "tick"}}})
        assert created.status_code == 201, created.json

        def fired(at_least: int):
            scheduler.assert_alive("the scheduler")
            items = client.get("/v1/jobs?type=demo.echo&limit=200", headers=ACME).json["items"]
            items = [j for j in items if j["links"].get("schedule") == "heartbeat"]
            return items if len(items) >= at_least else None
        jobs = wait_until(lambda: fired(2), 30, 0.1, "two runs of the schedule")
        for job in jobs:
            assert job["payload"] == {"message": "tick"}
            assert job["links"]["self"] == f"/v1/jobs/{job['id']}"
            assert job["links"]["schedule"] == "heartbeat"
            # the tick the job was fired for, an ISO time like every other time in the API
            assert isinstance(job["links"]["tick"], str)
            assert datetime.fromisoformat(job["links"]["tick"]).utcoffset() is not None

        def succeeded(job_id):
            body = client.get(f"/v1/jobs/{job_id}", headers=ACME).json
            return body if body["state"] in ("succeeded", "failed", "canceled") else None
        for job in jobs:
            assert wait_until(lambda: succeeded(job["id"]), 30, 0.05, "the job to end")[
                "result"] == {"message": "tick"}

        paused = client.patch("/v1/schedules/heartbeat", headers=ACME, json={"enabled": False})
        assert paused.status_code == 200
        schedule = client.get("/v1/schedules/heartbeat", headers=ACME).json
        assert schedule["last_run_at"] and schedule["last_job_id"]
        assert schedule["links"]["last_job"] == f"/v1/jobs/{schedule['last_job_id']}"
        assert schedule["next_run_at"] is None
        made = {j["id"] for j in fired(1)}
        assert schedule["last_job_id"] in made
    finally:
        scheduler.stop()


def test_the_readme_nightly_schedule_runs_on_a_queue_the_default_worker_serves():
    """The README's example works under ``make run``: its job's queue, if it names one,
    is one a worker started without ``-Q`` listens to."""
    import json
    import re

    import service.jobs  # noqa: F401 - the job types a default worker registers
    from adapters import definitions
    from tests.harness import ROOT

    readme = (ROOT / "README.md").read_text()
    body = re.search(r"curl -s -X POST http://127\.0\.0\.1:5000/v1/schedules \\\n.*?-d '(.*?)'\n",
                     readme, re.S)
    assert body, "the README has no schedule example"
    example = json.loads(body.group(1))
    served = {"default"} | {d.queue for d in definitions().values()}
    assert example["job"].get("options", {}).get("queue", "default") in served
