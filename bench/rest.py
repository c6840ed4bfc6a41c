"""The REST service under load: gunicorn (2 workers) in front of Switchyard's default worker.

Measured only where the service exists (``wsgi.py`` with ``app = create_app()``, and
gunicorn installed); otherwise every HTTP figure says why it was not measured.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import measure
from bench.plan import Plan
from bench.subjects import ENGINES, ROOT, SETTINGS, Switchyard, blocked_pops, worker_name
from bench.workers import WorkerProcess, wait_until
from service.embedded_redis import free_port

__all__ = ["rest_status", "bench_http"]

DB = 12
NOOP = {"type": "bench.noop", "payload": {}}


def rest_status(root: Path = ROOT) -> str | None:
    """None if the REST service can be measured here, else why not."""
    if not (root / "wsgi.py").exists():
        return "not measured: no REST service (no wsgi.py)"
    if importlib.util.find_spec("gunicorn") is None:
        return "not measured: gunicorn is not installed"
    return None


class _Client:
    def __init__(self, base: str, key: str):
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return exc.code, json.loads(payload or b"{}")
            except ValueError:
                return exc.code, {"body": payload[:200].decode("utf-8", "replace")}


def _load(base: str, path: str, key: str, body: dict, requests: int, clients: int,
          jobs_per_request: int) -> tuple[float, dict]:
    """Jobs per second over ``requests`` POSTs from ``clients`` threads in two processes."""
    procs = 2
    start_at = time.time() + 1.0  # every process is up before the clock starts
    children = []
    for i in range(procs):
        share = requests // procs + (1 if i < requests % procs else 0)
        children.append(subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", base + path, "--key", key,
             "--body", json.dumps(body), "--requests", str(share),
             "--threads", str(max(1, clients // procs)), "--start-at", repr(start_at)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True))
    outputs = [json.loads(child.communicate(timeout=600)[0]) for child in children]
    ended = max(o["ended"] for o in outputs)
    ok = sum(o["ok"] for o in outputs)
    statuses: dict = {}
    for o in outputs:
        for status, n in o["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return ok * jobs_per_request / (ended - start_at), statuses


def _engine(engine: str, redis_url: str, plan: Plan, log_dir: Path, rest_env: dict) -> dict:
    url = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    subject = Switchyard(url, engine)
    key = secrets.token_hex(16)
    port = free_port()
    env = {**subject.worker_env(), "QUEUE_BACKEND": engine, "API_KEYS": f"bench:{key}", "RATE_LIMIT": "100000000/minute",
           "PORT": str(port), **rest_env}
    web = WorkerProcess([sys.executable, "-m", "gunicorn", "wsgi:app", "--bind",
                         f"127.0.0.1:{port}", "--workers", "2", "--log-level", "warning"],
                        env, ROOT, log_dir / f"http-{engine}-gunicorn.log")
    setting = next(s for s in SETTINGS if s.engine == engine and s.switchyard_default
                   and s.processes == 2)
    worker = WorkerProcess(subject.worker_argv(setting, worker_name("http")), env, ROOT,
                           log_dir / f"http-{engine}-worker.log")
    base = f"http://127.0.0.1:{port}"
    client = _Client(base, key)
    try:
        def up():
            try:
                return client.call("GET", "/healthz")[0] == 200
            except OSError:
                return False
        wait_until(up, 60, "gunicorn to answer /healthz", 0.1, web)
        measure.wait_ready(subject, worker, blocked_pops(engine, setting.processes), DB)

        status, job = client.call("POST", "/v1/jobs", NOOP)
        if status != 202 or "id" not in job:
            return {"error": f"POST /v1/jobs answered {status}: {str(job)[:200]}"}

        latency, floors, waited = [], [], []
        for _ in range(plan.runs):
            samples, floor = [], []
            for _ in range(plan.http_latency_jobs):
                started = time.perf_counter()
                status, job = client.call("POST", "/v1/jobs", NOOP)
                posted = time.perf_counter()
                if status != 202:
                    return {"error": f"POST /v1/jobs answered {status}"}
                while True:
                    asked = time.perf_counter()
                    status, info = client.call("GET", f"/v1/jobs/{job['id']}")
                    if status == 200 and info.get("state") == "succeeded":
                        break
                    if status != 200 or info.get("state") in ("failed", "canceled"):
                        return {"error": f"GET /v1/jobs/{{id}} answered {status}: "
                                         f"{str(info)[:200]}"}
                    if time.perf_counter() - started > 60:
                        return {"error": "a job did not succeed within 60 s"}
                ended = time.perf_counter()
                samples.append(ended - started)
                # What no job, however fast, can save: its POST and the GET that sees it.
                floor.append((posted - started) + (ended - asked))
            latency.append(measure.percentiles(samples))
            floors.append(measure.percentiles(floor)["p50"])
            # One call: POST ?wait= answers once the job has ended (the web process is
            # woken as it ends), so no GET follows it.
            samples = []
            for _ in range(plan.http_latency_jobs):
                started = time.perf_counter()
                status, job = client.call("POST", "/v1/jobs?wait=10", NOOP)
                if status != 200 or job.get("state") != "succeeded":
                    return {"error": f"POST /v1/jobs?wait=10 answered {status}: "
                                     f"{str(job)[:200]}"}
                samples.append(time.perf_counter() - started)
            waited.append(measure.percentiles(samples))

        worker.pause()  # enqueue only: jobs pile up while the web side is timed
        single, batch, statuses = [], [], {}
        batch_body = {"jobs": [NOOP] * plan.batch_size}
        for _ in range(plan.runs):
            rate, seen = _load(base, "/v1/jobs", key, NOOP, plan.http_requests,
                               plan.http_clients, 1)
            single.append(rate)
            rate, seen_batch = _load(base, "/v1/jobs/batch", key, batch_body,
                                     plan.http_batch_requests, plan.http_clients,
                                     plan.batch_size)
            batch.append(rate)
            for counts in (seen, seen_batch):
                for s, n in counts.items():
                    statuses[s] = statuses.get(s, 0) + n
        non_2xx = sum(n for s, n in statuses.items() if not (s.isdigit() and s.startswith("2")))
        return {"single": measure.summary(single), "batch": measure.summary(batch),
                "latency": {p: measure.summary([r[p] for r in latency])
                            for p in ("p50", "p95", "p99")},
                "post_get_p50": measure.summary(floors),
                "latency_wait": {p: measure.summary([r[p] for r in waited])
                                 for p in ("p50", "p95", "p99")},
                "statuses": statuses, "non_2xx": non_2xx, "clients": plan.http_clients,
                "batch_size": plan.batch_size}
    finally:
        worker.stop()
        web.stop()
        subject.adapter.redis.flushdb()
        subject.close()


def bench_http(redis_url: str, plan: Plan, log_dir: Path, rest_env: dict) -> dict:
    why_not = rest_status()
    if why_not:
        return {"status": why_not}
    engines = {}
    for engine in ENGINES:
        try:
            engines[engine] = _engine(engine, redis_url, plan, log_dir, rest_env)
        except (TimeoutError, RuntimeError) as exc:
            engines[engine] = {"error": str(exc).splitlines()[0]}
        print(f"[bench] http {engine}: " + (engines[engine].get("error") or
              f"single {engines[engine]['single']['median']:.0f}/s, batch "
              f"{engines[engine]['batch']['median']:.0f}/s, p50 "
              f"{engines[engine]['latency']['p50']['median']:.2f} ms"), flush=True)
    return {"status": "measured", "engines": engines,
            "note": f"{plan.http_clients} concurrent clients in two processes of "
                    f"`bench/loadgen.py`; batch = {plan.batch_size} jobs per request; the "
                    "worker (Switchyard's default, -c2) is paused while enqueue rates are "
                    "timed and runs for the latency."}
