"""The inline adapter: runs each job in the caller, at enqueue; for unit tests of job logic."""

from __future__ import annotations

import time

from .base import Capability, QueueAdapter
from .errors import UnsupportedFeature
from .ledger import Dispatch
from .runner import execute

__all__ = ["InlineAdapter"]


class InlineAdapter(QueueAdapter):
    """Runs a job synchronously inside ``enqueue``, retries included; it has no worker."""

    name = "inline"
    capabilities = frozenset({Capability.RETRIES, Capability.TIMEOUTS,
                              Capability.RETRY_FAILED, Capability.IDEMPOTENCY,
                              Capability.WORKFLOWS})

    def enqueue_many(self, jobs, **kwargs):
        """As every adapter does, but the jobs have run by the time it returns: answer
        their records as they are now, not as they were written."""
        return [self.get(info.id) for info in super().enqueue_many(jobs, **kwargs)]

    def _publish(self, dispatch: Dispatch) -> None:
        pending = [dispatch]
        while pending:
            for item in pending:
                outcome = execute(self, item.job_id, item.token)
                if outcome.retry_at is not None:
                    time.sleep(max(0.0, outcome.retry_at - time.time()))
            pending = self.ledger.maintain(time.time())
            if pending:
                self.ledger.dispatched([d.job_id for d in pending])

    def run_worker(self, queues=None, concurrency=1, name=None):
        raise UnsupportedFeature("the inline adapter runs jobs inside enqueue; it has no worker")
