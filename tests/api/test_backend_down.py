"""Redis or the broker unreachable: 503, and no half-written job anywhere."""

from __future__ import annotations

import pytest
import redis

from service import create_app
from service.embedded_redis import free_port
from adapters import resolve_engine
from tests.api.conftest import ACME, API_KEYS, JOB_MODULES
from tests.harness import BROKER_ENGINES, WORKER_ENGINES
from tests.api.test_errors import assert_problem

JOB = {"type": "demo.echo", "payload": {"message": "x"},
       "options": {"idempotency_key": "once"}}


@pytest.mark.parametrize("backend", WORKER_ENGINES)
def test_dead_redis_answers_503_everywhere_it_is_needed(backend):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app({"REDIS_URL": dead, "QUEUE_BACKEND": backend, "API_KEYS": API_KEYS,
                      "JOB_MODULES": JOB_MODULES, "SWITCHYARD_REDIS_TIMEOUT": "1"})
    client = app.test_client()
    for response in (client.post("/v1/jobs", headers=ACME, json=JOB),
                     client.post("/v1/jobs/batch", headers=ACME, json={"jobs": [JOB]}),
                     client.get("/v1/jobs", headers=ACME),
                     client.get("/v1/jobs/abc", headers=ACME),
                     client.post("/v1/jobs/abc/cancel", headers=ACME)):
        body = assert_problem(response, 503, {})
        assert body["type"] == "urn:switchyard:problem:backend-unavailable"
        assert int(response.headers["Retry-After"]) > 0
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["status"] == "not ready" and ready.json["checks"]["redis"]["ok"] is False
    assert client.get("/healthz").status_code == 200  # liveness does not depend on Redis
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and b"switchyard_ledger_up 0.0" in metrics.data


@pytest.mark.parametrize("backend", BROKER_ENGINES)
def test_dead_broker_answers_503_and_leaves_no_record(backend, redis_url):
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    variable = resolve_engine(backend).broker_variable
    app = create_app({"REDIS_URL": redis_url, variable: dead_broker,
                      "QUEUE_BACKEND": backend, "API_KEYS": API_KEYS,
                      "JOB_MODULES": JOB_MODULES, "RATELIMIT_ENABLED": False})
    client = app.test_client()
    ledger = redis.Redis.from_url(redis_url, decode_responses=True)
    assert_problem(client.post("/v1/jobs", headers=ACME, json=JOB), 503, {})
    assert_problem(client.post("/v1/jobs/batch", headers=ACME,
                               json={"jobs": [JOB | {"options": {}}] * 3}), 503, {})
    assert client.get("/v1/jobs", headers=ACME).json == {"items": [], "next_cursor": None}
    ns = app.extensions["switchyard"].settings.adapter.namespace
    # stats and the set of queue names are counters and names, not records of a job
    leftovers = [k for k in ledger.keys(f"{ns}*") if k not in (f"{ns}stats", f"{ns}queues")]
    assert leftovers == [], "a job record, index entry or idempotency key survived"
    # and /metrics does not count the rolled-back jobs as enqueued
    assert not any(float(v) for k, v in ledger.hgetall(f"{ns}stats").items()
                   if k.startswith("enqueued|"))
    ledger.close()
