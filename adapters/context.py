"""The context handed to a running job."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from .options import JobOptions
from .types import JobInfo

__all__ = ["JobContext"]


@dataclasses.dataclass(kw_only=True)
class JobContext:
    """What a job knows about itself while it runs; the first argument of every job."""

    job_id: str
    """The job's stable id, the same on every attempt: derive idempotent side effects from it."""
    job_type: str
    """The registered name."""
    attempt: int
    """1 on the first run, 2 on the first retry, ..."""
    tenant: str
    """The tenant that enqueued it."""
    queue: str
    """The queue it came from."""
    links: dict = dataclasses.field(default_factory=dict)
    """Related ids, e.g. ``{"workflow": ...}`` or ``{"schedule": ...}``."""
    upstream: Any = None
    """In a chain, the previous job's result; in a chord's body, the header's results
    in order; otherwise ``None``."""
    adapter: Any = None
    """The :class:`~adapters.client.Switchyard` client of the worker running the job (its engine, whatever ``QUEUE_BACKEND``
    says): read or enqueue other jobs through it."""
    _ledger: Any = None
    _token: str = ""
    _canceled: threading.Event = dataclasses.field(default_factory=threading.Event)

    def progress(self, current: float, total: float | None = None, message: str = "") -> None:
        """Record progress; readable through the API while the job runs."""
        if self._ledger is not None:
            self._ledger.progress(self.job_id, self._token,
                                  {"current": current, "total": total, "message": message})

    def enqueue(self, job_type: str, payload: dict | None = None,
                options: JobOptions | None = None) -> JobInfo:
        """Enqueue another job on this job's own adapter and tenant; its ``links`` name
        this job as ``parent``."""
        if self.adapter is None:
            raise RuntimeError("this JobContext belongs to no adapter")
        return self.adapter.enqueue(job_type, payload, options, tenant=self.tenant,
                                    links={"parent": self.job_id})

    def keyspace(self):
        """The ledger's Redis and namespace for the job module's own records
        (:meth:`Switchyard.keyspace`)."""
        if self.adapter is None:
            raise RuntimeError("this JobContext belongs to no adapter")
        return self.adapter.keyspace()

    @property
    def cancel_requested(self) -> bool:
        """True once a cancel has been seen; long loops may check it to stop early."""
        return self._canceled.is_set()
