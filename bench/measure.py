"""The measurements themselves, each on a worker that is paused between them.

Throughput: the worker is paused (SIGSTOP on its whole process group), ``n`` jobs are
put in its queue, and the clock runs from the resume (SIGCONT, the start signal) until
the bench sees the n-th job finished. Latency: one job at a time on an idle worker,
from the enqueue call until its result is visible to a reader polling every 0.5 ms.
Commands: see :func:`commands_run`.
"""

from __future__ import annotations

import statistics
import time

from bench.redisstats import CommandCounter
from bench.subjects import Subject
from bench.workers import WorkerProcess, wait_until

__all__ = ["summary", "percentiles", "throughput_run", "latency_run", "commands_run",
           "enqueue_run"]

POLL = 0.002
LATENCY_POLL = 0.0005


def summary(values: list[float]) -> dict:
    """Median and range of repeated runs."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": list(values)}


def percentiles(samples: list[float]) -> dict:
    """p50/p95/p99 in milliseconds."""
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": qs[49] * 1000, "p95": qs[94] * 1000, "p99": qs[98] * 1000}


def _wait_done(subject: Subject, target: int, worker: WorkerProcess, timeout: float,
               poll: float = POLL) -> float:
    deadline = time.monotonic() + timeout
    while subject.done_count() < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{subject.flavour} {subject.engine}: jobs not finished after "
                               f"{timeout}s\n{worker.log_tail()}")
        worker.check()
        time.sleep(poll)
    return time.perf_counter()


def throughput_run(subject: Subject, worker: WorkerProcess, kind: str, n: int,
                   timeout: float = 300.0) -> float:
    """Jobs per second from the worker's start signal to the last job finished.

    The worker must be paused on entry and is paused again on return."""
    base = subject.done_count()
    subject.prefill(kind, n)
    started = time.perf_counter()
    worker.resume()
    try:
        ended = _wait_done(subject, base + n, worker, timeout)
    finally:
        worker.pause()
    return n / (ended - started)


def latency_run(subject: Subject, worker: WorkerProcess, m: int,
                timeout: float = 60.0) -> list[float]:
    """Seconds from enqueue to a visible result, ``m`` jobs one after another."""
    samples = []
    worker.resume()
    try:
        for _ in range(m):
            started = time.perf_counter()
            handle = subject.enqueue("noop")
            deadline = time.monotonic() + timeout
            while not subject.finished(handle):
                if time.monotonic() > deadline:
                    worker.check()
                    raise TimeoutError(f"job {handle} not finished in {timeout}s\n"
                                       f"{worker.log_tail()}")
                time.sleep(LATENCY_POLL)
            samples.append(time.perf_counter() - started)
    finally:
        worker.pause()
    return samples


def commands_run(subject: Subject, worker: WorkerProcess, counter: CommandCounter, n: int,
                 idle_seconds: float, settle_seconds: float = 0.5,
                 timeout: float = 300.0) -> dict:
    """Redis commands per job of ``n`` no-op jobs, enqueued one by one.

    1. Idle: the running worker with nothing to do for ``idle_seconds`` (after it has
       settled from its resume); what it sends then -- heartbeats, maintenance ticks,
       blocking-pop timeouts -- is its idle rate, reported on its own.
    2. Lifecycle: ``n`` single enqueue calls while the worker runs, until the n-th job
       is finished; the commands of that window less the idle rate over its length and
       less the commands the bench sent to watch for the end, divided by ``n``.
    3. Enqueue side: the same ``n`` enqueue calls with the worker paused, so nothing
       but the enqueue runs; the worker side is the lifecycle less this.
    """
    worker.resume()
    try:
        time.sleep(settle_seconds)
        before_idle = counter.mark()
        idle_started = time.perf_counter()
        time.sleep(idle_seconds)
        after_idle = counter.mark()
        idle = (after_idle - before_idle).scaled(1 / (time.perf_counter() - idle_started))

        base_done = subject.done_count()
        polls_before = subject.poll_commands.copy()
        before_run = counter.mark()
        run_started = time.perf_counter()
        for _ in range(n):
            subject.enqueue("noop")
        ended = _wait_done(subject, base_done + n, worker, timeout)
        after_run = counter.mark()
        polls = subject.poll_commands - polls_before
    finally:
        worker.pause()
    lifecycle = ((after_run - before_run).without(polls)
                 - idle.scaled(ended - run_started)).scaled(1 / n)

    base_done = subject.done_count()
    before_enqueue = counter.mark()
    for _ in range(n):
        subject.enqueue("noop")
    enqueue_side = (counter.mark() - before_enqueue).scaled(1 / n)
    worker.resume()
    try:
        _wait_done(subject, base_done + n, worker, timeout)
    finally:
        worker.pause()

    return {
        "n": n,
        "total": lifecycle.total_count,
        "client": lifecycle.client_count,
        "in_scripts": lifecycle.script_count,
        "enqueue_total": enqueue_side.total_count,
        "enqueue_client": enqueue_side.client_count,
        "worker_total": lifecycle.total_count - enqueue_side.total_count,
        "worker_client": lifecycle.client_count - enqueue_side.client_count,
        "idle_total_per_s": idle.total_count,
        "idle_client_per_s": idle.client_count,
        "by_command": _rounded(lifecycle.total),
        "by_command_in_scripts": _rounded(lifecycle.in_scripts),
        "enqueue_by_command": _rounded(enqueue_side.total),
        "idle_by_command_per_s": _rounded(idle.total),
    }


def _rounded(counts) -> dict:
    return {k: round(v, 2) for k, v in sorted(counts.items()) if abs(v) >= 0.005}


def enqueue_run(subject: Subject, n: int, batch: int | None) -> float:
    """Jobs enqueued per second in this process: ``n`` single calls, or batches."""
    started = time.perf_counter()
    if batch:
        for start in range(0, n, batch):
            subject.enqueue_batch("noop", min(batch, n - start))
    else:
        for _ in range(n):
            subject.enqueue("noop")
    return n / (time.perf_counter() - started)


def wait_ready(subject: Subject, worker: WorkerProcess, blocked: int, db: int,
               timeout: float = 90.0) -> None:
    """Until the worker has run one job and ``blocked`` of its connections wait on a pop."""
    base = subject.done_count()
    subject.enqueue("noop")
    _wait_done(subject, base + 1, worker, timeout, poll=0.02)

    def waiting() -> bool:
        clients = subject.poller.client_list()
        return sum(1 for c in clients if c.get("db") == str(db) and "b" in c.get("flags", "")) \
            >= blocked
    wait_until(waiting, timeout, f"{blocked} blocked connection(s) of the worker", 0.02, worker)
