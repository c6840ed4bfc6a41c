"""Your own jobs compared: every ``examples=`` payload of the job types in the given
modules, enqueued on every engine and run by a real worker process of that engine.

Each engine leg gets one ``python -m adapters.worker`` subprocess (its own process
group) over the job modules, on its own queue prefix in one Redis; every example is
enqueued through the client, and the final state, result, attempts and run time are
read back from the ledger. A final state or attempt count that differs between engines
is a parity break; a result that differs is reported (it may hold a time or an id).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from adapters import (ALIASES, AdapterSettings, create_adapter, definitions, load_job_modules,
                      resolve_engine)

__all__ = ["run_examples", "example_breaks", "leg_env"]



def leg_env(leg: str, backend: str, redis_url: str, amqp_url: str | None,
            job_modules: str, prefix: str) -> dict[str, str]:
    """A worker's environment for ``leg``: this process's, less any engine setting."""
    own = {cls.broker_variable for cls in map(resolve_engine, ALIASES) if cls.broker_variable}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHYARD_", "CELERY_")) and k not in own}
    here = os.getcwd()  # flask puts it on sys.path; a job module found there must be found too
    env.update({"REDIS_URL": redis_url, "QUEUE_BACKEND": backend, "JOB_MODULES": job_modules,
                "SWITCHYARD_QUEUE_PREFIX": prefix, "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)})
    variable = resolve_engine(backend).broker_variable
    if leg.partition("+")[2] == "amqp" and amqp_url and variable:
        env[variable] = amqp_url
    return env


def _examples(job_modules: str) -> list[tuple[str, int, dict]]:
    """``(type, index, payload)`` of every example of the job types these modules (or
    their submodules) define."""
    modules = load_job_modules(job_modules)

    def ours(module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in modules)

    return [(name, i, dict(example)) for name, d in sorted(definitions().items())
            if ours(d.func.__module__) for i, example in enumerate(d.examples)]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode} while waiting for "
                               f"{what}:\n{log.read_text(errors='replace')[-3000:]}")
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def run_leg(leg: str, backend: str, examples: list[tuple[str, int, dict]], redis_url: str,
            amqp_url: str | None, job_modules: str, log_dir: Path,
            timeout: float = 120.0) -> dict[tuple[str, int], dict[str, Any]]:
    """Every example on one leg: ``(type, index) -> {state, result, attempts, seconds}``."""
    env = leg_env(leg, backend, redis_url, amqp_url, job_modules, f"cmp{uuid.uuid4().hex[:8]}.")
    adapter = create_adapter(backend, AdapterSettings.from_env(env))
    queues = sorted({"default"} | {definitions()[name].queue for name, _, _ in examples})
    log = log_dir / f"jobs-{leg}.log"
    out: dict[tuple[str, int], dict[str, Any]] = {}
    with open(log, "ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "adapters.worker", "--backend", backend,
                                 "-Q", ",".join(queues), "-n", f"compare-{uuid.uuid4().hex[:6]}"],
                                env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait(lambda: any(w.get("pid") == str(proc.pid) for w in adapter.ledger.workers(ttl=30)),
              60, f"the {leg} worker to come up", proc, log)
        jobs = {(name, i): adapter.enqueue(name, payload) for name, i, payload in examples}
        ended = _wait(lambda: (infos := [adapter.get(j.id) for j in jobs.values()]) and all(
            info.state.ended for info in infos) and infos, timeout,
            f"the examples to end on {leg}", proc, log)
        for key, info in zip(jobs, ended):
            seconds = (info.finished_at - info.started_at).total_seconds() \
                if info.started_at and info.finished_at else None
            out[key] = {"state": info.state.value, "result": info.result,
                        "error": info.error, "attempts": info.attempts, "seconds": seconds}
    except (RuntimeError, TimeoutError) as exc:
        for name, i, _ in examples:
            out.setdefault((name, i), {"state": "not run", "result": None, "attempts": 0,
                                       "seconds": None, "error": {"message": str(exc)}})
    finally:
        _stop(proc)
        adapter.close()
    return out


def run_examples(legs: dict[str, str], job_modules: str, redis_url: str, amqp_url: str | None,
                 log_dir: Path, say=print) -> list[dict]:
    """Every example of ``job_modules`` on every leg (leg -> engine alias or path)."""
    examples = _examples(job_modules)
    if not examples:
        return []
    log_dir.mkdir(parents=True, exist_ok=True)
    by_leg = {}
    for leg, backend in legs.items():
        started = time.monotonic()
        by_leg[leg] = run_leg(leg, backend, examples, redis_url, amqp_url, job_modules, log_dir)
        say(f"[compare] jobs on {leg}: {len(examples)} example(s) in "
            f"{time.monotonic() - started:.0f} s")
    runs = []
    for name, i, payload in examples:
        got = {leg: by_leg[leg][(name, i)] for leg in legs}
        results = {json.dumps(g["result"], sort_keys=True, default=str) for g in got.values()}
        runs.append({"type": name, "index": i, "payload": payload, "legs": got,
                     "results_equal": len(results) <= 1})
    return runs


def example_breaks(runs: list[dict]) -> list[str]:
    """One line per example whose final state or attempts differ between engines, or that
    did not succeed on an engine where another one succeeded."""
    breaks = []
    for run in runs:
        seen = {(g["state"], g["attempts"]) for g in run["legs"].values()}
        if len(seen) > 1:
            where = ", ".join(f"{leg} {g['state']} after {g['attempts']} attempt(s)"
                              for leg, g in run["legs"].items())
            breaks.append(f"job `{run['type']}` example {run['index']}: {where}")
    return breaks

