"""Real engines for the tests: worker subprocesses, deadlines, per-leg settings."""

from __future__ import annotations

import os
import pickle
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

from adapters import ALIASES, AdapterSettings, JobInfo, JobState, create_adapter, resolve_engine
from adapters.connections import redis_client
from tests.conformance.hooks import hooks_for
from tests.processes import ROOT, Process

T = TypeVar("T")

WORKER_ENGINES = tuple(alias for alias in ALIASES if not resolve_engine(alias).runs_at_publish)
"""The engines with worker processes (not ``inline``), from ``adapters.resolve.ALIASES``."""
BROKER_ENGINES = tuple(alias for alias in WORKER_ENGINES if resolve_engine(alias).broker_variable)
"""The engines whose broker has a variable of its own (it may be another server)."""
ENGINE_LEGS = tuple(f"{alias}+{broker}" for alias in WORKER_ENGINES
                    for broker in resolve_engine(alias).brokers)
"""Every engine x broker leg the engines declare (``Engine.brokers``)."""

CUSTOM_BACKENDS: dict[str, str] = {}
"""Legs whose engine is given by dotted path (``pytest --engine``): leg -> path."""
HOOKS_OVERRIDE: dict[str, str] = {}
"""Legs whose conformance hooks are given by dotted path (``pytest --engine-hooks``)."""

# Short leases and ticks so lost workers and delays resolve in seconds, not minutes.
FAST_SETTINGS = {
    "SWITCHYARD_LEASE_SECONDS": "2",
    "SWITCHYARD_WATCH_SECONDS": "0.2",
    "SWITCHYARD_TICK_SECONDS": "0.1",
    "SWITCHYARD_TIMEOUT_GRACE": "3",
    "SWITCHYARD_MAX_LOST_DELIVERIES": "3",
    "SWITCHYARD_QUEUE_EXPIRES": "120",
}


def wait_until(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


class WorkerProcess(Process):
    """One `python -m adapters.worker` subprocess in its own process group."""

    def __init__(self, engine: "Engine", args: list[str], log_path: Path,
                 module: str = "adapters.worker", env: dict[str, str | None] | None = None):
        self.engine = engine
        self.name = f"w{uuid.uuid4().hex[:8]}"
        worker_env = engine.env()
        for key, value in (env or {}).items():  # None removes a variable
            if value is None:
                worker_env.pop(key, None)
            else:
                worker_env[key] = value
        super().__init__(engine.hooks.worker_argv(engine, module, ["-n", self.name, *args]),
                         worker_env, log_path)

    def wait_ready(self, timeout: float = 30.0) -> "WorkerProcess":
        def ready():
            return self.assert_alive("worker") and any(
                w.get("pid") == str(self.proc.pid) for w in self.engine.adapter.ledger.workers(ttl=30))
        wait_until(ready, timeout, 0.05, f"worker {self.name} to come up")
        return self


class Engine:
    """One leg (engine + broker) as the conformance cases see it."""

    def __init__(self, leg: str, redis_url: str, amqp_url: str | None, log_dir: Path,
                 job_modules: str = "tests.conformance.jobs",
                 extra_env: dict[str, str] | None = None):
        self.leg = leg
        self.job_modules = job_modules
        self.extra_env = dict(extra_env or {})
        self.backend = CUSTOM_BACKENDS.get(leg) or leg.split("+")[0]
        self.redis_url = redis_url
        self.broker_url = amqp_url if leg.endswith("+amqp") else None
        self.log_dir = log_dir
        self.prefix = f"t{uuid.uuid4().hex[:8]}."
        self.workers: list[WorkerProcess] = []
        self.engine_class = resolve_engine(self.backend)
        self.settings = AdapterSettings.from_env(self.env())
        self.redis = redis_client(self.settings, decode_responses=True)
        self.adapter = create_adapter(self.backend, self.settings)
        self.hooks = hooks_for(type(self.adapter.engine), HOOKS_OVERRIDE.get(leg))

    def env(self) -> dict[str, str]:
        # the engines' own variables come from the leg alone, never from the caller
        own = tuple(cls.broker_variable for cls in map(resolve_engine, ALIASES)
                    if cls.broker_variable)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SWITCHYARD_", "CELERY_")) and k not in own}
        env.update(FAST_SETTINGS)
        env.update({
            "REDIS_URL": self.redis_url,
            "SWITCHYARD_QUEUE_PREFIX": self.prefix,
            "JOB_MODULES": self.job_modules,
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
        })
        if self.broker_url:
            env[self.engine_class.broker_variable] = self.broker_url
        env.update(self.extra_env)
        return env

    def supports(self, capability) -> bool:
        return self.adapter.supports(capability)

    def start_worker(self, queues=("default",), concurrency: int = 1,
                     wait: bool = True, env: dict[str, str | None] | None = None,
                     args: tuple[str, ...] = ()) -> WorkerProcess | None:
        """Start a worker; ``env`` adds to (or, with ``None`` values, removes from) ``env()``;
        ``args`` go to ``python -m adapters.worker`` as well."""
        if self.backend == "inline":
            return None
        worker = WorkerProcess(self, ["-Q", ",".join(queues), "-c", str(concurrency), *args],
                               self.log_dir / f"{self.leg}-{len(self.workers)}.log", env=env)
        self.workers.append(worker)
        return worker.wait_ready() if wait else worker

    def start_scheduler(self, poll: float = 0.1, catch_up: int = 1) -> WorkerProcess:
        """The engine's own scheduler process (Celery beat / rq-scheduler)."""
        scheduler = WorkerProcess(self, ["--poll", str(poll), "--catch-up", str(catch_up)],
                                  self.log_dir / f"{self.leg}-sched-{len(self.workers)}.log",
                                  module="adapters.scheduler")
        self.workers.append(scheduler)
        return scheduler.wait_ready()

    def stop_workers(self) -> None:
        for worker in self.workers:  # all shut down at once, then each is waited for
            worker.terminate()
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def wait_for(self, job_id: str, states=None, timeout: float = 20.0) -> JobInfo:
        """Wait until the job is in one of ``states`` (default: any final state)."""
        def reached():
            info = self.adapter.get(job_id)
            if states is None:
                return info if info.state.ended else None
            return info if info.state in states else None
        try:
            return wait_until(reached, timeout, 0.02, f"job {job_id} to reach {states or 'an end'}")
        except AssertionError as exc:
            logs = "\n".join(w.log()[-3000:] for w in self.workers)
            raise AssertionError(f"{exc}\nhistory: {self.adapter.history(job_id)}\n{logs}") from None

    def states(self, job_id: str) -> list[str]:
        return [e["state"] for e in self.adapter.history(job_id)]

    # -- the engine-specific hooks (tests/conformance/hooks.py) ------------------------
    def inject_pickled(self, queue: str, marker: str) -> None:
        """Push a pickled message straight into the broker; unpickling it would create ``marker``."""
        self.hooks.inject_pickled(self, queue, _Evil(marker))

    def take_delivery_and_die(self, enqueue: Callable[[], JobInfo]) -> JobInfo:
        """``enqueue()`` a job and leave its delivery taken from the engine by a worker that
        died before it claimed the job, as a SIGKILL at that moment would."""
        return self.hooks.take_delivery_and_die(self, enqueue)

    def close(self) -> None:
        self.stop_workers()
        self.adapter.close()
        self.redis.close()


class _Evil:
    """Unpickling this creates a directory: proof that a worker deserialised pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def never_started(info: JobInfo) -> bool:
    return info.started_at is None and info.attempts == 0


__all__ = ["Engine", "WorkerProcess", "wait_until", "never_started", "JobState", "pickle"]
