"""How fast the operator's reads stay on a big ledger: ``python -m bench.ledger_pages``.

Starts a private redis-server on a free port, loads ``--jobs`` jobs (default 1,000,000,
a tenth of them failed) through the ledger's own create, claim and finish scripts
(pipelined, so the records, indexes and counters are exactly what workers write),
spread over the last 24 hours, then times each read ``--repeat`` times and prints
p50/p95 in milliseconds, and Redis's memory. ``--commands`` instead counts the Redis
commands one job costs in the scripts (INFO commandstats around 200 jobs).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import time
import uuid

import redis

from adapters import record
from adapters.ledger import Ledger
from adapters.settings import AdapterSettings
from service.embedded_redis import EmbeddedRedis

TENANTS = [f"tenant{i}" for i in range(10)]
TYPES = ["email.send", "report.generate", "webhook.deliver", "demo.echo", "rare.kind"]
TYPE_WEIGHTS = [40, 5, 40, 14.9, 0.1]
QUEUES = ["default", "mail", "reports"]
ERRORS = ["TimeoutError", "ConnectionError", "ValueError", "WorkerLost"]


def make_record(now: float, tenant: str, job_type: str, queue: str) -> dict:
    rec = record.encode({
        "id": uuid.uuid4().hex, "type": job_type, "tenant": tenant, "backend": "rq",
        "state": "queued", "queue": queue, "priority": "default",
        "payload": {"to": f"user{random.randrange(10_000)}@example.com", "n": random.randrange(100)},
        "attempts": 0, "max_retries": 0, "timeout": 60.0, "created_at": now,
        "token": uuid.uuid4().hex[:12]})
    rec["fingerprint"] = ""
    return rec


def load(ledger: Ledger, n: int, failed: int, batch: int = 500) -> None:
    """``n`` jobs over the last 24 h, ``failed`` of them failed, a few left waiting."""
    start = time.time() - 86400
    step = 86400 / n
    fail_every = n / failed if failed else float("inf")
    argv_base = [ledger.ns]
    done = 0
    t0 = time.time()
    while done < n:
        size = min(batch, n - done)
        now = start + done * step
        recs = [make_record(now, random.choice(TENANTS), random.choices(TYPES, TYPE_WEIGHTS)[0],
                            random.choice(QUEUES)) for _ in range(size)]
        pipe = ledger.r.pipeline(transaction=False)
        ledger._create(args=ledger._create_argv(recs, now, guard=False), client=pipe)
        for i, rec in enumerate(recs):
            k = done + i
            if k >= n - 50:
                continue  # the newest few stay queued
            ran = random.choice((0.004, 0.03, 0.2, 1.5, 7.0))
            t_claim = now + 1
            pipe.evalsha(ledger._claim.sha, 0, *argv_base, repr(t_claim), rec["id"], rec["token"],
                         "bench:1", 30, ledger.s.job_ttl)
            if int(k / fail_every) != int((k + 1) / fail_every):
                err = json.dumps({"type": random.choice(ERRORS), "message": "boom"})
                pipe.evalsha(ledger._finish.sha, 0, *argv_base, repr(t_claim + ran), rec["id"],
                             rec["token"], "failed", ledger.s.job_ttl, err, "")
            else:
                pipe.evalsha(ledger._finish.sha, 0, *argv_base, repr(t_claim + ran), rec["id"],
                             rec["token"], "succeeded", ledger.s.job_ttl, "1", "")
        pipe.execute()
        done += size
        if done % 100_000 < batch:
            print(f"  loaded {done:,} jobs in {time.time() - t0:.0f}s", flush=True)


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def reads(search, repeat: int) -> list[tuple[str, float, float]]:
    from adapters.search import JobFilter

    tenant = TENANTS[0]
    # a cursor half-way down the tenant's index, for a deep page
    mid = search.r.zrevrange(f"{search.ns}t:{tenant}", 10_000, 10_000, withscores=True)
    deep = f"{mid[0][1]!r}|{mid[0][0]}" if mid else None
    cases = [
        ("newest page, all tenants", lambda: search.page(JobFilter(), limit=50)),
        ("newest page, one tenant", lambda: search.page(JobFilter(tenant=tenant), limit=50)),
        ("page 200 deep, one tenant", lambda: search.page(JobFilter(tenant=tenant), limit=50,
                                                          cursor=deep)),
        ("failures page, all tenants", lambda: search.page(JobFilter(state="failed"), limit=50)),
        ("failed, one tenant", lambda: search.page(JobFilter(tenant=tenant, state="failed"),
                                                   limit=50)),
        ("succeeded, one tenant", lambda: search.page(JobFilter(tenant=tenant,
                                                                state="succeeded"), limit=50)),
        ("type=webhook.deliver, one tenant", lambda: search.page(
            JobFilter(tenant=tenant, type="webhook.deliver"), limit=50)),
        ("queue=mail + last hour", lambda: search.page(
            JobFilter(tenant=tenant, queue="mail", created_after=time.time() - 3600), limit=50)),
        ("type=rare.kind (scan cap 5000)", lambda: search.page(
            JobFilter(tenant=tenant, type="rare.kind"), limit=50)),
        ("counts, all tenants", lambda: search.counts()),
        ("counts, one tenant", lambda: search.counts(tenant)),
        ("failures grouped (5000 newest)", lambda: search.failure_groups()),
        ("minutes, last 24 h", lambda: search.minutes(time.time() - 86400)),
    ]
    return [(name, *timed(fn, repeat)) for name, fn in cases]


def commands(ledger: Ledger, n: int = 200) -> collections.Counter:
    """Commands per job (create, claim, finish: succeeded) as INFO commandstats counts them."""
    def stats():
        return {k[len("cmdstat_"):]: v["calls"]
                for k, v in ledger.r.info("commandstats").items()}
    recs = [make_record(time.time(), "acme", "demo.echo", "default") for _ in range(n)]
    before = stats()
    for rec in recs:
        now = time.time()
        ledger.create_many([rec], now)
        ledger.claim(rec["id"], rec["token"], "bench:1", now)
        ledger.finish(rec["id"], rec["token"], "succeeded", "1", now=now)
    after = stats()
    out = collections.Counter({k: (after.get(k, 0) - before.get(k, 0)) / n for k in after})
    for own in ("info",):
        out.pop(own, None)
    return +out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=None, help="default: a tenth of --jobs")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--commands", action="store_true",
                        help="count the Redis commands per job instead")
    args = parser.parse_args(argv)
    server = EmbeddedRedis().start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.config_set("save", "")
        ledger = Ledger(client, AdapterSettings(namespace="sy:"))
        if args.commands:
            per_job = commands(ledger)
            print(f"Redis commands per job (create, claim, finish), {sum(per_job.values()):.1f} in all:")
            for name, count in sorted(per_job.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<16} {count:6.2f}")
            return
        failed = args.jobs // 10 if args.failed is None else args.failed
        print(f"loading {args.jobs:,} jobs ({failed:,} failed) into {server.url}", flush=True)
        t = time.time()
        ledger.load_create_script()
        ledger._claim.sha = client.script_load(ledger._claim.script)
        ledger._finish.sha = client.script_load(ledger._finish.script)
        load(ledger, args.jobs, failed)
        memory = client.info("memory")["used_memory"]
        print(f"loaded in {time.time() - t:.0f}s; Redis used_memory {memory / 2**20:.0f} MiB "
              f"({memory / args.jobs:.0f} B/job)")
        from adapters.search import Search  # not before: --commands also runs on older checkouts

        search = Search(ledger)
        print(f"counts: {search.counts()}")
        print(f"\n{'read':<34}{'p50 ms':>9}{'p95 ms':>9}   ({args.repeat} runs each)")
        for name, p50, p95 in reads(search, args.repeat):
            print(f"{name:<34}{p50:>9.1f}{p95:>9.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
