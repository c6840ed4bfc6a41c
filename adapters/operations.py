"""The operator's calls on the client: indexed reads, bulk actions, the audit log, queues.

Mixed into :class:`adapters.client.Switchyard`, which keeps the job calls themselves;
each accessor here returns a small object of its own module.
"""

from __future__ import annotations

from . import audit as _audit, bulk as _bulk
from .queues import Queues
from .search import Searching

__all__ = ["Operations"]


class Operations(Searching):
    """``search()`` (from :class:`adapters.search.Searching`), ``bulk()``, ``audit()``,
    ``queues()``."""

    def bulk(self) -> _bulk.Bulk:
        """Retry, cancel or delete every job a filter matches, as a job (:mod:`.bulk`)."""
        return _bulk.Bulk(self)

    def audit(self) -> _audit.Audit:
        """The audit log: who did what, when (:mod:`.audit`)."""
        return _audit.Audit(self)

    def queues(self) -> Queues:
        """Pause, resume and list the queues (:class:`adapters.queues.Queues`)."""
        return Queues(self)
