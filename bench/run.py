"""Runs every measurement on one private redis-server and collects the figures."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path

import redis

from bench import measure
from bench.plan import Plan
from bench.redisstats import CommandCounter
from bench.subjects import (ROOT, readable_argv, SETTINGS, SLEEP_SECONDS, WorkerSetting, blocked_pops, make_subject,
                            worker_name)
from bench.workers import WorkerProcess

__all__ = ["bench_workers", "bench_enqueue"]

# Each subject gets a database of its own on the one server, so two workers can stay up
# side by side (one paused) and runs of the raw engine and Switchyard can alternate.
DATABASES = {"raw": 1, "switchyard": 2, "raw-bare": 3}


def _url(base_url: str, db: int) -> str:
    return base_url.rsplit("/", 1)[0] + f"/{db}"


def _clamp(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, round(value))))


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _flavours(setting: WorkerSetting) -> list[str]:
    flavours = ["raw", "switchyard"]
    if setting.engine == "celery" and setting.switchyard_default:
        flavours.append("raw-bare")  # Celery without a result backend: commands only
    return flavours


def bench_setting(setting: WorkerSetting, redis_url: str, port: int, plan: Plan,
                  log_dir: Path) -> list[dict]:
    """Every worker figure of one worker setting, raw and Switchyard alternating."""
    flavours = _flavours(setting)
    subjects = {f: make_subject(f, setting.engine, _url(redis_url, DATABASES[f]))
                for f in flavours}
    workers: dict[str, WorkerProcess] = {}
    rows = {f: {"engine": setting.engine, "setting": setting.key, "label": setting.label,
                "flavour": f, "processes": setting.processes,
                "switchyard_default": setting.switchyard_default and f == "switchyard",
                "argv": None} for f in flavours}
    blocked = blocked_pops(setting.engine, setting.processes)
    try:
        for f, subject in subjects.items():
            argv = subject.worker_argv(setting, worker_name(f.replace("-", "")))
            rows[f]["argv"] = readable_argv(argv)
            workers[f] = WorkerProcess(argv, subject.worker_env(), ROOT,
                                       log_dir / f"{setting.engine}-{setting.key}-{f}.log")
            measure.wait_ready(subject, workers[f], blocked, DATABASES[f])
            workers[f].pause()
        timed = [f for f in flavours if f != "raw-bare"]

        warm = {f: measure.throughput_run(subjects[f], workers[f], "noop", plan.warmup_jobs)
                for f in flavours}
        fastest = max(warm.values())
        sizes = {
            "noop": _clamp(fastest * plan.throughput_seconds, plan.min_jobs, plan.max_jobs),
            "sleep": _clamp(plan.throughput_seconds * setting.processes / SLEEP_SECONDS,
                            plan.min_jobs, plan.max_jobs),
        }
        command_jobs = _clamp(fastest * plan.command_seconds, plan.min_jobs,
                              plan.command_jobs_max)

        def alternate(run: int, among: list[str]) -> list[str]:
            return among if run % 2 == 0 else list(reversed(among))

        latency = {f: [] for f in timed}
        for run in range(plan.runs):
            for f in alternate(run, timed):
                samples = measure.latency_run(subjects[f], workers[f], plan.latency_jobs)
                latency[f].append(measure.percentiles(samples))
        for f in timed:
            rows[f]["latency"] = {p: measure.summary([r[p] for r in latency[f]])
                                  for p in ("p50", "p95", "p99")}
            rows[f]["latency"]["jobs_per_run"] = plan.latency_jobs
        _say(f"{setting.engine} {setting.key}: latency p50 " + ", ".join(
            f"{f} {rows[f]['latency']['p50']['median']:.2f} ms" for f in timed))

        for kind in ("noop", "sleep"):
            rates = {f: [] for f in timed}
            for run in range(plan.runs):
                for f in alternate(run, timed):
                    rates[f].append(measure.throughput_run(subjects[f], workers[f], kind,
                                                           sizes[kind]))
            for f in timed:
                rows[f][f"throughput_{kind}"] = {**measure.summary(rates[f]), "jobs": sizes[kind]}
            _say(f"{setting.engine} {setting.key}: {kind} throughput " + ", ".join(
                f"{f} {rows[f][f'throughput_{kind}']['median']:.1f}/s" for f in timed))

        counter = CommandCounter("127.0.0.1", port)
        try:
            counts = {f: [] for f in flavours}
            for run in range(plan.runs):
                for f in alternate(run, flavours):
                    counts[f].append(measure.commands_run(subjects[f], workers[f], counter,
                                                          command_jobs, plan.idle_seconds))
        finally:
            counter.close()
        for f in flavours:
            runs = counts[f]
            rows[f]["commands"] = {
                key: measure.summary([r[key] for r in runs])
                for key in ("total", "client", "in_scripts", "enqueue_total", "enqueue_client",
                            "worker_total", "worker_client", "idle_total_per_s",
                            "idle_client_per_s")}
            rows[f]["commands"]["jobs_per_run"] = command_jobs
            rows[f]["commands"]["by_command"] = runs[len(runs) // 2]["by_command"]
            for key in ("by_command_in_scripts", "enqueue_by_command", "idle_by_command_per_s"):
                rows[f]["commands"][key] = runs[len(runs) // 2][key]
        _say(f"{setting.engine} {setting.key}: commands/job " + ", ".join(
            f"{f} {rows[f]['commands']['total']['median']:.1f} total "
            f"{rows[f]['commands']['client']['median']:.1f} client" for f in flavours))
    finally:
        for f, worker in workers.items():
            worker.stop()
            rows[f]["peak_rss_mib"] = worker.peak_rss / 2**20
            rows[f]["peak_pss_mib"] = worker.peak_pss / 2**20 if worker.peak_pss else None
        for subject in subjects.values():
            subject.close()
        flush = redis.Redis.from_url(redis_url)
        for f in flavours:
            flush.execute_command("SELECT", DATABASES[f])
            flush.flushdb()
        flush.close()
    return list(rows.values())


def bench_workers(redis_url: str, port: int, plan: Plan, log_dir: Path,
                  only: str | None = None) -> list[dict]:
    rows = []
    for setting in SETTINGS:
        if only and only not in f"{setting.engine}-{setting.key}":
            continue
        _say(f"worker setting {setting.engine} {setting.key}")
        rows.extend(bench_setting(setting, redis_url, port, plan, log_dir))
    return rows


def bench_enqueue(redis_url: str, plan: Plan) -> list[dict]:
    """In-process enqueue rates, single calls and batches, with no worker running."""
    pairs = [("raw", "celery"), ("raw-bare", "celery"), ("switchyard", "celery"),
             ("raw", "rq"), ("switchyard", "rq"), ("raw", "dramatiq"), ("switchyard", "dramatiq")]
    subjects = {(f, e): make_subject(f, e, _url(redis_url, 4 + i))
                for i, (f, e) in enumerate(pairs)}
    rates: dict = {(key, method): [] for key in subjects for method in ("single", "batch")}
    try:
        sent: Counter = Counter()

        def enqueue_run(key, n: int, batch: int | None) -> float:
            sent[key] += n
            return measure.enqueue_run(subjects[key], n, batch)

        for key in subjects:
            enqueue_run(key, 20, None)
            enqueue_run(key, 20, 10)
        for run in range(plan.runs):
            for key in subjects:
                rates[(key, "single")].append(enqueue_run(key, plan.enqueue_jobs, None))
                rates[(key, "batch")].append(enqueue_run(key, plan.enqueue_jobs, plan.batch_size))
        # a rate counts only jobs that reached the bench's Redis, where a worker takes them
        for (flavour, engine), subject in subjects.items():
            if subject.waiting() != sent[(flavour, engine)]:
                raise RuntimeError(f"enqueue: {flavour} {engine} left {subject.waiting()} jobs "
                                   f"waiting in its Redis database, not {sent[(flavour, engine)]}")
    finally:
        for subject in subjects.values():
            subject.close()
        with contextlib.closing(redis.Redis.from_url(redis_url)) as flush:
            flush.flushall()
    rows = []
    for ((flavour, engine), method), values in rates.items():
        rows.append({"engine": engine, "flavour": flavour, "method": method,
                     "batch_size": plan.batch_size if method == "batch" else 1,
                     "jobs": plan.enqueue_jobs, **measure.summary(values)})
    _say("enqueue: " + ", ".join(f"{r['flavour']} {r['engine']} {r['method']} "
                                 f"{r['median']:.0f}/s" for r in rows))
    return rows
