"""The raw Dramatiq baseline: a plain Dramatiq app on the bench's Redis.

Dramatiq's own RedisBroker with its default middleware (retries, age and time limits,
callbacks, pipelines) plus the Results middleware on a Redis result backend, so that, as
with Switchyard's ledger, a finished job's result can be read back. Its worker is
Dramatiq's own CLI, ``dramatiq bench.raw_dramatiq_worker:broker -p N -t 1``, with the prefetch and
``worker_timeout`` Switchyard's Dramatiq worker uses (``dramatiq_queue_prefetch=1``,
``dramatiq_worker_timeout=100``; see :data:`WORKER_ENV`). Raw Dramatiq polls an empty queue
at that timeout; Switchyard's consumers wait for a wake-up instead (``adapters/dramatiq_wake.py``).
"""

from __future__ import annotations

import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

QUEUE = "bench"
WORKER_ENV = {"dramatiq_queue_prefetch": "1", "dramatiq_worker_timeout": "100"}
"""What Switchyard's Dramatiq worker sets in code: one message per queue in hand, and a
``worker_timeout`` of 100 ms (raw Dramatiq's longest wait between two polls of an empty
queue; a busy Switchyard consumer's wait before it looks again)."""


def make_app(redis_url: str) -> tuple[RedisBroker, dict]:
    """A broker on ``redis_url`` and its two actors, ``{"noop": ..., "sleep": ...}``."""
    client = redis.Redis.from_url(redis_url)
    broker = RedisBroker(client=client)
    broker.add_middleware(Results(backend=RedisBackend(client=client)))

    def noop():
        return None

    def sleep(seconds=0.05):
        time.sleep(seconds)
        return None

    actors = {fn.__name__: dramatiq.actor(fn, broker=broker, actor_name=f"bench.raw.{fn.__name__}",
                                          queue_name=QUEUE, store_results=True, max_retries=0)
              for fn in (noop, sleep)}
    return broker, actors
