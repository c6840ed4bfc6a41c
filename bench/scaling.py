"""``python -m bench.scaling [--quick]``: how far one Redis carries Switchyard; writes SCALING.md.

Per engine, with the worker as the Procfile starts it (``flask --app wsgi worker``'s
defaults: one process, ``-c 1``), on a host of its own (tests/netns.py) against a
private Redis on another host:

1. jobs/s of that one worker process on no-op and on 50 ms jobs
   (:func:`bench.measure.throughput_run`, as in BENCHMARKS.md);
2. Redis commands per job, total and inside scripts (:func:`bench.measure.commands_run`);
3. the same throughput with a second worker on a second host, same Redis: the gain;
4. the ledger on a local Redis Cluster of three primaries (:mod:`bench.scaling_cluster`):
   one worker's jobs/s and what each primary carries of a job.

Then Redis's own ceiling on this machine (``redis-benchmark``: client commands per
second, and commands per second inside an EVALSHA), and from it an estimate of the
jobs/s one primary can carry. Without root or ``ip`` everything runs on loopback and
the second-host figure is left out with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench import measure, scaling_cluster, scaling_report
from bench.meta import machine
from bench.plan import FULL, Plan
from bench.redisstats import CommandCounter
from bench.subjects import (ENGINES, ROOT, SLEEP_SECONDS, Switchyard, WorkerSetting, blocked_pops,
                            readable_argv)
from bench.workers import WorkerProcess
from service.embedded_redis import EmbeddedRedis, find_redis_server
from tests.harness import wait_until
from tests.netns import Network, unavailable

QUICK = dataclasses.replace(FULL, name="quick", runs=1, warmup_jobs=20, throughput_seconds=1.0,
                            min_jobs=20, max_jobs=2000, command_jobs_max=100,
                            command_seconds=0.5, idle_seconds=1.0)
REDIS_PORT = 6379  # on the Redis host's own port space (on loopback: a free port)
SCRIPT_CALLS = 10
CEILING_SCRIPT = "".join(f"redis.call('HINCRBY', KEYS[1], 'f{i}', 1) " for i in range(SCRIPT_CALLS))


def _say(message: str) -> None:
    print(f"[scaling {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Workers:
    """Several workers paused and resumed as one, for :func:`bench.measure.throughput_run`."""

    def __init__(self, workers: list[WorkerProcess]):
        self.workers = workers

    def pause(self):
        for w in self.workers:
            w.pause()

    def resume(self):
        for w in self.workers:
            w.resume()

    def check(self):
        for w in self.workers:
            w.check()

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(w.log_tail(chars // len(self.workers)) for w in self.workers)


@contextlib.contextmanager
def place():
    """(redis host, port, [worker hosts' argv prefixers], where) -- namespaces if possible."""
    why = unavailable()
    if why is None:
        with Network(("redis", "worker1", "worker2")) as net:
            log = Path(tempfile.mkdtemp(prefix="switchyard-scaling-redis-"))
            server = subprocess.Popen(net["redis"].argv([
                find_redis_server(), "--bind", net["redis"].address, "--port", str(REDIS_PORT),
                "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(log),
                "--maxmemory-policy", "noeviction"]), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            client = redis.Redis(net["redis"].address, REDIS_PORT, socket_timeout=1)
            try:
                wait_until(lambda: _pings(client), 15, 0.05, "the Redis host")
                yield (net["redis"].address, REDIS_PORT, [net["worker1"].argv, net["worker2"].argv],
                       {"hosts": True, "why": None})
            finally:
                client.close()
                server.kill()
                server.wait(10)
                shutil.rmtree(log, ignore_errors=True)
        return
    with EmbeddedRedis() as server:
        yield "127.0.0.1", server.port, [lambda argv: argv], {"hosts": False, "why": why}


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def bench_engine(engine: str, host: str, port: int, hosts: list, plan: Plan, log_dir: Path) -> dict:
    setting = WorkerSetting(engine, "default", "the Procfile's worker (defaults: -c 1)", 1, (), ())
    subject = Switchyard(f"redis://{host}:{port}/0", engine)
    blocked = blocked_pops(engine, 1)
    workers: list[WorkerProcess] = []
    row: dict = {"engine": engine, "argv": None}

    def start(on) -> WorkerProcess:
        argv = subject.worker_argv(setting, f"scale{len(workers)}")
        row["argv"] = readable_argv(argv)
        worker = WorkerProcess(on(argv), subject.worker_env(), ROOT,
                               log_dir / f"{engine}-{len(workers)}.log")
        workers.append(worker)
        # the others run meanwhile: a paused one may hold a popped job in its socket
        for other in workers[:-1]:
            other.resume()
        measure.wait_ready(subject, worker, blocked * len(workers), 0)
        wait_until(lambda: len(subject.adapter.ledger.workers(ttl=30)) >= len(workers), 60, 0.05,
                   f"{len(workers)} live workers")
        for each in workers:
            each.pause()
        return worker

    def rates(group, kind: str, n: int) -> dict:
        return {**measure.summary([measure.throughput_run(subject, group, kind, n)
                                   for _ in range(plan.runs)]), "jobs": n}

    try:
        one = start(hosts[0])
        fastest = measure.throughput_run(subject, one, "noop", plan.warmup_jobs)
        size = {"noop": _clamp(fastest * plan.throughput_seconds, plan.min_jobs, plan.max_jobs),
                "sleep": _clamp(plan.throughput_seconds / SLEEP_SECONDS, plan.min_jobs,
                                plan.max_jobs)}
        row["one"] = {kind: rates(one, kind, size[kind]) for kind in ("noop", "sleep")}
        _say(f"{engine}: one worker {row['one']['noop']['median']:.1f} no-op/s, "
             f"{row['one']['sleep']['median']:.1f} 50ms-jobs/s")
        counter = CommandCounter(host, port)
        try:
            runs = [measure.commands_run(subject, one, counter,
                                         _clamp(fastest * plan.command_seconds, plan.min_jobs,
                                                plan.command_jobs_max), plan.idle_seconds)
                    for _ in range(plan.runs)]
        finally:
            counter.close()
        row["commands"] = {key: measure.summary([r[key] for r in runs])
                           for key in ("total", "client", "in_scripts", "idle_total_per_s")}
        row["commands"]["by_command"] = runs[len(runs) // 2]["by_command"]
        _say(f"{engine}: {row['commands']['total']['median']:.1f} commands/job "
             f"({row['commands']['in_scripts']['median']:.1f} inside scripts)")
        if len(hosts) > 1:
            start(hosts[1])
            pair = Workers(workers)
            row["two"] = {kind: rates(pair, kind, 2 * size[kind]) for kind in ("noop", "sleep")}
            _say(f"{engine}: two hosts {row['two']['noop']['median']:.1f} no-op/s, "
                 f"{row['two']['sleep']['median']:.1f} 50ms-jobs/s")
    finally:
        for worker in workers:
            worker.stop()
        subject.close()
        with contextlib.closing(redis.Redis(host, port)) as flush:
            flush.flushall()
    return row


def _clamp(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, round(value))))


def redis_ceiling(host: str, port: int, requests: int) -> dict:
    """Requests per second ``redis-benchmark`` gets from the server (50 clients, no
    pipelining): plain commands, and an EVALSHA that runs SCRIPT_CALLS commands."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"why": "redis-benchmark is not on PATH"}
    base = [binary, "-h", host, "-p", str(port), "-c", "50", "-n", str(requests), "--csv"]
    out = subprocess.run([*base, "-t", "set,get,lpush,rpop,hset"], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    plain = {m[0].split()[0].lower(): float(m[1])
             for m in re.findall(r'^"([^"]+)","([\d.]+)"', out, re.M)}
    with contextlib.closing(redis.Redis(host, port)) as client:
        sha = client.script_load(CEILING_SCRIPT)
        out = subprocess.run([*base, "EVALSHA", sha, "1", "scaling:ceiling"], capture_output=True,
                             text=True, timeout=300, check=True).stdout
        client.flushall()
    evalsha = float(re.findall(r'^"[^"]+","([\d.]+)"', out, re.M)[0])
    return {"plain": plain, "client_per_s": statistics.median(plain.values()),
            "evalsha_per_s": evalsha, "in_script_per_s": evalsha * SCRIPT_CALLS,
            "requests": requests, "version": redis_benchmark_version(binary)}


def redis_benchmark_version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each figure (< 3 min)")
    parser.add_argument("--out", type=Path, default=ROOT / "SCALING.md")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma list (default: all)")
    parser.add_argument("--cluster-engine", default="celery", choices=("celery", "dramatiq", "none"),
                        help="the engine of the Redis Cluster figures (none: leave them out)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    log_dir = Path(tempfile.mkdtemp(prefix="switchyard-scaling-"))
    started = time.monotonic()
    results: dict = {"plan": plan.name, "runs": plan.runs}
    with place() as (host, port, hosts, where):
        with contextlib.closing(redis.Redis(host, port)) as client:
            results["machine"] = machine(client.info("server")["redis_version"])
        results["where"] = {**where, "redis": f"{host}:{port}"}
        _say(f"Redis at {host}:{port}; " + ("workers on hosts of their own" if where["hosts"]
                                             else f"loopback only ({where['why']})")
             + f"; logs in {log_dir}")
        results["engines"] = [bench_engine(e, host, port, hosts, plan, log_dir)
                              for e in args.engines.split(",") if e]
        results["ceiling"] = redis_ceiling(host, port, 20000 if args.quick else 100000)
        _say(f"Redis ceiling: {results['ceiling'].get('client_per_s', 0):.0f} commands/s, "
             f"{results['ceiling'].get('in_script_per_s', 0):.0f} in scripts/s")
    if args.cluster_engine != "none":
        results["cluster"] = scaling_cluster.bench_cluster(args.cluster_engine, plan, log_dir, _say)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"]["seconds"] = round(time.monotonic() - started, 1)
    command = "make scaling" + (" SCALING_ARGS=--quick" if args.quick else "")
    args.out.write_text(scaling_report.markdown(results, command))
    (log_dir / "scaling.json").write_text(json.dumps(results, indent=1, default=str))
    _say(f"wrote {args.out} in {results['machine']['seconds']:.0f} s (figures: {log_dir}/scaling.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
