"""Pausing and resuming queues, the same on every engine (``client.queues()``).

A paused queue's jobs are not run, and nothing is asked of the engine to make it so:
the claim script (``adapters/lua/claim.lua``) finds the job's queue in ``{ns}paused``
and, instead of starting the job, *parks* it. The job stays ``queued``, its id goes to
``{ns}parked:{queue}`` (a zset scored by when it became queued, so the order of the
backlog is kept) and the queue to ``{ns}parked``; the delivery that brought it is used
up (its token cleared). A message already in the broker, prefetched by a worker or
published while the queue is paused is handled alike, by the claim that would have run
it, so a pause holds at once on every worker of every engine, with no consumer to cancel.

Resume removes the flag and moves the parked jobs to the ledger's ``due`` set at their
old scores (``adapters/lua/unpark.lua``, in batches); the maintenance release then
publishes them, oldest first and by priority, each with a new token, as any due job
(so none runs twice: a delivery from before the pause is stale). The caller publishes
the first batches itself. A resume cut short, its process dead after lifting the flag,
strands nothing: every worker's maintenance loop releases, a few times per lease, the
parked jobs of any queue that is not paused (:meth:`Queues.release_parked`).

A parked job is a queued job for everything else: it counts in the queue's backlog,
``cancel`` cancels it (unpark drops it then), ``expires_at`` expires it.

On a sharded ledger (``adapters/shards.py``) the flag is written to every shard's
``paused`` (each claim reads its own shard's), unpark runs shard by shard, and a queue's
figures add its shards up.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import scripts
from .errors import InvalidJob, unavailable
from .types import Capability, QueueInfo
from .validation import QUEUE_NAME

__all__ = ["Queues", "check_queue_name"]

RELEASE_BATCH = 500
"""Parked jobs moved per script call: each call is short, so Redis never stalls on one."""
WAITING_READ = 5000
"""The most scheduled and retrying jobs read to count them per queue (``QueueInfo.waiting``)."""
THROUGHPUT_MINUTES = 5
"""The whole minutes a queue's throughput is averaged over (``QueueInfo.finished_per_minute``)."""
PUBLISH_ROUNDS = 10
"""Due batches (of 100) a resume publishes itself; the workers' loops publish the rest."""


def check_queue_name(queue: str) -> str:
    """``queue`` if it is a valid queue name; ``InvalidJob`` (field ``queue``) if not."""
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise InvalidJob(f"{queue!r} is not a queue name",
                         {"queue": ["queue names are 1-64 letters, digits, '_', '-' or '.'"]})
    return queue


class Queues:
    """The queues of one ledger: pause, resume, and what each one holds."""

    def __init__(self, client: Any):
        self.client = client
        self.ns = client.ledger.ns
        self.shards = client.ledger.shards
        self._unpark = client.redis.register_script(scripts.source("unpark"))

    def pause(self, queue: str, by: str | None = None) -> QueueInfo:
        """Stop running the queue's jobs, on every worker at once; they stay queued.
        Pausing a paused queue changes nothing (its first ``at`` and ``by`` stay)."""
        check_queue_name(queue)
        self.client.require(Capability.PAUSE_QUEUES, "pausing queues")
        state = json.dumps({"at": time.time(), "by": by})
        with unavailable("cannot write to Redis"):
            for ns in self.shards.namespaces:  # one shard's MULTI each
                pipe = self.client.redis.pipeline(transaction=True)
                pipe.hsetnx(f"{ns}paused", queue, state)
                pipe.sadd(f"{ns}queues", queue)  # a known queue from now on, used or not
                pipe.execute()
        return self.get(queue)

    def resume(self, queue: str) -> QueueInfo:
        """Run the queue's jobs again: the parked ones are published again with new
        tokens (each runs once), oldest first. Resuming a queue that is not paused
        releases whatever is still parked on it, and is otherwise a no-op."""
        check_queue_name(queue)
        self.client.require(Capability.PAUSE_QUEUES, "pausing queues")
        with unavailable("cannot write to Redis"):
            for ns in self.shards.namespaces:
                self.client.redis.hdel(f"{ns}paused", queue)
            while self.release_parked(queue) >= RELEASE_BATCH:
                pass
            for _ in range(PUBLISH_ROUNDS):
                if self.client.dispatch_due() < 100:
                    break
        return self.get(queue)

    def release_parked(self, queue: str = "") -> int:
        """Move up to one batch of parked jobs of ``queue`` (or of every queue) that is
        not paused to the due set; returns how many left the parked sets. The
        maintenance loop calls it, so an interrupted resume finishes on its own."""
        return sum(int(self._unpark(keys=[ns], args=[ns, repr(time.time()), queue, RELEASE_BATCH]))
                   for ns in self.shards.namespaces)

    def paused(self) -> dict[str, dict]:
        """``{queue: {"at": datetime, "by": str | None}}`` of every paused queue."""
        with unavailable("cannot read from Redis"):
            return self.client.ledger.paused()

    def get(self, queue: str) -> QueueInfo:
        """One queue (any valid name: a queue never used is empty and not paused)."""
        check_queue_name(queue)
        return self._infos([queue])[0]

    def list(self) -> list[QueueInfo]:
        """Every queue ever used or paused, by name."""
        with unavailable("cannot read from Redis"):
            names = self.client.ledger.queue_names()
            return self._infos(sorted(set(names) | set(self.client.ledger.paused())))

    def _infos(self, names: list[str]) -> list[QueueInfo]:
        r = self.client.redis
        with unavailable("cannot read from Redis"):
            paused = self.client.ledger.paused()
            backlog = self.client.ledger.backlog(names)
            pipe = r.pipeline(transaction=False)
            now = time.time()
            last = int(now // 60) * 60 - 60  # the last whole minute
            for minute in range(last - 60 * (THROUGHPUT_MINUTES - 1), last + 60, 60):
                for ns in self.shards.namespaces:
                    pipe.hmget(f"{ns}m:{minute}", [f"q|{name}" for name in names] or ["-"])
            minutes = pipe.execute()
            running = self._per_queue("leases")
            waiting = self._per_queue("due", limit=WAITING_READ)
        out = []
        for i, name in enumerate(names):
            count, oldest = backlog[name]
            state = paused.get(name)
            ended = sum(int(row[i] or 0) for row in minutes)
            out.append(QueueInfo(
                name=name, paused=state is not None, paused_at=state and state["at"],
                paused_by=state and state["by"], queued=count,
                oldest_queued_age=max(0.0, now - oldest) if oldest is not None else None,
                running=running.get(name, 0), waiting=waiting.get(name, 0),
                finished_per_minute=ended / THROUGHPUT_MINUTES))
        return out

    def _per_queue(self, deadlines: str, limit: int = -1) -> dict[str, int]:
        """Jobs of a deadline set per queue: ``leases`` (running: as many as run at once),
        ``due`` (scheduled and retrying, the soonest ``limit`` read)."""
        r, ledger = self.client.redis, self.client.ledger
        ids = [job_id for ns in self.shards.namespaces
               for job_id in r.zrange(f"{ns}{deadlines}", 0, limit - 1 if limit > 0 else -1)]
        pipe = r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(ledger.key(job_id), "queue")
        counts: dict[str, int] = {}
        for name in pipe.execute() if ids else []:
            if name:
                counts[name] = counts.get(name, 0) + 1
        return counts
