"""The operator's page on a big ledger, through gunicorn: ``make bench-dashboard``.

    python -m bench.dashboard --jobs 1000000 --failed 100000

1. A private redis-server (a free port, no persistence) is filled by
   :mod:`bench.ledger_load`: ``--jobs`` jobs over the last 24 h, 10 tenants, 5 job
   types, 3 queues, ``--failed`` of them failed with 4 error types, written by the
   ledger's own scripts.
2. The Procfile's ``web`` command (gunicorn, ``WEB_CONCURRENCY`` workers) serves it; a
   session signs in at ``/login`` (the form's CSRF token, the cookie kept) with an
   operator's key and with a tenant's key, and times each page ``--requests`` times
   one after another, then again from ``--clients`` clients at once: p50/p95/max in ms.
3. ``POST /v1/jobs/batch`` (in-process, as :mod:`bench.bulk_retry` measures it, on
   another database of the same server): seconds and Redis commands per job.
4. A bulk retry of every failed job, asked for through the page's own bulk form and run
   by a real worker of the default engine (RQ, ``python -m adapters.worker -c 1``):
   seconds to the operation's end and Redis commands per retried job (``INFO
   commandstats`` deltas; they include the worker's upkeep and this script's polling).

Writes its section of BENCHMARKS.md (``--out``; see :mod:`bench.sections`) and prints
the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests

from bench import sections
from bench.bulk_retry import app_for, batch_enqueue, per_job, tally
from bench.ledger_load import TENANTS, load
from bench.meta import machine
from bench.workers import WorkerProcess, wait_until
from service.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
OPERATOR_KEY = "bench-operator-0123456789abcdef"
TENANT_KEY = "bench-tenant-0123456789abcdef"
TARGET_MS = 150.0


def web_argv(port: int) -> list[str]:
    """The Procfile's ``web`` command, on a loopback port."""
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    words = shlex.split(line.split(":", 1)[1])
    words = [w.replace("0.0.0.0:$PORT", f"127.0.0.1:{port}") for w in words]
    assert words[0] == "gunicorn", words
    argv = [sys.executable, "-m", "gunicorn", *words[1:], "--log-level", "warning"]
    from gunicorn.config import KNOWN_SETTINGS

    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        argv.append("--no-control-socket")  # several gunicorns may run on this machine
    return argv


def sign_in(base: str, key: str) -> requests.Session:
    """A session signed in through the form, as a browser does."""
    s = requests.Session()
    form = s.get(f"{base}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    answer = s.post(f"{base}/login", data={"api_key": key, "next": "/",
                                          **({"csrf_token": token.group(1)} if token else {})},
                    allow_redirects=False, timeout=30)
    assert answer.status_code == 302, (answer.status_code, answer.text[:300])
    return s


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"n": len(ms), "p50": round(statistics.median(ms), 1),
            "p95": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1), "max": round(ms[-1], 1)}


def _get(s: requests.Session, url: str) -> float:
    started = time.perf_counter()
    answer = s.get(url, allow_redirects=False, timeout=60)
    took = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
    return took


def time_page(sessions: list[requests.Session], url: str, requests_: int) -> dict:
    """``requests_`` GETs one after another on the first session; then as many spread
    over every session at once."""
    for _ in range(3):
        _get(sessions[0], url)  # warm: templates compiled, connections open
    out = {"sequential": _stats([_get(sessions[0], url) for _ in range(requests_)])}
    if len(sessions) > 1:
        samples: list[float] = []

        def client(s):
            for _ in range(max(1, requests_ // len(sessions))):
                samples.append(_get(s, url))
        threads = [threading.Thread(target=client, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["concurrent"] = _stats(samples)
    return out


def pages(r: redis.Redis, tenant: str | None) -> dict[str, str]:
    """The pages timed for a key of ``tenant`` (``None``: the operator's)."""
    index = "sy:as:failed" if tenant is None else f"sy:ts:{tenant}:failed"
    failed_id = r.zrevrange(index, -1, -1)[0]  # the oldest failed job
    return {
        "jobs page `/`": "/",
        "failed of one type `/?state=failed&type=bench.report`":
            "/?state=failed&type=bench.report",
        "one queue `/?queue=reports`": "/?queue=reports",
        "a rare type `/?type=bench.rare` (1 job in 1,000)": "/?type=bench.rare",
        "failures page `/ui/failures`": "/ui/failures",
        "a job's page `/ui/jobs/<id>`": f"/ui/jobs/{failed_id}",
    }


def bulk_retry(base: str, r: redis.Redis, url: str, failed: int, log_dir: Path,
               env: dict) -> dict:
    """Every failed job retried by one operation, asked for through the page's form."""
    from adapters.client import Switchyard
    from adapters.settings import AdapterSettings

    worker = WorkerProcess([sys.executable, "-m", "adapters.worker", "-Q", "default", "-c", "1"],
                           env, ROOT, log_dir / "worker.log")
    client = Switchyard("rq", AdapterSettings(redis_url=url))
    try:
        client.wait_for_workers(1, timeout=60, queue="default")
        s = sign_in(base, OPERATOR_KEY)
        form = s.get(f"{base}/ui/bulk", params={"action": "retry", "state": "failed"},
                     timeout=60)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        before, started = tally(r), time.perf_counter()
        answer = s.post(f"{base}/ui/bulk", data={"action": "retry", "state": "failed",
                                                "csrf_token": token},
                        allow_redirects=False, timeout=60)
        assert answer.status_code == 302, (answer.status_code, answer.text[:300])
        op_id = answer.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        op = client.wait(op_id, timeout=3000)
        seconds = time.perf_counter() - started
        spent = per_job(tally(r), before, failed)
    finally:
        worker.stop()
        client.close()
    assert op.result and op.result["done"] == failed, (op.state, op.result, op.error)
    return {"seconds": round(seconds, 1), "jobs_per_second": round(failed / seconds),
            "ms_per_job": round(seconds * 1000 / failed, 3), **spent,
            "result": {k: op.result[k] for k in ("matched", "done", "skipped", "errors")}}


def batch_cost(url: str, jobs: int) -> dict:
    """``POST /v1/jobs/batch`` per job, on database 1 of the same server."""
    url1 = url.rsplit("/", 1)[0] + "/1"
    r = redis.Redis.from_url(url1)
    app = app_for(url1)
    before, started = tally(r), time.perf_counter()
    batch_enqueue(app.test_client(), jobs)
    seconds = time.perf_counter() - started
    out = {"jobs": jobs, "seconds": round(seconds, 1), "jobs_per_second": round(jobs / seconds),
           "ms_per_job": round(seconds * 1000 / jobs, 3), **per_job(tally(r), before, jobs)}
    r.flushdb()
    app.extensions["switchyard"].adapter.close()
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "## The operator's page on a big ledger",
        "",
        f"Run of {m['date']} on commit `{m['commit']}`: `{res['command']}` "
        f"({res['seconds']:.0f} s in all). Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB; Python {m['python']}; redis-server {m['redis_server']} "
        f"(private, loopback, no persistence); gunicorn {m['packages'].get('gunicorn')}. "
        f"Load average (1, 5, 15 min) before: {', '.join(map(str, m['load_before']))}; after: "
        f"{', '.join(map(str, res['load_after']))}: other work shares these two cores, so "
        "the figures move from run to run.",
        "",
        f"**Ledger:** {res['jobs']:,} jobs ({res['failed']:,} failed, 4 error types), 10 "
        "tenants, 5 job types, 3 queues, created over the last 24 h, loaded by the ledger's "
        f"own create, claim and finish scripts (`bench/ledger_load.py`) in {res['load_seconds']:.0f} s; "
        f"Redis `used_memory` {res['memory_mib']:,.0f} MiB ({res['memory_per_job']:.0f} B/job).",
        "",
        f"**Pages** through the Procfile's web command (gunicorn, {res['web_workers']} sync "
        f"workers), signed in at `/login`; {res['requests']} requests one after another, then "
        f"{res['requests']} spread over {res['clients']} clients at once. Milliseconds from "
        f"the request to the whole page; target p95 < {TARGET_MS:.0f} ms.",
        "",
        "| key | page | p50 | p95 | max | p95, "
        f"{res['clients']} clients | max, {res['clients']} clients | p95 < {TARGET_MS:.0f} ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for who, rows in res["pages"].items():
        for page, t in rows.items():
            s, c = t["sequential"], t.get("concurrent", {})
            met = "met" if s["p95"] < TARGET_MS else "**missed**"
            lines.append(f"| {who} | {page} | {s['p50']} | {s['p95']} | {s['max']} | "
                         f"{c.get('p95', '—')} | {c.get('max', '—')} | {met} |")
    b, e = res["bulk_retry"], res["batch_enqueue"]
    lines += [
        "",
        f"**Bulk retry** of the {res['failed_now']:,} failed jobs: asked for through the page's "
        "bulk form (`POST /ui/bulk`, action retry, state failed), run as one `switchyard.bulk` "
        "job by a real RQ worker (`python -m adapters.worker -Q default -c 1`); the retries "
        "stay queued (no worker listens to their queues). Against it, `POST /v1/jobs/batch` "
        f"(500 jobs a request, in-process as `bench/bulk_retry.py` does it) of {e['jobs']:,} "
        "jobs in the same run. Commands are `INFO commandstats` deltas over the jobs, so they "
        "include the commands the scripts ran inside Redis (and, for the bulk retry, the "
        "worker's upkeep and the reads polling the operation).",
        "",
        "| | jobs | seconds | jobs/s | ms per job | Redis commands per job |",
        "|---|---|---|---|---|---|",
        f"| bulk retry | {b['result']['done']:,} | {b['seconds']} | {b['jobs_per_second']:,} | "
        f"{b['ms_per_job']} | {b['commands_per_job']} |",
        f"| `POST /v1/jobs/batch` | {e['jobs']:,} | {e['seconds']} | {e['jobs_per_second']:,} | "
        f"{e['ms_per_job']} | {e['commands_per_job']} |",
        "",
        f"Bulk retry per job against the API's enqueue: time {b['ms_per_job'] / e['ms_per_job']:.2f}x, "
        f"commands {b['commands_per_job'] / e['commands_per_job']:.2f}x "
        f"({'under' if b['ms_per_job'] <= e['ms_per_job'] and b['commands_per_job'] <= e['commands_per_job'] else '**not under**'} "
        "the enqueue cost). Commands per retried job: "
        + ", ".join(f"{k} {v:g}" for k, v in b["by_command"].items()) + "; per enqueued job: "
        + ", ".join(f"{k} {v:g}" for k, v in e["by_command"].items()) + ".",
    ]
    if res.get("notes"):
        lines += [""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def _shown(argv: list[str]) -> list[str]:
    """The command line without ``--out`` and ``--note`` (and their values)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--out", "--note"):
            skip = True
        elif not a.startswith(("--out=", "--note=")):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=None, help="default: a tenth of --jobs")
    parser.add_argument("--requests", type=int, default=100, help="per page and key")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--web-workers", type=int, default=2, help="WEB_CONCURRENCY")
    parser.add_argument("--enqueue", type=int, default=50_000,
                        help="jobs of the POST /v1/jobs/batch comparison")
    parser.add_argument("--no-bulk", action="store_true", help="pages only")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md",
                        help="the Markdown file whose section is written ('-': none)")
    parser.add_argument("--note", action="append", default=[], help="a line for the notes")
    args = parser.parse_args(argv)
    failed = args.jobs // 10 if args.failed is None else args.failed
    given = argv if argv is not None else sys.argv[1:]
    res: dict = {"jobs": args.jobs, "failed": failed, "requests": args.requests,
                 "clients": args.clients, "web_workers": args.web_workers,
                 "command": "python -m bench.dashboard " + " ".join(_shown(given)),
                 "notes": args.note}
    started = time.time()
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory() as tmp:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        r.config_set("save", "")
        res["machine"] = machine(r.info("server")["redis_version"])
        print(f"[dashboard] loading {args.jobs:,} jobs ({failed:,} failed)", flush=True)
        res["load_seconds"] = round(load(server.url, args.jobs, failed), 1)
        memory = r.info("memory")["used_memory"]
        res["memory_mib"], res["memory_per_job"] = memory / 2**20, memory / args.jobs
        print(f"[dashboard] loaded in {res['load_seconds']:.0f}s, {res['memory_mib']:.0f} MiB",
              flush=True)

        port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SWITCHYARD_", "QUEUE_", "API_KEYS", "RATE_LIMIT"))}
        env.update({"REDIS_URL": server.url, "QUEUE_BACKEND": "rq", "PORT": str(port),
                    "API_KEYS": f"*:{OPERATOR_KEY},{TENANTS[0]}:{TENANT_KEY}",
                    "JOB_MODULES": "bench.jobs", "RATE_LIMIT": "100000000/minute",
                    "WEB_CONCURRENCY": str(args.web_workers), "PYTHONPATH": str(ROOT)})
        web = WorkerProcess(web_argv(port), env, ROOT, Path(tmp) / "gunicorn.log")
        base = f"http://127.0.0.1:{port}"
        try:
            def up():
                try:
                    return requests.get(f"{base}/healthz", timeout=2).status_code == 200
                except requests.RequestException:
                    return False
            wait_until(up, 60, "gunicorn to answer /healthz", 0.1, web)
            res["pages"] = {}
            for who, key, tenant in (("operator", OPERATOR_KEY, None),
                                     (f"tenant ({TENANTS[0]})", TENANT_KEY, TENANTS[0])):
                sessions = [sign_in(base, key) for _ in range(args.clients)]
                rows = res["pages"][who] = {}
                for name, path in pages(r, tenant).items():
                    rows[name] = time_page(sessions, base + path, args.requests)
                    s = rows[name]["sequential"]
                    print(f"[dashboard] {who:<16} {name:<58} p50 {s['p50']:>6} p95 "
                          f"{s['p95']:>6} max {s['max']:>6}  concurrent p95 "
                          f"{rows[name].get('concurrent', {}).get('p95')}", flush=True)
            if not args.no_bulk:
                res["batch_enqueue"] = batch_cost(server.url, args.enqueue)
                print(f"[dashboard] batch enqueue: {res['batch_enqueue']}", flush=True)
                # the newest few jobs were left queued, so a few of the failed ones are not
                res["failed_now"] = r.zcard("sy:as:failed")
                res["bulk_retry"] = bulk_retry(base, r, server.url, res["failed_now"],
                                               Path(tmp), env)
                print(f"[dashboard] bulk retry: {res['bulk_retry']}", flush=True)
        finally:
            web.stop()
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    res["seconds"] = time.time() - started
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    if str(args.out) != "-" and not args.no_bulk:
        sections.replace(args.out, "dashboard", markdown(res))
        print(f"[dashboard] wrote its section of {args.out}")
    return res


if __name__ == "__main__":
    main()
