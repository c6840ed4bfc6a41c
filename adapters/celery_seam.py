"""The seam between the Celery engine and kombu's Redis publish batch (kombu 5.7).

When Celery's broker is the ledger's own Redis, a job's record and its message commit in
one MULTI: kombu routes the message as usual and its final commands (the LPUSH, and the
queue's PEXPIRE) go into the client's transaction through a batch session of kombu's
whose pipeline is that transaction. ``tests/test_celery_seam.py`` checks that the kombu
internals used here still exist as used.
"""

from __future__ import annotations

import contextlib
from urllib.parse import parse_qsl, urlparse

from .connections import strip_tls_query
from .settings import SentinelURL, is_sentinel

__all__ = ["BATCHES", "PUBLISH_BATCH", "IntoTransaction", "into_transaction", "same_redis"]

PUBLISH_BATCH = 500
"""Messages a Redis publish batch buffers before it sends them (kombu's Producer.batch)."""

try:  # kombu's Redis publish batch (kombu 5.7): the seam the one-transaction path uses
    from kombu.messaging import _ProducerBatchState
    from kombu.transport.redis import PublishBatch
    BATCHES = True
except ImportError:  # pragma: no cover - an older kombu: the guarded route
    BATCHES = False
    PublishBatch = object


class IntoTransaction(PublishBatch):
    """kombu's Redis publish batch, its commands queued in the client's MULTI; flushing
    is the client's ``EXEC``."""

    def __init__(self, channel, pipeline):  # pylint: disable=super-init-not-called
        # kombu's own __init__ makes a Redis client and a pipeline of its own, a sixth of
        # a single enqueue's time, only for this session to replace them with the client's.
        self.channel = channel
        self.max_size = PUBLISH_BATCH
        self.pipeline = pipeline
        self._buffered = 0
        self._collecting = None
        self._failed = None
        self._aborted = False
        self._closed = False
        self._stack = contextlib.ExitStack()

    def flush(self):
        self._buffered = 0

    def discard(self):
        self._aborted = True
        self._buffered = 0


def same_redis(a: str, b: str) -> bool:
    """True if two Redis URLs name the same server and database."""
    def where(url: str):
        if is_sentinel(url):
            parts = SentinelURL.parse(url)
            return ("sentinel", frozenset(parts.sentinels), parts.master, str(parts.db))
        parsed = urlparse(strip_tls_query(url))
        query = dict(parse_qsl(parsed.query))
        if parsed.scheme == "unix":
            return ("unix", parsed.path, query.get("db", "0"))
        return ("tcp", parsed.hostname or "localhost", parsed.port or 6379,
                (parsed.path or "/0").strip("/") or query.get("db", "0"))

    return where(a) == where(b)



@contextlib.contextmanager
def into_transaction(producer, pipeline):
    """For the block, ``producer``'s publishes queue their commands in ``pipeline`` (the
    client's MULTI, which the client runs) instead of sending them."""
    session = IntoTransaction(producer.channel, pipeline)
    state = _ProducerBatchState(PUBLISH_BATCH)
    state.session = session
    producer._batch_local.current = state
    try:
        yield session
    finally:
        producer._batch_local.current = None
        session.close()
