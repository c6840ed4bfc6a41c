"""A big ledger, fast, written by the ledger's own scripts.

Every record is built by ``adapters.validation.build_record`` (what ``POST /v1/jobs``
builds) and written by the create script; every claim and finish is the claim and
finish scripts' text, verbatim (``adapters.scripts.source``), each wrapped as a Lua
function so that one EVALSHA claims and finishes a whole chunk: what Redis holds after
the load (records, histories, every index, per-minute counters, stats) is what workers
would have written, without a round trip and a Python call per script run.

Two processes load halves of the time range at once, so Redis is never left waiting
on Python. Creation times spread over the last ``hours``; the newest few jobs are left
queued. Jobs are not published to the engine (they are claimed straight away, as a
worker would; no delivery is left over).
"""

from __future__ import annotations

import multiprocessing
import random
import time

import redis

from adapters import record, scripts
from adapters.options import JobOptions
from adapters.runner import _error
from adapters.settings import AdapterSettings
from adapters.validation import build_record

__all__ = ["TENANTS", "TYPES", "QUEUES", "ERRORS", "load", "loader_script"]

TENANTS = [f"tenant{i}" for i in range(10)]
TYPES = ["bench.email", "bench.report", "bench.webhook", "bench.resize", "bench.rare"]
TYPE_WEIGHTS = [40, 5, 40, 14.9, 0.1]
"""``bench.rare`` is one job in a thousand: the worst case of a type filter's scan."""
QUEUES = ["mail", "reports", "webhooks"]
"""Not ``default``: the worker a bench starts for its bulk operation listens there and
nowhere else, so the retries it makes stay queued."""
ERRORS = [TimeoutError("upstream timed out"), ConnectionError("connection reset"),
          ValueError("bad address"), KeyError("template")]
_RUNS = (0.004, 0.03, 0.2, 1.5, 7.0)
CHUNK = 100
"""Jobs per EVALSHA: redis-py packs a command's arguments in time that grows with the
square of their number, so commands stay small and a round trip carries several."""
ROUND_TRIP = 10


def _wrap(name: str) -> str:
    return f"local function {name}_script(ARGV)\n{scripts.source(name)}\nend\n"


def loader_script() -> str:
    """The claim and finish scripts as functions, and a loop running both per job.

    ARGV: ns, lease_seconds, job_ttl, worker, then per job: id, token, claimed at,
    finished at, outcome, result or error JSON. Returns the number of jobs; an error
    if a claim or finish refused one (which a fresh record never is)."""
    return _wrap("claim") + _wrap("finish") + """
local n = 0
for i = 5, #ARGV, 6 do
  local c = claim_script({ARGV[1], ARGV[i + 2], ARGV[i], ARGV[i + 1], ARGV[4], ARGV[2], ARGV[3]})
  if c[1] ~= 'run' then return redis.error_reply('claim refused ' .. ARGV[i] .. ': ' .. tostring(c[2])) end
  local f = finish_script({ARGV[1], ARGV[i + 3], ARGV[i], ARGV[i + 1], ARGV[i + 4], ARGV[3], ARGV[i + 5], ''})
  if f ~= 1 then return redis.error_reply('finish refused ' .. ARGV[i]) end
  n = n + 1
end
return n
"""


def _errors() -> list[str]:
    out = []
    for exc in ERRORS:
        try:
            raise exc
        except Exception as raised:  # a real traceback, as a failed job's
            out.append(_error(raised))
    return out


def _part(url: str, namespace: str, first: int, last: int, n: int, failed: int,
          hours: float, start: float, seed: int) -> int:
    """Jobs ``first`` to ``last - 1`` of ``n``; ``failed`` of the ``n`` fail, evenly spread."""
    from adapters.client import Switchyard

    import bench.jobs  # noqa: F401 - the job types build_record checks

    rng = random.Random(seed)
    settings = AdapterSettings(redis_url=url, namespace=namespace)
    client = Switchyard("rq", settings)
    ledger = client.ledger
    r = ledger.r
    create = r.script_load(scripts.source("create"))
    run = r.script_load(loader_script())
    errors = _errors()
    step = hours * 3600 / n
    fail_every = n / failed if failed else float("inf")
    options = {q: JobOptions(queue=q) for q in QUEUES}
    done = first
    while done < last:
        pipe = r.pipeline(transaction=False)
        for _ in range(ROUND_TRIP):
            if done >= last:
                break
            size = min(CHUNK, last - done)
            now = start + done * step
            recs = [build_record(client, rng.choices(TYPES, TYPE_WEIGHTS)[0],
                                 {"to": f"user{rng.randrange(10_000)}@example.com",
                                  "n": rng.randrange(100)},
                                 options[rng.choice(QUEUES)], rng.choice(TENANTS), now)
                    for _ in range(size)]
            argv = [ledger.ns, settings.lease_seconds, settings.job_ttl, "bench-loader"]
            for i, rec in enumerate(recs):
                k = done + i
                if k >= n - 50:
                    continue  # the newest few stay queued
                claimed = now + 1
                finished = repr(claimed + rng.choice(_RUNS))
                if int(k / fail_every) != int((k + 1) / fail_every):
                    argv += [rec["id"], rec["token"], repr(claimed), finished, "failed",
                             rng.choice(errors)]
                else:
                    argv += [rec["id"], rec["token"], repr(claimed), finished, "succeeded",
                             "null"]
            pipe.evalsha(create, 0, *ledger._create_argv(recs, now, guard=False))
            if len(argv) > 4:
                pipe.evalsha(run, 0, *argv)
            done += size
        pipe.execute()
    client.close()
    return last - first


def load(url: str, n: int, failed: int, *, namespace: str = "sy:", hours: float = 24.0,
         processes: int = 2, progress: bool = True) -> float:
    """Load ``n`` jobs (``failed`` of them failed) into the ledger at ``url``; seconds taken."""
    started = time.time()
    start = started - hours * 3600
    bounds = [n * i // processes for i in range(processes + 1)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes) as pool:
        results = [pool.apply_async(_part, (url, namespace, lo, hi, n, failed, hours, start, i))
                   for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
        r = redis.Redis.from_url(url)
        while not all(res.ready() for res in results):
            time.sleep(5)
            if progress:
                jobs = r.zcard(f"{namespace}all")
                print(f"  loaded {jobs:,} jobs in {time.time() - started:.0f}s", flush=True)
        for res in results:
            res.get()
    return time.time() - started
