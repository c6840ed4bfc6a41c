"""What the bench compares: the raw engines and Switchyard on each, and the worker
settings every pair runs with."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
SLEEP_SECONDS = 0.05
# kombu's Redis lists of the raw Celery queue, one per priority step.
BARE_CELERY_LISTS = ("bench", "bench:3", "bench:9")

__all__ = ["WorkerSetting", "SETTINGS", "ENGINES", "Subject", "RawCelery", "RawRQ",
           "RawDramatiq", "Switchyard", "make_subject", "worker_env", "blocked_pops"]

ENGINES = ("celery", "rq", "dramatiq")


@dataclasses.dataclass(frozen=True)
class WorkerSetting:
    """One way of running a worker, the same for the raw engine and for Switchyard."""

    engine: str
    key: str
    label: str
    processes: int
    """Jobs it runs at once."""
    raw: tuple[str, ...]
    """Arguments of the raw engine's own worker command."""
    switchyard: tuple[str, ...]
    """Arguments of ``python -m adapters.worker``."""
    switchyard_default: bool = False
    """True if ``switchyard`` is Switchyard's launcher with no engine option at all."""


SETTINGS = [
    WorkerSetting("celery", "prefork-c2", "prefork -c2", 2,
                  ("--pool=prefork", "--concurrency=2"), ("-c", "2"), switchyard_default=True),
    WorkerSetting("celery", "solo", "solo", 1, ("--pool=solo",), ("--pool", "solo")),
    WorkerSetting("celery", "threads-c2", "threads -c2", 2,
                  ("--pool=threads", "--concurrency=2"), ("--pool", "threads", "-c", "2")),
    WorkerSetting("rq", "fork-c1", "`rq worker` (fork per job)", 1,
                  ("worker", "--worker-class", "rq.worker.Worker"),
                  ("--worker-class", "fork", "-c", "1")),
    WorkerSetting("rq", "simple-c1", "SimpleWorker", 1,
                  ("worker", "--worker-class", "rq.worker.SimpleWorker"), ("-c", "1"),
                  switchyard_default=True),
    WorkerSetting("rq", "pool-fork-c2", "`rq worker-pool -n 2` (fork per job)", 2,
                  ("worker-pool", "-n", "2"), ("--worker-class", "fork", "-c", "2")),
    WorkerSetting("rq", "pool-simple-c2", "`rq worker-pool -n 2` of SimpleWorkers", 2,
                  ("worker-pool", "-n", "2", "--worker-class", "rq.worker.SimpleWorker"),
                  ("-c", "2"), switchyard_default=True),
    # Switchyard's -c N is N Dramatiq worker processes of one thread each
    WorkerSetting("dramatiq", "procs-c1", "`dramatiq -p 1 -t 1`", 1,
                  ("--processes", "1", "--threads", "1"), ("-c", "1"), switchyard_default=True),
    WorkerSetting("dramatiq", "procs-c2", "`dramatiq -p 2 -t 1`", 2,
                  ("--processes", "2", "--threads", "1"), ("-c", "2"), switchyard_default=True),
]


def blocked_pops(engine: str, processes: int) -> int:
    """Connections of a ready, idle worker that wait in a blocking pop: Celery's consumer
    pops for the whole worker on one, RQ's each process on its own; raw Dramatiq's Redis
    broker polls with a script and blocks on none (Switchyard's Dramatiq consumers wait in
    XREAD, one per queue and process: more than none, so none is the count both meet)."""
    return {"celery": 1, "dramatiq": 0}.get(engine, processes)


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker under test: only this bench's Redis, nothing inherited
    that could point an engine elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHYARD_", "CELERY_", "RQ_", "DRAMATIQ_", "dramatiq_",
                                "QUEUE_BACKEND", "JOB_MODULES"))}
    env.update({"REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")})
    env.update(extra)
    return env


class Subject:
    """One engine as a user drives it: enqueue jobs, see them finish, run its worker."""

    flavour = "abstract"
    engine = "abstract"

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.poller = redis.Redis.from_url(redis_url, decode_responses=True)
        self.poll_commands: Counter = Counter()
        """Commands the bench sent to watch progress; subtracted from command counts."""

    def enqueue(self, kind: str):
        """Enqueue one job (``noop`` or ``sleep``) the way a user would; returns a handle."""
        raise NotImplementedError

    def prefill(self, kind: str, count: int) -> None:
        """Put ``count`` jobs in the queue as fast as the engine allows."""
        for _ in range(count):
            self.enqueue(kind)

    def enqueue_batch(self, kind: str, count: int) -> None:
        """The engine's own batch enqueue, if it has one."""
        raise NotImplementedError

    def done_count(self) -> int:
        """Jobs finished so far (monotonic)."""
        raise NotImplementedError

    def waiting(self) -> int:
        """Jobs waiting for a worker in this subject's Redis database, read where its
        worker would take them (the enqueue bench checks every job it timed is there)."""
        raise NotImplementedError

    def finished(self, handle) -> bool:
        """True once the job's result is visible to a reader."""
        raise NotImplementedError

    def worker_argv(self, setting: WorkerSetting, name: str) -> list[str]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return worker_env(self.redis_url)

    def close(self) -> None:
        self.poller.close()


class RawCelery(Subject):
    """Plain Celery with its Redis result backend (see :mod:`bench.raw_celery`)."""

    flavour = "raw"
    engine = "celery"

    def __init__(self, redis_url: str, results: bool = True):
        super().__init__(redis_url)
        from bench.raw_celery import make_app

        self.results = results
        self.app = make_app(redis_url, results=results)
        self.tasks = {"noop": self.app.tasks["bench.raw.noop"],
                      "sleep": self.app.tasks["bench.raw.sleep"]}
        self._done = 0
        self._enqueued = 0
        self._done_lock = threading.Lock()
        # Completions arrive as the result backend's own PUBLISH of each result, so
        # counting them costs no command at all.
        self._listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self._listener.psubscribe(**{"celery-task-meta-*": self._on_result})
        self._listener_thread = self._listener.run_in_thread(sleep_time=0.5, daemon=True)

    def _on_result(self, message) -> None:
        with self._done_lock:
            self._done += 1

    def enqueue(self, kind: str):
        args = [SLEEP_SECONDS] if kind == "sleep" else []
        self._enqueued += 1
        return self.tasks[kind].apply_async(args).id

    def enqueue_batch(self, kind: str, count: int) -> None:
        from celery import group

        args = (SLEEP_SECONDS,) if kind == "sleep" else ()
        group(self.tasks[kind].si(*args) for _ in range(count)).apply_async()
        self._enqueued += count

    def waiting(self) -> int:
        pipe = self.poller.pipeline(transaction=False)
        for key in BARE_CELERY_LISTS:
            pipe.llen(key)
        return sum(pipe.execute())

    def done_count(self) -> int:
        if not self.results:
            # No results to see: a job is done once its message left both the queue's
            # priority lists and the unacked hash (late acks: acked after it ran).
            pipe = self.poller.pipeline(transaction=False)
            for key in BARE_CELERY_LISTS:
                pipe.llen(key)
            pipe.hlen("unacked")
            self.poll_commands.update({"llen": len(BARE_CELERY_LISTS), "hlen": 1})
            return self._enqueued - sum(pipe.execute())
        with self._done_lock:
            return self._done

    def finished(self, handle) -> bool:
        self.poll_commands["get"] += 1
        return self.app.AsyncResult(handle).ready()

    def worker_argv(self, setting, name):
        return [sys.executable, "-m", "celery", "-A", "bench.raw_celery_worker", "worker",
                *setting.raw, "--queues=bench", "--loglevel=INFO", "--without-gossip",
                "--without-mingle", f"--hostname={name}@%h"]

    def worker_env(self):
        return worker_env(self.redis_url, BENCH_CELERY_RESULTS="1" if self.results else "0")

    def close(self):
        self._listener_thread.stop()
        self._listener_thread.join(5)
        self._listener.close()
        self.app.close()
        super().close()


class RawRQ(Subject):
    """Plain RQ with its JSON serializer and default result keeping."""

    flavour = "raw"
    engine = "rq"

    def __init__(self, redis_url: str):
        super().__init__(redis_url)
        from rq import Queue
        from rq.registry import FinishedJobRegistry
        from rq.serializers import JSONSerializer

        self.Queue = Queue
        self.connection = redis.Redis.from_url(redis_url)
        self.queue = Queue("bench", connection=self.connection, serializer=JSONSerializer)
        self.finished_key = FinishedJobRegistry(queue=self.queue).key
        self.funcs = {"noop": "bench.raw_rq.noop", "sleep": "bench.raw_rq.sleep"}

    def _args(self, kind):
        return (SLEEP_SECONDS,) if kind == "sleep" else ()

    def enqueue(self, kind: str):
        return self.queue.enqueue(self.funcs[kind], *self._args(kind))

    def enqueue_batch(self, kind: str, count: int) -> None:
        data = [self.Queue.prepare_data(self.funcs[kind], args=self._args(kind))
                for _ in range(count)]
        self.queue.enqueue_many(data)

    def prefill(self, kind: str, count: int) -> None:
        for start in range(0, count, 500):
            self.enqueue_batch(kind, min(500, count - start))

    def waiting(self) -> int:
        return self.queue.count

    def done_count(self) -> int:
        self.poll_commands["zcard"] += 1
        return self.poller.zcard(self.finished_key)

    def finished(self, handle) -> bool:
        from rq.job import JobStatus

        self.poll_commands["hget"] += 1
        return handle.get_status(refresh=True) == JobStatus.FINISHED

    def worker_argv(self, setting, name):
        extra = ["--name", name] if setting.raw[0] == "worker" else []
        return [sys.executable, "-m", "rq.cli", *setting.raw, *extra, "--url", self.redis_url,
                "--serializer", "rq.serializers.JSONSerializer", "bench"]

    def close(self):
        self.connection.close()
        super().close()


class RawDramatiq(Subject):
    """Plain Dramatiq with its Redis result backend (see :mod:`bench.raw_dramatiq`)."""

    flavour = "raw"
    engine = "dramatiq"

    def __init__(self, redis_url: str):
        super().__init__(redis_url)
        from bench.raw_dramatiq import make_app

        self.broker, self.actors = make_app(redis_url)
        self.backend = next(m.backend for m in self.broker.middleware if hasattr(m, "backend"))
        self.messages_key = f"{self.broker.namespace}:bench.msgs"
        self._enqueued = 0

    def _args(self, kind):
        return (SLEEP_SECONDS,) if kind == "sleep" else ()

    def enqueue(self, kind: str):
        self._enqueued += 1
        return self.actors[kind].send(*self._args(kind))

    def enqueue_batch(self, kind: str, count: int) -> None:
        import dramatiq

        self._enqueued += count
        # the group's broker named: a group without one enqueues on Dramatiq's global
        # broker, a RabbitMQ broker on 127.0.0.1 by default, not this bench's Redis
        dramatiq.group((self.actors[kind].message(*self._args(kind)) for _ in range(count)),
                       broker=self.broker).run()

    def waiting(self) -> int:
        return self.poller.hlen(self.messages_key)

    def done_count(self) -> int:
        # A message leaves the queue's hash when it is acknowledged, after its result
        # was stored (Dramatiq acknowledges once the actor and its middleware are done).
        self.poll_commands["hlen"] += 1
        return self._enqueued - self.poller.hlen(self.messages_key)

    def finished(self, handle) -> bool:
        from dramatiq.results import ResultMissing

        self.poll_commands["lindex"] += 1
        try:
            self.backend.get_result(handle)
        except ResultMissing:
            return False
        return True

    def worker_argv(self, setting, name):
        return [sys.executable, "-m", "dramatiq", "bench.raw_dramatiq_worker:broker", *setting.raw,
                "--queues", "bench"]

    def worker_env(self):
        from bench.raw_dramatiq import WORKER_ENV

        return worker_env(self.redis_url, **WORKER_ENV)

    def close(self):
        self.broker.client.close()
        super().close()


class Switchyard(Subject):
    """Switchyard's adapter for one engine, and its worker launcher."""

    flavour = "switchyard"

    def __init__(self, redis_url: str, engine: str):
        super().__init__(redis_url)
        import bench.jobs  # noqa: F401 - registers bench.noop and bench.sleep
        from adapters import AdapterSettings, JobOptions, create_adapter

        self.engine = engine
        self.env = worker_env(redis_url, JOB_MODULES="bench.jobs",
                              SWITCHYARD_QUEUE_PREFIX="bench.")
        self.settings = AdapterSettings.from_env(self.env)
        self.adapter = create_adapter(engine, self.settings)
        self.JobOptions = JobOptions
        self.stats_key = f"{self.settings.namespace}stats"

    def _job(self, kind):
        if kind == "sleep":
            return ("bench.sleep", {"seconds": SLEEP_SECONDS}, None)
        return ("bench.noop", {}, None)

    def enqueue(self, kind: str):
        job_type, payload, options = self._job(kind)
        return self.adapter.enqueue(job_type, payload, options).id

    def enqueue_batch(self, kind: str, count: int) -> None:
        self.adapter.enqueue_many([self._job(kind)] * count)

    def prefill(self, kind: str, count: int) -> None:
        for start in range(0, count, 500):
            self.enqueue_batch(kind, min(500, count - start))

    def waiting(self) -> int:
        # the ledger's queued jobs: here the record and its message are one script call
        # on the bench's Redis (the engine shares the ledger's), so one is where the other is
        return sum(count for count, _ in self.adapter.ledger.backlog().values())

    def done_count(self) -> int:
        self.poll_commands["hgetall"] += 1
        stats = self.poller.hgetall(self.stats_key)
        # jobs that ended: attempts that ran to an end (not a retry) plus ends without a run
        return int(sum(float(v) for k, v in stats.items()
                       if k.startswith("finished|")
                       or (k.startswith("ran|") and k.split("|")[3] != "retry")))

    def finished(self, handle) -> bool:
        from adapters import JobState

        self.poll_commands["hgetall"] += 1
        return self.adapter.get(handle).state == JobState.SUCCEEDED

    def worker_argv(self, setting, name):
        return [sys.executable, "-m", "adapters.worker", "--backend", self.engine,
                "-n", name, *setting.switchyard]

    def worker_env(self):
        return dict(self.env)

    def close(self):
        self.adapter.close()
        super().close()


def make_subject(flavour: str, engine: str, redis_url: str) -> Subject:
    if flavour == "switchyard":
        return Switchyard(redis_url, engine)
    if engine == "celery":
        return RawCelery(redis_url, results=flavour != "raw-bare")
    if engine == "dramatiq":
        return RawDramatiq(redis_url)
    return RawRQ(redis_url)


def worker_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def readable_argv(argv: list[str]) -> list[str]:
    """A worker's command as a reader would type it, as the results record it: no paths,
    URLs or generated names (the same again for words already so)."""
    def word(index: int, word: str) -> str:
        if index == 0:
            return os.path.basename(word)
        if word.startswith("redis://"):
            return "$REDIS_URL"
        if word.startswith("--hostname="):
            return "--hostname=NAME@%h"
        if re.fullmatch(r"(raw|rawbare|switchyard|http|scale)[0-9a-f]{6}|scale\d+", word):
            return "NAME"
        return word
    return [word(i, w) for i, w in enumerate(argv)]
