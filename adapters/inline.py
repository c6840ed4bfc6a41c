"""The inline engine: runs each job in the caller, at enqueue; for unit tests of job logic."""

from __future__ import annotations

import time

from .engine import Engine
from .errors import UnsupportedFeature
from .ledger import Dispatch
from .runner import execute
from .types import Capability

__all__ = ["InlineEngine"]


class InlineEngine(Engine):
    """Runs a job synchronously inside ``enqueue``, retries included; it has no worker."""

    name = "inline"
    capabilities = frozenset({Capability.RETRIES, Capability.TIMEOUTS,
                              Capability.RETRY_FAILED, Capability.IDEMPOTENCY,
                              Capability.WORKFLOWS})
    runs_at_publish = True

    def publish(self, deliveries: list[Dispatch], pipeline=None) -> None:
        ledger = self.client.ledger
        pending = list(deliveries)
        while pending:
            for item in pending:
                outcome = execute(self.client, item.job_id, item.token)
                if outcome.retry_at is not None:
                    time.sleep(max(0.0, outcome.retry_at - time.time()))
            pending = ledger.maintain(time.time())
            if pending:
                ledger.dispatched([d.job_id for d in pending])

    def run_worker(self, queues, concurrency=1, name=None):
        raise UnsupportedFeature("the inline adapter runs jobs inside enqueue; it has no worker")
