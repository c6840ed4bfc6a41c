"""Real engines for the tests: worker subprocesses, deadlines, per-leg settings."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

import redis

from adapters import AdapterSettings, JobInfo, JobState, create_adapter
from tests.processes import ROOT, Process

T = TypeVar("T")

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
        super().__init__([sys.executable, "-m", module, "--backend", engine.backend,
                          "-n", self.name, *args], worker_env, log_path)

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
        self.backend = leg.split("+")[0]
        self.redis_url = redis_url
        self.broker_url = amqp_url if leg.endswith("+amqp") else None
        self.log_dir = log_dir
        self.prefix = f"t{uuid.uuid4().hex[:8]}."
        self.workers: list[WorkerProcess] = []
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self._saved_environ = None
        if self.backend == "dramatiq":
            # AdapterSettings carries no engine's own variable: the engine in this process
            # reads DRAMATIQ_BROKER_URL from os.environ, so it is set there for this leg
            self._saved_environ = os.environ.get("DRAMATIQ_BROKER_URL")
            if self.broker_url:
                os.environ["DRAMATIQ_BROKER_URL"] = self.broker_url
            else:
                os.environ.pop("DRAMATIQ_BROKER_URL", None)
        self.settings = AdapterSettings.from_env(self.env())
        self.adapter = create_adapter(self.backend, self.settings)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SWITCHYARD_", "CELERY_", "DRAMATIQ_"))}
        env.update(FAST_SETTINGS)
        env.update({
            "REDIS_URL": self.redis_url,
            "SWITCHYARD_QUEUE_PREFIX": self.prefix,
            "JOB_MODULES": self.job_modules,
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
        })
        if self.broker_url:
            env["DRAMATIQ_BROKER_URL" if self.backend == "dramatiq" else "CELERY_BROKER_URL"] = \
                self.broker_url
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

    # -- raw broker access for the JSON-only case -------------------------------------
    def inject_pickled(self, queue: str, marker: str) -> None:
        """Push a pickled message straight into the broker; unpickling it would create ``marker``."""
        evil = _Evil(marker)
        if self.backend == "celery":
            kq = self.adapter.engine._queue(queue)
            task_id = str(uuid.uuid4())
            body = ((evil, "token"), {}, {"callbacks": None, "errbacks": None, "chain": None,
                                         "chord": None})
            headers = {"lang": "py", "task": "switchyard.run", "id": task_id,
                       "root_id": task_id, "parent_id": None, "group": None,
                       "argsrepr": "(evil)", "kwargsrepr": "{}", "origin": "test",
                       "retries": 0, "timelimit": [None, None], "eta": None, "expires": None}
            with self.adapter.engine.app.connection_for_write() as conn:
                conn.Producer().publish(body, exchange=kq.exchange, routing_key=kq.routing_key,
                                        serializer="pickle", headers=headers, declare=[kq],
                                        priority=self.adapter.engine._priorities["default"])
        elif self.backend == "rq":
            from rq import Queue
            from rq.job import Job

            queue_name = self.adapter.engine._engine_name(queue, "default")
            job = Job.create("adapters.rq.perform", args=[evil, "token"],
                             connection=self.adapter.engine.rq_redis)  # RQ's default: pickle
            job.save()
            Queue(queue_name, connection=self.adapter.engine.rq_redis).push_job_id(job.id)
        elif self.backend == "dramatiq":
            engine = self.adapter.engine
            name = engine.engine_name(queue)
            body = pickle.dumps({"queue_name": name, "actor_name": "switchyard.run",
                                 "args": (evil, "token"), "kwargs": {}, "options": {},
                                 "message_id": str(uuid.uuid4()),
                                 "message_timestamp": int(time.time() * 1000)})
            if engine.redis_broker:
                message_id = str(uuid.uuid4())
                client = engine.broker.client
                client.hset(f"{engine.broker.namespace}:{name}.msgs", message_id, body)
                client.rpush(f"{engine.broker.namespace}:{name}", message_id)
            else:
                engine.broker.declare_queue(name, ensure=True)
                engine.broker.channel.basic_publish(exchange="", routing_key=name, body=body)
        else:
            raise NotImplementedError(self.backend)

    # -- a worker that dies between taking a delivery and claiming it -----------------
    def take_delivery_and_die(self, enqueue: Callable[[], JobInfo]) -> JobInfo:
        """``enqueue()`` a job and leave its delivery taken from the engine by a worker that died before it
        claimed the job, as a SIGKILL at that moment would.

        Celery: a real worker whose pool children are stopped (SIGSTOP) takes the message
        from the broker -- it is handed over (kombu's ``unacked`` on Redis, an unacked
        delivery on RabbitMQ) but no child runs it -- and is then SIGKILLed. RQ: a worker
        pops and runs in one process, so the pop is done here with the worker's own
        dequeue (which notes the delivery as in hand), and nothing claims it.
        """
        if self.backend == "celery":
            import psutil

            worker = self.start_worker()
            main = psutil.Process(worker.proc.pid)
            # the first child is the maintenance process, forked before the engine starts
            children = wait_until(
                lambda: sorted(main.children(), key=lambda p: p.create_time())[1:], 30, 0.05,
                "the Celery worker's pool children")
            for child in children:
                child.send_signal(signal.SIGSTOP)
            job = enqueue()
            if self.adapter.engine.redis_broker:
                wait_until(lambda: self.redis.zcard("unacked_index"), 15, 0.02,
                           "the worker to take the message")
            else:
                wait_until(lambda: _amqp_unacked(self, job.queue), 15, 0.05,
                           "the worker to take the message")
            worker.kill()
            self.workers.remove(worker)
            return job
        if self.backend == "rq":
            from adapters.rq import _Queue

            job = enqueue()
            _Queue.inhand_key = f"{self.settings.namespace}rq:inhand"
            keys = [f"rq:queue:{n}" for n in self.adapter.engine.worker_queue_names([job.queue])]
            popped = _Queue.lpop(keys, None, connection=self.adapter.engine.rq_redis)
            assert popped and popped[1].decode().startswith(job.id), popped
            return job
        if self.backend == "dramatiq":
            engine = self.adapter.engine
            job = enqueue()
            name = engine.engine_name(job.queue)
            if engine.redis_broker:
                # a broker of its own (its own worker id) fetches the message with
                # Dramatiq's fetch, which holds it in that worker's acks set, and then
                # never beats again, as a worker SIGKILLed at that moment
                from dramatiq.brokers.redis import RedisBroker

                taker = RedisBroker(client=engine.broker.client, middleware=[],
                                    namespace=engine.broker.namespace, maintenance_chance=0)
                fetched = taker.do_fetch(name, 1)
                assert fetched and job.id.encode() in fetched[0], fetched
            else:
                # a consumer takes it unacknowledged and its connection dies
                import pika

                conn = pika.BlockingConnection(engine.broker.parameters)
                method, _, body = conn.channel().basic_get(name, auto_ack=False)
                assert method is not None and job.id.encode() in body, body
                conn.close()
            return job
        raise NotImplementedError(self.backend)

    def close(self) -> None:
        self.stop_workers()
        self.adapter.close()
        self.redis.close()
        if self.backend == "dramatiq":
            if self._saved_environ is None:
                os.environ.pop("DRAMATIQ_BROKER_URL", None)
            else:
                os.environ["DRAMATIQ_BROKER_URL"] = self._saved_environ


def _amqp_unacked(engine: "Engine", queue: str) -> bool:
    """True once RabbitMQ counts no ready message in ``queue`` (a consumer holds it)."""
    kq = engine.adapter.engine._queue(queue)
    with engine.adapter.engine.app.connection_for_write() as conn:
        _, ready, _ = conn.default_channel.queue_declare(kq.name, passive=True)
    return ready == 0


class _Evil:
    """Unpickling this creates a directory: proof that a worker deserialised pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def never_started(info: JobInfo) -> bool:
    return info.started_at is None and info.attempts == 0


__all__ = ["Engine", "WorkerProcess", "wait_until", "never_started", "JobState", "pickle"]
