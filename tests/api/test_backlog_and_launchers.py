"""Queue backlog in /readyz and /metrics, webhook URLs vetted without DNS at enqueue,
and what the launchers do with a broken configuration or no ``-Q``."""

from __future__ import annotations

import subprocess
import sys
import uuid

import redis

from adapters import JobState
from service.cli import new_webhook_secret
from service.schemas import ProgressSchema
from tests.api.conftest import ACME, service_env
from tests.harness import ROOT, wait_until
from tests.processes import Process

ECHO = {"type": "demo.echo", "payload": {"message": "hi"}}


def deliver(url: str) -> dict:
    return {"type": "webhook.deliver", "payload": {"url": url, "event": "test.ping", "data": {}}}


def test_readyz_reports_each_queue_backlog_and_warns_of_a_queue_no_worker_serves(client):
    for _ in range(2):
        assert client.post("/v1/jobs", headers=ACME, json=ECHO).status_code == 202
    body = client.get("/readyz").json
    queues = body["checks"]["queues"]
    assert queues["ok"] is False
    backlog = queues["backlog"]["default"]
    assert backlog["queued"] == 2 and backlog["workers"] is False
    assert backlog["oldest_age_seconds"] >= 0
    assert any("'default'" in w and "no live worker" in w and "-Q default" in w
               for w in body["warnings"]), body["warnings"]


def test_metrics_count_queued_jobs_per_queue_with_the_oldest_age_and_one_charset(client):
    assert client.post("/v1/jobs", headers=ACME, json=ECHO).status_code == 202
    response = client.get("/metrics")
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("text/plain") and content_type.count("charset") == 1
    lines = response.get_data(as_text=True).splitlines()
    assert any(line.startswith("switchyard_queue_depth{")
               and 'state="queued"' in line and 'queue="default"' in line
               and line.endswith(" 1.0") for line in lines), lines
    assert any(line.startswith("switchyard_queue_oldest_seconds{")
               and 'queue="default"' in line for line in lines), lines


def test_an_unresolvable_webhook_host_is_accepted_and_a_private_literal_refused(client):
    accepted = client.post("/v1/jobs", headers=ACME,
                           json=deliver("https://no-such-host.invalid/hook"))
    assert accepted.status_code == 202, accepted.json
    refused = client.post("/v1/jobs", headers=ACME, json=deliver("http://10.0.0.7/hook"))
    assert refused.status_code == 422, refused.json
    assert "url" in str(refused.json["errors"])


def test_an_unresolvable_webhook_host_is_retried_when_the_job_runs(api_engine, engine_client):
    # the worker resolves with the system resolver, which knows no .invalid name
    api_engine.start_worker(env={"WEBHOOK_SIGNING_SECRET": new_webhook_secret()})
    created = engine_client.post("/v1/jobs", headers=ACME,
                                 json=deliver("https://no-such-host.invalid/hook"))
    assert created.status_code == 202, created.json
    info = api_engine.wait_for(created.json["id"], states={JobState.RETRYING,
                                                           JobState.FAILED}, timeout=60)
    assert info.state is JobState.RETRYING, (info.state, info.error)
    assert info.error["type"] == "DeliveryRetryable"
    assert "no-such-host.invalid" in info.error["message"]


def test_progress_numbers_keep_ints_as_ints():
    dumped = ProgressSchema().dump({"current": 3, "total": 10, "message": None})
    assert dumped["current"] == 3 and type(dumped["current"]) is int
    assert type(dumped["total"]) is int
    assert type(ProgressSchema().dump({"current": 0.5, "total": 1})["current"]) is float


def flask_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_keys_works_while_api_keys_is_malformed(redis_url):
    done = flask_command(["keys", "--tenant", "acme"],
                         service_env(redis_url, API_KEYS="not a key list"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("acme:sy_")


def test_a_bad_queue_backend_makes_the_worker_exit_3(redis_url):
    done = flask_command(["worker"], service_env(redis_url, QUEUE_BACKEND="no-such-engine"))
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "QUEUE_BACKEND" in done.stderr or "no-such-engine" in done.stderr, done.stderr


def test_the_worker_listens_to_every_registered_queue_by_default(redis_url, tmp_path):
    # the conformance job module declares a type on queue "alpha"; no other does
    env = service_env(redis_url, QUEUE_BACKEND="rq",
                      JOB_MODULES="service.jobs,tests.conformance.jobs")
    wanted = {"default", "alpha"}
    name = f"default-queues-{uuid.uuid4().hex[:8]}"
    worker = Process([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "-n", name],
                     env, tmp_path / "worker.log")
    ledger = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        def listening():
            worker.assert_alive("the worker")
            queues = ledger.hget(f"sy:worker:{name}", "queues")  # the default namespace
            return set(queues.split(",")) if queues else None
        assert wait_until(listening, 30, 0.1, "the worker's heartbeat") == wanted
    finally:
        assert worker.stop() in (0, -15), worker.log()
