"""What a bulk retry costs, against what enqueueing the same jobs through the API costs.

    python -m bench.bulk_retry --jobs 100000

On a private redis-server (a free port; stopped at the end), with the RQ engine:

1. ``POST /v1/jobs/batch`` (the Flask app in this process, 500 jobs a request, no
   gunicorn): ``--jobs`` jobs enqueued; seconds and Redis commands per job. For
   reference, also ``POST /v1/jobs`` and ``POST /v1/jobs/{id}/retry`` one job a request
   (up to 2,000 of each).
2. The same number of jobs made failed (claimed and finished as failed by the ledger's
   own scripts, on a queue no worker listens to), then one ``POST /v1/jobs/bulk``
   ``{"action": "retry", "filter": {"type": ...}}`` run by a real worker process:
   seconds from the request to the operation's end and Redis commands per job.

Commands are ``INFO commandstats`` deltas, so they include the commands the ledger's
scripts ran inside Redis, and (for the bulk retry) the worker's own upkeep while the
operation ran (heartbeats, maintenance ticks: a few per second) and this script's
polling of the operation (one read per half second). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
OPERATOR_KEY = "bench-operator-0123456789abcdef"
PARKED = "parked"
"""The queue of the jobs that fail and of their retries: no worker listens to it."""


def tally(r: redis.Redis) -> collections.Counter:
    stats = r.info("commandstats")
    return collections.Counter({k.removeprefix("cmdstat_"): int(v["calls"])
                                for k, v in stats.items()
                                if k.removeprefix("cmdstat_") not in ("info", "echo")})


def per_job(after: collections.Counter, before: collections.Counter, jobs: int) -> dict:
    spent = after - before
    return {"commands_per_job": round(sum(spent.values()) / jobs, 2),
            "by_command": {k: round(v / jobs, 3) for k, v in spent.most_common()
                           if v / jobs >= 0.01}}


def app_for(url: str):
    from service import create_app

    return create_app({"REDIS_URL": url, "QUEUE_BACKEND": "rq", "TESTING": True,
                       "API_KEYS": f"acme:{KEY},*:{OPERATOR_KEY}", "JOB_MODULES": "bench.jobs",
                       "RATE_LIMIT": "100000000/minute"})


def batch_enqueue(client, jobs: int, queue: str | None = None) -> list[str]:
    headers = {"Authorization": f"Bearer {KEY}"}
    ids = []
    body = {"type": "bench.noop", "payload": {}, **({"options": {"queue": queue}} if queue else {})}
    for start in range(0, jobs, 500):
        response = client.post("/v1/jobs/batch", headers=headers,
                               json={"jobs": [body] * min(500, jobs - start)})
        assert response.status_code == 202, response.json
        ids += [j["id"] for j in response.json["items"]]
    return ids


def fail_all(app, ids: list[str]) -> None:
    """Each job claimed and finished as failed, as a worker whose job raised would."""
    ledger = app.extensions["switchyard"].adapter.ledger
    error = json.dumps({"type": "RuntimeError", "message": "failed for the bench"})
    tokens = ledger.current_tokens(ids)
    for start in range(0, len(ids), 500):
        pipe = ledger.r.pipeline(transaction=False)
        for job_id, token in zip(ids[start:start + 500], tokens[start:start + 500]):
            now = repr(time.time())
            ledger._claim(args=[ledger.ns, now, job_id, token, "bench", 60, 86400], client=pipe)
            ledger._finish(args=[ledger.ns, now, job_id, token, "failed", 86400, error, ""],
                           client=pipe)
        pipe.execute()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from service.embedded_redis import EmbeddedRedis

    out: dict = {"jobs": args.jobs, "engine": "rq"}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["REDIS_URL"] = server.url
        r = redis.Redis.from_url(server.url)
        app = app_for(server.url)
        client = app.test_client()

        # 1. the API's own enqueue, per job
        before, started = tally(r), time.perf_counter()
        batch_enqueue(client, args.jobs)
        seconds = time.perf_counter() - started
        out["batch_enqueue"] = {"seconds": round(seconds, 2),
                                "jobs_per_second": round(args.jobs / seconds),
                                **per_job(tally(r), before, args.jobs)}
        r.flushdb()

        # 1b. one job per request, and one retry per request (of as many failed jobs)
        headers = {"Authorization": f"Bearer {KEY}"}
        single = min(args.jobs, 2000)
        before, started = tally(r), time.perf_counter()
        for _ in range(single):
            assert client.post("/v1/jobs", headers=headers, json={
                "type": "bench.noop", "payload": {}}).status_code == 202
        seconds = time.perf_counter() - started
        out["single_enqueue"] = {"jobs": single, "seconds": round(seconds, 2),
                                 **per_job(tally(r), before, single)}
        r.flushdb()
        ids = batch_enqueue(client, single, queue=PARKED)
        fail_all(app, ids)
        before, started = tally(r), time.perf_counter()
        for job_id in ids:
            assert client.post(f"/v1/jobs/{job_id}/retry", headers=headers).status_code == 202
        seconds = time.perf_counter() - started
        out["single_retry"] = {"jobs": single, "seconds": round(seconds, 2),
                               **per_job(tally(r), before, single)}
        r.flushdb()

        # 2. failed jobs, then one bulk retry of them all
        ids = batch_enqueue(client, args.jobs, queue=PARKED)
        fail_all(app, ids)
        env = {**os.environ, "REDIS_URL": server.url, "QUEUE_BACKEND": "rq",
               "JOB_MODULES": "bench.jobs", "PYTHONPATH": str(ROOT)}
        worker = subprocess.Popen([sys.executable, "-m", "adapters.worker", "-Q", "default",
                                   "-c", "1"], cwd=ROOT, env=env, start_new_session=True,
                                  stdout=open(Path(tmp) / "worker.log", "wb"),
                                  stderr=subprocess.STDOUT)
        try:
            adapter = app.extensions["switchyard"].adapter
            adapter.wait_for_workers(1, timeout=60, queue="default")
            before, started = tally(r), time.perf_counter()
            response = client.post("/v1/jobs/bulk", headers={"Authorization": f"Bearer {KEY}"},
                                   json={"action": "retry", "filter": {"type": "bench.noop"}})
            assert response.status_code == 202, response.json
            op = adapter.wait(response.json["id"], timeout=3000)
            seconds = time.perf_counter() - started
            spent = per_job(tally(r), before, args.jobs)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        assert op.result["done"] == args.jobs, (op.state, op.result, op.error)
        out["bulk_retry"] = {"seconds": round(seconds, 2),
                             "jobs_per_second": round(args.jobs / seconds),
                             **spent,
                             "result": {k: op.result[k] for k in ("matched", "done", "skipped",
                                                                  "errors")}}
        out["retries_queued"] = r.zcard(f"{adapter.settings.namespace}queued:{PARKED}")
        adapter.close()
        r.close()
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
