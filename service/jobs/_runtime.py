"""The job modules' own handle on the ledger and its Redis, one per process."""

from __future__ import annotations

import os
import threading

from adapters import AdapterSettings, QueueAdapter, create_adapter

__all__ = ["ledger_adapter"]

_lock = threading.Lock()
_adapter: QueueAdapter | None = None
_key: tuple | None = None


def ledger_adapter() -> QueueAdapter:
    """An adapter on the configured ledger, for reads and small writes from inside a job.

    Every adapter reads the same ledger; the inline one opens nothing but a Redis
    client, so it is the cheap choice whatever engine runs the job. A forked worker
    child gets its own, never its parent's connection.
    """
    global _adapter, _key
    key = (os.getpid(), os.environ.get("REDIS_URL"), os.environ.get("SWITCHYARD_NAMESPACE"))
    with _lock:
        if _adapter is None or _key != key:
            _adapter = create_adapter("inline", AdapterSettings.from_env())
            _key = key
        return _adapter
