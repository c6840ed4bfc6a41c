"""``?wait=``: a POST that answers with the ended job, a GET that long-polls (real workers).

The caller is woken by the script that ends the job (``close`` in ``adapters/lua/
common.lua`` pushes to ``{ns}done:{id}``, one element per caller counted in the record's
``waited``), so these waits end as the job does, not at a poll.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest

from adapters import JobState
from tests.api.conftest import ACME, GLOBEX
from tests.harness import wait_until

ECHO = {"type": "demo.echo", "payload": {"message": "hi"}}


def test_post_with_wait_answers_200_with_the_ended_job(api_engine, engine_client):
    api_engine.start_worker()
    response = engine_client.post("/v1/jobs?wait=15", headers=ACME, json=ECHO)
    assert response.status_code == 200, response.json
    assert response.json["state"] == "succeeded" and response.json["result"] == {
        "message": "hi"}, response.json
    assert response.headers["Location"] == f"/v1/jobs/{response.json['id']}"
    # a failed job ends too: 200 with its error
    response = engine_client.post("/v1/jobs?wait=15", headers=ACME, json={
        "type": "api.fail_once", "payload": {"token": uuid.uuid4().hex}})
    assert response.status_code == 200 and response.json["state"] == "failed", response.json
    assert response.json["error"]["type"] == "RuntimeError"


def test_a_wait_that_runs_out_answers_202_with_the_job_as_it_is(api_engine, engine_client):
    # no worker: the job stays queued
    started = time.monotonic()
    response = engine_client.post("/v1/jobs?wait=0.3", headers=ACME, json=ECHO)
    assert response.status_code == 202 and response.json["state"] == "queued", response.json
    assert time.monotonic() - started >= 0.3  # it waited
    got = engine_client.get(f"/v1/jobs/{response.json['id']}?wait=0.2", headers=ACME)
    assert got.status_code == 200 and got.json["state"] == "queued"


def test_get_with_wait_is_woken_as_the_job_ends(api_engine, engine_client):
    """Two long polls on one queued job; a cancel ends it and wakes both, well before
    their 15 s (the cancel script pushes one element per waiter)."""
    job = engine_client.post("/v1/jobs", headers=ACME, json=ECHO).json
    answers: list = []

    def poll():
        answers.append(engine_client.get(f"/v1/jobs/{job['id']}?wait=15", headers=ACME))

    waiters = [threading.Thread(target=poll, daemon=True) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    record = f"{api_engine.adapter.ledger.ns}job:{job['id']}"
    wait_until(lambda: api_engine.redis.hget(record, "waited") == "2", 10, 0.01,
               "both callers counted as waiting")
    asked = time.monotonic()
    assert engine_client.post(f"/v1/jobs/{job['id']}/cancel", headers=ACME).status_code == 202
    for waiter in waiters:
        waiter.join(15)
    assert not any(w.is_alive() for w in waiters)
    assert time.monotonic() - asked < 10  # woken, not at the end of their 15 s
    assert [(a.status_code, a.json["state"]) for a in answers] == [(200, "canceled")] * 2


def test_a_wait_on_an_ended_job_counts_no_waiter_and_leaves_nothing(api_engine):
    """Asked of a job that has ended already, a wait neither counts itself on the record
    nor leaves an element on the done list (watch.lua wakes such a caller at once, and
    the pop right behind it takes that element)."""
    adapter = api_engine.adapter
    api_engine.start_worker()
    info = adapter.enqueue("demo.echo", {"message": "done"})
    assert adapter.wait(info.id, timeout=15).state.value == "succeeded"
    record = f"{adapter.ledger.ns}job:{info.id}"
    done = f"{adapter.ledger.ns}done:{info.id}"
    counted = api_engine.redis.hget(record, "waited")
    api_engine.redis.delete(done)  # what the first wait's end left, if anything
    queued = dataclasses.replace(adapter.get(info.id), state=JobState.QUEUED)
    # a caller that last saw it queued goes to the ledger, which says it has ended
    assert adapter.wait(queued, timeout=15).state is JobState.SUCCEEDED
    assert api_engine.redis.hget(record, "waited") == counted
    assert api_engine.redis.llen(done) == 0


@pytest.mark.parametrize("wait", ["-1", "21", "nan", "inf", "soon", ""])
def test_a_wait_out_of_range_is_a_422_and_enqueues_nothing(client, wait):
    before = client.get("/v1/jobs", headers=ACME).json["items"]
    response = client.post(f"/v1/jobs?wait={wait}", headers=ACME, json=ECHO)
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert "wait" in response.json["errors"], response.json
    assert client.get("/v1/jobs", headers=ACME).json["items"] == before
    got = client.get(f"/v1/jobs/{'0' * 32}?wait={wait}", headers=ACME)
    assert got.status_code == 422 and "wait" in got.json["errors"], got.json


def test_a_wait_on_a_job_of_another_tenant_or_none_is_a_404(client):
    got = client.get(f"/v1/jobs/{'0' * 32}?wait=1", headers=ACME)
    assert got.status_code == 404, got.json
    theirs = client.post("/v1/jobs", headers=ACME, json=ECHO).json  # no worker: it waits
    started = time.monotonic()
    got = client.get(f"/v1/jobs/{theirs['id']}?wait=5", headers=GLOBEX)
    assert got.status_code == 404, got.json
    assert time.monotonic() - started < 5  # refused before any wait, not after it


def test_a_wait_after_redis_lost_its_scripts_still_sees_the_job_end(api_engine):
    """The watch goes out in one round trip with the pop and the read (a pipeline); a
    Redis that lost its scripts refuses the watch, and the wait loads it and goes on."""
    adapter = api_engine.adapter
    api_engine.start_worker()
    warm = adapter.enqueue("demo.echo", {"message": "warm"})
    assert adapter.wait(warm, timeout=15).state.value == "succeeded"
    api_engine.redis.script_flush()
    info = adapter.enqueue("demo.echo", {"message": "after"})
    done = adapter.wait(info, timeout=15)
    assert done.state.value == "succeeded" and done.result == {"message": "after"}
