"""The ledger on a Redis Cluster: three primaries of the test's own, jobs end to end.

``redis-server --cluster-enabled yes`` three times, joined by ``redis-cli --cluster
create`` (no replicas), until every node says ``cluster_state:ok``. Switchyard is
pointed at it with ``REDIS_URL=redis+cluster://...`` (16 ledger shards) and a broker of
its own (a plain redis-server, or RabbitMQ for Celery when it answers): a real worker of
each engine that can use a cluster (Celery, Dramatiq) and the web process (gunicorn) run
jobs there -- enqueue, run, result, retry (by policy, by hand, in bulk), cancel, an
idempotency key, a chain, a rate-limited type, a paused queue, a schedule, the audit
log -- and a tenant's listing pages through every shard in order. The
ledger's keys must really spread: over more than one slot and more than one node. RQ,
whose queues must share the ledger's server, is refused with the reason.

No redis-server or redis-cli, or a cluster that does not come up: the tests skip with
the reason, unless ``REQUIRE_CLUSTER=1`` (set by ``.ci/run``) makes that a failure. The
cluster is ``tests/cluster.py``'s (``CLUSTER_BASE_PORT`` chooses its ports).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from adapters import (AdapterSettings, ConfigurationError, JobFilter, JobOptions, JobState,
                      create_adapter)
from service.embedded_redis import free_port
import tests.deploy.cluster_jobs  # noqa: F401 - the job types, registered here too
from tests.api.conftest import API_KEYS, ACME, gunicorn_argv, service_env
from tests.cluster import LocalCluster
from tests.conftest import AMQP_URL, amqp_reachable
from tests.harness import FAST_SETTINGS, ROOT, wait_until
from tests.processes import Process

JOBS = "tests.deploy.cluster_jobs"


def _unavailable(why: str):
    if os.environ.get("REQUIRE_CLUSTER") == "1":
        pytest.fail(f"REQUIRE_CLUSTER=1 but no local Redis Cluster: {why}")
    print(f"skipping: no local Redis Cluster: {why}")
    pytest.skip(f"no local Redis Cluster: {why}")


@pytest.fixture(scope="module")
def cluster():
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        _unavailable("redis-server or redis-cli is not on PATH")
    root = Path(tempfile.mkdtemp(prefix="switchyard-cluster-"))
    local = LocalCluster(root)
    try:
        try:
            local.start()
        except (RuntimeError, AssertionError, OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"the cluster did not come up: {str(exc).strip()[-500:]}")
        yield local
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


def _env(cluster: LocalCluster, backend: str, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHYARD_", "CELERY_", "DRAMATIQ_", "QUEUE_", "REDIS_"))}
    env.update(FAST_SETTINGS)
    env.update({"REDIS_URL": cluster.url, "QUEUE_BACKEND": backend, "JOB_MODULES": JOBS,
                "SWITCHYARD_NAMESPACE": f"sy{uuid.uuid4().hex[:6]}:",
                "SWITCHYARD_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:6]}.",
                {"celery": "CELERY_BROKER_URL", "dramatiq": "DRAMATIQ_BROKER_URL"}[backend]: broker,
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    return env


def test_rq_and_a_broker_on_the_cluster_are_refused_with_the_reason(cluster):
    settings = AdapterSettings.from_env({"REDIS_URL": cluster.url})
    assert settings.cluster and settings.ledger_shards == 16
    with pytest.raises(ConfigurationError, match="in one script call, which a cluster cannot do across slots"):
        create_adapter("rq", settings)
    with pytest.raises(ConfigurationError, match="set CELERY_BROKER_URL"):
        create_adapter("celery", settings)  # its broker would be REDIS_URL, the cluster
    with pytest.raises(ConfigurationError, match="set DRAMATIQ_BROKER_URL"):
        create_adapter("dramatiq", settings)


def _call(port: int, method: str, path: str, body: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={**ACME, "Content-Type": "application/json"})
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read() or b"null")


@pytest.mark.parametrize("backend, broker", [("celery", 1), ("celery", "amqp"), ("dramatiq", 2)])
def test_jobs_run_end_to_end_on_a_cluster(backend, broker, cluster, tmp_path):
    if broker == "amqp":  # RabbitMQ as the broker, the ledger on the cluster
        why = amqp_reachable()
        if why is not None:
            if os.environ.get("REQUIRE_AMQP") == "1":
                pytest.fail(f"REQUIRE_AMQP=1 but RabbitMQ at {AMQP_URL} is unreachable: {why}")
            pytest.skip(f"RabbitMQ at {AMQP_URL} is unreachable: {why}")
        env = _env(cluster, backend, AMQP_URL)
    else:  # a database of the plain redis-server beside the cluster
        env = _env(cluster, backend, cluster.broker(broker))
    client = create_adapter(backend, AdapterSettings.from_env(env))
    ledger = client.ledger
    procs = []
    try:
        worker = Process([sys.executable, "-m", "adapters.worker", "--backend", backend,
                          "-n", f"w-{backend}", "-Q", "default", "-c", "2"], env,
                         tmp_path / "worker.log")
        procs.append(worker)
        wait_until(lambda: worker.assert_alive("worker") and client.workers(), 60, 0.1,
                   "the worker's heartbeat in the ledger")
        port = free_port()
        web = Process(gunicorn_argv(port), service_env(cluster.url, **{
            k: v for k, v in env.items() if k.startswith(("SWITCHYARD_", "CELERY_", "DRAMATIQ_"))},
            QUEUE_BACKEND=backend, JOB_MODULES=JOBS, API_KEYS=API_KEYS), tmp_path / "web.log")
        procs.append(web)

        def web_ready():
            web.assert_alive("web")
            try:
                return _call(port, "GET", "/readyz")[0] == 200
            except OSError:
                return False
        wait_until(web_ready, 60, 0.1, "the web process to be ready")

        # enqueue: one by one (each lands in a shard of its own), a batch (one shard), over HTTP
        acme = [client.enqueue("c.echo", {"i": i}, tenant="acme").id for i in range(12)]
        acme += [j.id for j in client.enqueue_many([("c.echo", {"b": i}, None) for i in range(4)],
                                                   tenant="acme")]
        for i in range(3):
            status, body = _call(port, "POST", "/v1/jobs", {"type": "c.echo", "payload": {"h": i}})
            assert status == 202, body
            acme.append(body["id"])
        globex = [client.enqueue("c.echo", {"g": i}, tenant="globex").id for i in range(3)]
        flaky = client.enqueue("c.flaky", tenant="acme")
        boom = client.enqueue("c.boom", tenant="acme")
        rated = [client.enqueue("c.rated", {"i": i}, tenant="acme").id for i in range(3)]
        chain = client.enqueue_workflow("chain", [("c.echo", {"step": 1}, None),
                                                  ("c.echo", {"step": 2}, None)], tenant="acme")
        first = client.enqueue("c.echo", {"k": 1}, JobOptions(idempotency_key="k-1"), tenant="acme")
        again = client.enqueue("c.echo", {"k": 1}, JobOptions(idempotency_key="k-1"), tenant="acme")
        assert again.id == first.id
        later = client.enqueue("c.echo", {"later": 1}, JobOptions(delay=300), tenant="acme")
        assert client.cancel(later.id).state is JobState.CANCELED

        # run, result
        for job_id in acme + globex + rated:
            assert client.wait(job_id, timeout=60).state is JobState.SUCCEEDED, \
                (job_id, client.get(job_id).error, worker.log())
        assert client.get(acme[0]).result == {"i": 0}
        _, body = _call(port, "GET", f"/v1/jobs/{acme[-1]}")
        assert body["state"] == "succeeded" and body["result"] == {"h": 2}
        assert client.wait(first.id, timeout=60).state is JobState.SUCCEEDED
        # retry by policy (a backoff, released from the job's own shard) and by hand
        done = client.wait(flaky.id, timeout=60)
        assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2), done
        assert client.wait(boom.id, timeout=60).state is JobState.FAILED
        replay = client.retry(boom.id, tenant="acme")
        assert client.wait(replay.id, timeout=60).state is JobState.FAILED
        assert client.get(boom.id).retried_as == (replay.id,)
        assert ledger.shards.of(replay.id) == ledger.shards.of(boom.id)
        wf = wait_until(lambda: (lambda w: w if w.state.value == "succeeded" else None)(
            client.get_workflow(chain.id)), 60, 0.1, "the chain to succeed")
        assert [j.result for j in wf.jobs] == [{"step": 1}, {"step": 2}]

        # a paused queue holds its jobs on every shard; resume releases them
        client.queues().pause("default")
        held = [client.enqueue("c.echo", {"p": i}, tenant="globex").id for i in range(4)]
        wait_until(lambda: client.queues().get("default").queued == 4, 30, 0.1,
                   "the jobs to wait in the paused queue")
        assert all(client.get(j).state is JobState.QUEUED for j in held)
        client.queues().resume("default")
        for job_id in held:
            assert client.wait(job_id, timeout=60).state is JobState.SUCCEEDED

        # the operator's side: a bulk retry (a job of its own, acting shard by shard), the
        # audit log and a schedule (shard 0's keys)
        op = client.bulk().submit("retry", {"tenant": "acme", "state": "failed",
                                            "type": "c.boom"}, actor="ops-key")
        done = client.wait(op.id, timeout=60)
        assert done.state is JobState.SUCCEEDED and done.result["done"] == 2, done
        bulk_retries = [i for j in (boom.id, replay.id) for i in client.get(j).retried_as
                        if i != replay.id]
        assert len(bulk_retries) == 2  # each written in the shard of the job it replays
        assert {ledger.shards.of(i) for i in bulk_retries} == {ledger.shards.of(boom.id),
                                                               ledger.shards.of(replay.id)}
        for job_id in bulk_retries:
            assert client.wait(job_id, timeout=60).state is JobState.FAILED
        entries, _ = client.audit().list(10)
        assert [e["action"] for e in entries] == ["bulk.retry.finished", "bulk.retry"]
        client.schedules().create("acme", "tick", "c.echo", {"s": 1}, every=1)
        fired = client.schedules().tick(time.time() + 2)
        assert len(fired) == 1 and client.wait(fired[0], timeout=60).result == {"s": 1}

        # a tenant's listing: every shard merged newest first, paged by cursor
        mine = set(acme + rated + [flaky.id, boom.id, replay.id, first.id, later.id]
                   + [j.id for j in chain.jobs] + bulk_retries + fired + [op.id])
        seen, cursor = [], None
        while True:
            items, cursor = client.search().page(JobFilter(tenant="acme"), limit=5, cursor=cursor)
            seen += items
            if cursor is None:
                break
        assert [j.id for j in seen if j.id in mine] == [j.id for j in seen]
        assert {j.id for j in seen} == mine and len(seen) == len(mine)
        keys = [(j.created_at, j.id) for j in seen]
        assert keys == sorted(keys, reverse=True)
        pages, cursor = [], None
        while True:  # the same over HTTP
            path = "/v1/jobs?limit=7" + (f"&cursor={cursor}" if cursor else "")
            status, body = _call(port, "GET", path)
            assert status == 200, body
            pages += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert pages == [j.id for j in seen]
        failed, _ = client.search().page(JobFilter(tenant="acme", state="failed"), limit=50)
        assert {j.id for j in failed} == {boom.id, replay.id, *bulk_retries}
        assert client.search().counts("acme")["total"] == len(mine)
        assert client.search().counts()["total"] == len(mine) + len(globex) + len(held)
        assert "acme" in client.ledger.tenants() and "globex" in client.ledger.tenants()
        assert client.queue_stats().counters  # summed over the shards

        # the ledger really spreads: jobs in many slots, keys on every node
        slots = {ledger.r.keyslot(ledger.key(job_id)) for job_id in mine}
        assert len(slots) > 1, slots
        ns = client.settings.namespace
        per_node = {p: sum(1 for _ in cluster.node(p).scan_iter(match=f"{ns}*", count=1000))
                    for p in cluster.ports}
        assert sum(1 for n in per_node.values() if n) > 1, per_node
        # the web's rate limiter counts in the cluster too (shard 0's slot)
        assert any(any(True for _ in cluster.node(p).scan_iter(match=f"{ns}{{0}}:limits*"))
                   for p in cluster.ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.stop()
        client.close()
