"""``GET /v1/jobs``'s queue and created-time filters, ``GET /v1/stats``, and the indexed
reads and per-minute counters behind them with real workers on every leg."""

from __future__ import annotations

import time
import uuid

from adapters import JobFilter
from tests.api.conftest import ACME, GLOBEX
from tests.api.test_errors import assert_problem
from tests.api.test_lifecycle import enqueue, poll


def listed(client, query: str, headers=ACME) -> list[str]:
    response = client.get(f"/v1/jobs?{query}", headers=headers)
    assert response.status_code == 200, response.json
    return [j["id"] for j in response.json["items"]]


def test_queue_and_created_range_filters(client):
    first = enqueue(client, "demo.echo", {"message": "a"}, queue="mail")
    time.sleep(0.01)  # distinct creation times (the clock's, not a wait for anything)
    middle = enqueue(client, "demo.echo", {"message": "b"})
    time.sleep(0.01)
    last = enqueue(client, "demo.echo", {"message": "c"}, queue="mail")
    other = client.post("/v1/jobs", headers=GLOBEX, json={"type": "demo.echo", "payload": {
        "message": "x"}, "options": {"queue": "mail"}}).json
    assert listed(client, "queue=mail") == [last["id"], first["id"]]
    assert listed(client, "queue=mail", GLOBEX) == [other["id"]]
    assert listed(client, "queue=nothing") == []
    after, before = first["created_at"], last["created_at"]
    assert listed(client, f"created_after={after}&created_before={before}".replace(
        "+", "%2B")) == [middle["id"]]
    assert listed(client, f"created_after={after}&queue=mail".replace("+", "%2B")) == [
        last["id"]]
    assert listed(client, "state=queued&queue=default") == [middle["id"]]
    assert listed(client, "state=failed&queue=mail") == []


def test_paging_a_filter_hands_out_every_job_once(client):
    ids = {enqueue(client, "demo.echo", {"message": str(i)}, queue="mail")["id"]
           for i in range(5)}
    enqueue(client, "demo.echo", {"message": "elsewhere"})
    seen, cursor = [], None
    while True:
        query = "queue=mail&limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"/v1/jobs?{query}", headers=ACME).json
        seen += [j["id"] for j in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert "~" in cursor
    assert len(seen) == 5 and set(seen) == ids


def test_bad_filters_are_problems(client):
    for query in ("queue=no%20spaces", "queue=", "created_after=yesterday",
                  "created_before=2026-01-01T00:00:00"):  # no offset
        body = assert_problem(client.get(f"/v1/jobs?{query}", headers=ACME), 422)
        assert set(body["errors"]) & {"queue", "created_after", "created_before"}, body
    # a range with nothing in it is a valid question (the spec cannot say otherwise)
    enqueue(client, "demo.echo", {"message": "a"})
    assert listed(client, "created_after=2026-01-02T00:00:00Z&created_before=2026-01-01T00:00:00Z") == []


def test_stats_counts_the_callers_jobs_per_state(client):
    for _ in range(2):
        enqueue(client, "demo.echo", {"message": "a"})
    later = enqueue(client, "demo.echo", {"message": "b"}, delay=3600)
    client.post(f"/v1/jobs/{later['id']}/cancel", headers=ACME)
    response = client.get("/v1/stats", headers=ACME)
    assert response.status_code == 200
    assert response.json == {"states": {"scheduled": 0, "queued": 2, "started": 0,
                                        "retrying": 0, "succeeded": 0, "failed": 0,
                                        "canceled": 1}, "total": 3}
    assert client.get("/v1/stats", headers=GLOBEX).json["total"] == 0
    assert client.get("/v1/stats").status_code == 401


def test_reads_and_counters_with_real_workers(api_engine, engine_client):
    client = engine_client
    api_engine.start_worker(concurrency=2)
    since = time.time()
    ok = [enqueue(client, "demo.echo", {"message": str(i)}) for i in range(3)]
    bad = [enqueue(client, "api.fail_once", {"token": uuid.uuid4().hex}) for _ in range(2)]
    keyed = enqueue(client, "demo.echo", {"message": "k"}, idempotency_key="the-key")
    for job in ok + bad + [keyed]:
        poll(client, job["id"], {"succeeded", "failed"})
    search = client.application.extensions["switchyard"].adapter.search()
    assert search.counts("acme") == {"scheduled": 0, "queued": 0, "started": 0,
                                     "retrying": 0, "succeeded": 4, "failed": 2,
                                     "canceled": 0, "total": 6}
    assert client.get("/v1/stats", headers=ACME).json["states"]["failed"] == 2
    items, cursor = search.page(JobFilter(state="failed"))
    assert [i.id for i in items] == [b["id"] for b in reversed(bad)] and cursor is None
    assert listed(client, "state=succeeded&type=demo.echo") == [
        j["id"] for j in reversed(ok + [keyed])]
    assert set(search.iter_ids(JobFilter(tenant="acme", type="demo.echo"))) == {
        j["id"] for j in ok + [keyed]}
    assert [i.id for i in search.page(JobFilter(payload={"message": "1"}))[0]] == [ok[1]["id"]]
    assert search.by_idempotency_key("acme", "the-key").id == keyed["id"]
    groups = search.failure_groups("acme")["groups"]
    assert [(g["type"], g["error_type"], g["count"]) for g in groups] == [
        ("api.fail_once", "RuntimeError", 2)]
    rows = search.minutes(since)
    assert sum(r["succeeded"] for r in rows) == 4 and sum(r["failed"] for r in rows) == 2
    assert sum(r["ran"] for r in rows) == 6
    assert all(r["p95"] is not None for r in rows if r["ran"])
