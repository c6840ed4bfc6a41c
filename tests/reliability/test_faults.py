"""Faults injected into the Procfile stack, as a platform and an operator cause them.

Each case names a fault, the processes it hits, and asserts what users would see:
every accepted job ends, none is lost or stuck, none runs after it succeeded, and a
job runs again only where a fault cut a delivery short.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.conftest import AMQP_URL
from tests.harness import wait_until
from tests.reliability.stack import PrivateRabbit, Stack, time_of

N = 200


def _stack(leg: str, redis_url: str, base, broker_url: str | None = None) -> Stack:
    backend = leg.split("+")[0]
    if broker_url is None and leg.endswith("+amqp"):
        broker_url = AMQP_URL
    stack = Stack(backend, redis_url, base, broker_url)
    stack.wait_for_worker()
    return stack


def _enqueue(stack: Stack, n: int, job_type: str = "chaos.work", **payload) -> list[str]:
    ids = []
    for i in range(n):
        status, _, body = stack.post_job(job_type, {"n": i, **payload} if job_type ==
                                         "chaos.work" else payload)
        assert status == 202, (status, body)
        ids.append(body["id"])
    return ids


def _succeeded(observer, ids) -> int:
    return sum(1 for rec in observer.adapter.ledger.load_many(ids)
               if rec and rec["state"] == "succeeded")


def _until_all_ended(stack, observer, ids, timeout=120) -> float:
    def ended():
        stack._check()
        return observer.all_ended(ids)
    try:
        return time_of(ended, timeout, "every job to end")
    except AssertionError:
        raise AssertionError("\n\n".join(p.log() for p in stack.processes.values())) from None


def _assert_no_harm(figures, allowed_reruns: int = 0):
    assert figures.lost == 0, figures
    assert figures.stuck == 0, figures
    assert figures.run_after_success == 0, figures
    assert figures.run_twice <= allowed_reruns, figures


def test_worker_sigkilled_at_random_moments(leg, ledger_redis, observer, figures, tmp_path):
    """worker: SIGKILL five times while it works through the jobs, restarted each time."""
    stack = _stack(leg, ledger_redis.url, tmp_path)
    try:
        ids = _enqueue(stack, N)
        rng = random.Random()
        kills = 5
        for k in range(kills):
            # a random moment: after a random number of further jobs have succeeded
            target = min(N - 1, _succeeded(observer, ids) + rng.randint(3, 25))
            wait_until(lambda: _succeeded(observer, ids) >= target, 60, 0.005,
                       f"{target} jobs to succeed before kill {k + 1}")
            stack["worker"].restart_after_kill()
        figures.recovered_in = _until_all_ended(stack, observer, ids)
        observer.tally(figures, ids)
        figures.processes = stack.stories()
        assert figures.succeeded == N, figures
        # each kill cuts at most the one job in hand short
        _assert_no_harm(figures, allowed_reruns=kills)
    finally:
        figures.processes = figures.processes or stack.stories()
        stack.close()


def test_worker_sigterm_mid_job(leg, ledger_redis, observer, figures, tmp_path):
    """worker: SIGTERM to its process group mid-run (a platform restart), then a new one."""
    stack = _stack(leg, ledger_redis.url, tmp_path)
    try:
        ids = _enqueue(stack, N, seconds=0.05)
        wait_until(lambda: _succeeded(observer, ids) >= 30, 60, 0.005, "30 jobs to succeed")
        code = stack["worker"].terminate(timeout=30)
        assert code == 0, f"the worker's warm shutdown exited {code}:\n{stack['worker'].log()}"
        stack["worker"].start()
        figures.recovered_in = _until_all_ended(stack, observer, ids)
        observer.tally(figures, ids)
        figures.processes = stack.stories()
        assert figures.succeeded == N, figures
        _assert_no_harm(figures, allowed_reruns=0)
    finally:
        figures.processes = figures.processes or stack.stories()
        stack.close()


@pytest.mark.parametrize("how", ["shutdown", "kill"])
def test_redis_restarted(leg, how, ledger_redis, observer, figures, tmp_path):
    """Redis: stopped for ~10 s mid-run (SHUTDOWN or SIGKILL), then started on its AOF."""
    stack = _stack(leg, ledger_redis.url, tmp_path)
    try:
        status, _, body = stack.request("POST", "/v1/schedules", {
            "name": "tick", "every": 1, "job": {"type": "chaos.work", "payload": {"n": -1}}})
        assert status == 201, body
        ids = _enqueue(stack, N // 2)
        wait_until(lambda: _succeeded(observer, ids) >= 10, 60, 0.005, "10 jobs to succeed")
        ledger_redis.stop(how)
        down_at = time.monotonic()
        refused = 0
        while time.monotonic() - down_at < 10:
            status, headers, body = stack.post_job("chaos.work", {"n": -2})
            assert status == 503, (status, body)
            assert headers["Content-Type"] == "application/problem+json"
            assert body["type"] == "urn:switchyard:problem:backend-unavailable"
            assert int(headers["Retry-After"]) > 0
            refused += 1
            status, _, ready = stack.get("/readyz")
            assert status == 503 and ready["status"] == "not ready"
            time.sleep(0.2)  # a client backing off between tries
        ledger_redis.start()
        back_at = time.time()
        for process in stack.processes.values():
            assert process.alive() and process.starts == 1, process.story()

        def accepted():
            status, _, body = stack.post_job("chaos.work", {"n": -3})
            return body["id"] if status == 202 else None
        first = wait_until(accepted, 30, 0.2, "web to accept jobs again")
        after = [first, *_enqueue(stack, N // 2)]
        figures.recovered_in = time_of(lambda: _succeeded(observer, [first]), 60,
                                       "the first job after the restart to succeed")
        _until_all_ended(stack, observer, ids + after)

        def fired_again():
            status, _, body = stack.get("/v1/schedules/tick")
            last = body and body.get("last_run_at")
            from datetime import datetime
            return last and datetime.fromisoformat(last).timestamp() > back_at
        wait_until(fired_again, 30, 0.2, "the schedule to fire after the restart")
        for process in stack.processes.values():
            assert process.alive() and process.starts == 1, process.story() + process.log()
        observer.tally(figures, ids + after)
        figures.processes = stack.stories() + [f"{refused} POSTs refused with 503 while down"]
        assert figures.succeeded == figures.accepted, figures
        # a job that was running as Redis went down may be run again once its lease runs out
        _assert_no_harm(figures, allowed_reruns=2)
    finally:
        figures.processes = figures.processes or stack.stories()
        stack.close()


def test_broker_restarted(leg, ledger_redis, observer, figures, tmp_path):
    """RabbitMQ: the broker's app stopped and started mid-run; workers consume again."""
    rabbit = PrivateRabbit().start()
    stack = None
    try:
        stack = _stack(leg, ledger_redis.url, tmp_path, broker_url=rabbit.url)
        ids = _enqueue(stack, N // 2)
        wait_until(lambda: _succeeded(observer, ids) >= 10, 60, 0.005, "10 jobs to succeed")
        rabbit.ctl("stop_app")
        wait_until(lambda: not rabbit._open(), 30, 0.1, "the AMQP port to close")
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > 5, 10, 0.5, "five seconds of outage")
        rabbit.ctl("start_app")
        rabbit.wait_open()

        def accepted():
            status, _, body = stack.post_job("chaos.work", {"n": -3})
            return body["id"] if status == 202 else None
        first = wait_until(accepted, 60, 0.2, "web to accept jobs again")
        after = [first, *_enqueue(stack, N // 2)]
        figures.recovered_in = time_of(lambda: _succeeded(observer, [first]), 90,
                                       "the first job after the restart to succeed")
        _until_all_ended(stack, observer, ids + after)
        for process in stack.processes.values():
            assert process.alive() and process.starts == 1, process.story() + process.log()
        observer.tally(figures, ids + after)
        figures.processes = stack.stories()
        assert figures.succeeded == figures.accepted, figures
        _assert_no_harm(figures, allowed_reruns=2)
    finally:
        if stack is not None:
            figures.processes = figures.processes or stack.stories()
            stack.close()
        rabbit.close()


def test_jobs_that_exit(leg, ledger_redis, observer, figures, tmp_path):
    """worker: jobs that sys.exit(), raise KeyboardInterrupt or MemoryError, or os._exit()."""
    stack = _stack(leg, ledger_redis.url, tmp_path)
    try:
        ways = {"sys.exit": ("SystemExit", 1), "KeyboardInterrupt": ("KeyboardInterrupt", 1),
                "MemoryError": ("MemoryError", 3),  # retried twice, as its policy says
                "os._exit": ("WorkerLost", 3)}  # a lost worker, three times at most
        exits = {how: _enqueue(stack, 1, "chaos.exit", how=how)[0] for how in ways}
        ids = _enqueue(stack, N)
        everything = ids + list(exits.values())
        figures.recovered_in = _until_all_ended(stack, observer, everything)
        for how, job_id in exits.items():
            error, runs = ways[how]
            status, _, job = stack.get(f"/v1/jobs/{job_id}")
            assert job["state"] == "failed" and job["error"]["type"] == error, (how, job)
            assert observer.r.llen(f"chaos:starts:{job_id}") == runs, (how, job)
        observer.tally(figures, everything, {job_id: "failed" for job_id in exits.values()})
        figures.processes = stack.stories()
        assert figures.succeeded == N and figures.failed_as_designed == len(ways), figures
        _assert_no_harm(figures)
        assert stack["worker"].alive()
    finally:
        figures.processes = figures.processes or stack.stories()
        stack.close()
