"""Bulk operations: retry, cancel or delete every job a filter matches.

An operation is itself a job, of Switchyard's own type ``switchyard.bulk``
(:mod:`adapters.bulk_job`, registered in every process): it runs on a worker of any
engine, reports its progress like any job, and outlives the web process that asked for
it. ``client.bulk().submit(action, filter)`` validates the filter here and enqueues it.

A filter names a ``tenant`` (``None``: every tenant), ``state`` (one, or several),
``type``, ``queue`` and a creation window ``[created_after, created_before)``. Without a
state, an action takes the states it applies to (:data:`DEFAULT_STATES`). Switchyard's
own jobs (the operations) never match, and neither does any job created after the
operation was asked for (its ``as_of``), so the jobs a retry creates are not matched.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from datetime import datetime
from typing import Any, Iterator

from .audit import OPERATOR, actor_of
from .errors import InvalidJob, unavailable
from .jsonlimits import lone_surrogate
from .options import JobOptions
from .registry import BUILTIN_PREFIX
from .search import JobFilter, Search
from .types import Capability, JobInfo, JobState
from .validation import QUEUE_NAME, build_record

__all__ = ["Bulk", "BulkFilter", "ACTIONS", "DEFAULT_STATES", "BULK_TYPE", "CHUNK",
           "check_filter", "matching_ids"]

BULK_TYPE = f"{BUILTIN_PREFIX}bulk"
"""The job type of a bulk operation."""
CHUNK = 500
"""Jobs read, and acted on, per round trip."""
ACTIONS = ("retry", "cancel", "delete")
DEFAULT_STATES = {
    "retry": ("failed", "canceled"),
    "cancel": ("scheduled", "queued", "started", "retrying"),
    "delete": ("succeeded", "failed", "canceled"),
}
"""The states an action matches when the filter names none: the ones it applies to (a
delete of waiting jobs, which first cancels them, must name their state)."""
_NEEDS = {"retry": Capability.RETRY_FAILED, "cancel": Capability.CANCEL_QUEUED}
_STATES = tuple(s.value for s in JobState)


@dataclasses.dataclass(frozen=True)
class BulkFilter:
    """Which jobs an operation acts on; every field that is not ``None`` must match."""

    tenant: str | None = None
    """``None``: every tenant (an operator's)."""
    states: tuple[str, ...] = ()
    """Any of these states; ``()``: the action's :data:`DEFAULT_STATES`."""
    type: str | None = None
    queue: str | None = None
    created_after: float | None = None
    """Unix seconds, inclusive."""
    created_before: float | None = None
    """Unix seconds, exclusive."""

    def as_dict(self) -> dict:
        """The JSON shape (``state`` a string when there is one, a list when several)."""
        state: Any = self.states[0] if len(self.states) == 1 else (list(self.states) or None)
        return {"tenant": self.tenant, "state": state, "type": self.type, "queue": self.queue,
                "created_after": self.created_after, "created_before": self.created_before}

    def for_action(self, action: str) -> "BulkFilter":
        return self if self.states else dataclasses.replace(self, states=DEFAULT_STATES[action])


def _time(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidJob(f"{field} needs a timezone", {f"filter.{field}": [
                "must include a timezone offset"]})
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidJob(f"{field} is not a time", {f"filter.{field}": [
        "must be an aware datetime or a Unix timestamp"]})


def _text(value: Any, field: str, pattern=None) -> str | None:
    if value is None:
        return None
    problem = ("must be a string" if not isinstance(value, str) else
               "must not be empty" if not value else lone_surrogate(value) or (
                   pattern is not None and not pattern.fullmatch(value)
                   and f"must match {pattern.pattern}"))
    if problem:
        raise InvalidJob(f"filter.{field} {problem}", {f"filter.{field}": [problem]})
    return value


def check_filter(raw: BulkFilter | dict | None) -> BulkFilter:
    """A :class:`BulkFilter` of a mapping of its fields (``state`` a string or a list,
    times as aware datetimes or Unix seconds); ``InvalidJob`` naming ``filter.<field>``."""
    if isinstance(raw, BulkFilter):
        return raw
    raw = dict(raw or {})
    unknown = sorted(set(raw) - {"tenant", "state", "states", "type", "queue",
                                 "created_after", "created_before"})
    if unknown:
        raise InvalidJob("unknown filter fields", {f"filter.{k}": ["unknown field"]
                                                   for k in unknown})
    state = raw.get("state", raw.get("states"))
    states = () if state is None else (state,) if isinstance(state, str) else tuple(state)
    bad = [s for s in states if s not in _STATES]
    if bad:
        raise InvalidJob("unknown state in the filter", {"filter.state": [
            f"must be one of: {', '.join(_STATES)}"]})
    return BulkFilter(tenant=_text(raw.get("tenant"), "tenant"), states=states,
                      type=_text(raw.get("type"), "type"),
                      queue=_text(raw.get("queue"), "queue", QUEUE_NAME),
                      created_after=_time(raw.get("created_after"), "created_after"),
                      created_before=_time(raw.get("created_before"), "created_before"))


def matching_ids(ledger: Any, f: BulkFilter, as_of: float | None = None,
                 chunk: int = CHUNK) -> Iterator[str]:
    """The ids of the jobs ``f`` matches (its ``states`` as given: ``()`` is any state),
    created before ``as_of``, newest first, state by state.

    The indexed walk of :meth:`adapters.search.Search.iter_ids`' kind: a state walks that
    state's index (``{ns}ts:{tenant}:{state}``, ``{ns}as:{state}``), so retrying 100,000
    failed jobs of a million reads 100,000 records, not a million; no state (or
    ``succeeded``) walks the tenant's or every tenant's index. Each walk reads only the
    fields it checks, ``chunk`` records per round trip.
    """
    search = Search(ledger)
    tops = [t for t in (f.created_before, as_of) if t is not None]
    # BulkFilter's created_after is inclusive, JobFilter's exclusive
    after = None if f.created_after is None else math.nextafter(f.created_after, -math.inf)
    for state in f.states or (None,):
        jf = JobFilter(tenant=f.tenant, state=state, type=f.type, queue=f.queue,
                       created_after=after, created_before=min(tops) if tops else None)
        names = ("type", "tenant") + jf.residual()
        with unavailable("cannot read from Redis"):
            for job_id, _, rec in search._checked(search.index(jf), jf, None, names, chunk):
                if rec is None or rec["type"].startswith(BUILTIN_PREFIX) or (
                        f.tenant is None and rec["tenant"] == OPERATOR):
                    continue
                yield job_id


def _check_action(action: Any) -> str:
    if action not in ACTIONS:
        raise InvalidJob(f"unknown action {action!r}", {"action": [
            f"must be one of: {', '.join(ACTIONS)}"]})
    return action


class Bulk:
    """Bulk operations on a client's ledger (``client.bulk()``)."""

    def __init__(self, client: Any):
        self.client = client

    def submit(self, action: str, filter: BulkFilter | dict | None = None, *,
               actor: Any = None, owner: str | None = None) -> JobInfo:
        """Enqueue the operation: a ``switchyard.bulk`` job, returned as enqueued.

        ``owner`` is the tenant the operation's own job belongs to (who may read it);
        by default the filter's tenant, or ``*`` (operators only) for every tenant.
        With ``actor`` (an API key, or see :func:`adapters.audit.actor_of`) the request
        and, once it ends, the outcome go to the audit log. Its result, once it ends:
        ``{"action", "filter", "matched", "done", "skipped": {reason: n},
        "errors": {reason: n}}`` (a cancel adds ``requested``: running jobs asked to
        stop). ``InvalidJob`` names a bad field ``action`` or ``filter.<field>``.
        """
        f = check_filter(filter)
        _check_action(action)
        if action in _NEEDS:
            self.client.require(_NEEDS[action], f"bulk {action}")
        client, now = self.client, time.time()
        settings = client.settings
        payload = {"action": action, "filter": f.as_dict(), "as_of": now,
                   "actor": actor_of(actor) if actor is not None else None}
        rec = build_record(client, BULK_TYPE, payload,
                           JobOptions(queue=settings.default_queue, timeout=settings.max_timeout),
                           owner or (f.tenant if f.tenant is not None else OPERATOR), now,
                           builtin=True)
        if actor is not None:
            # before the job exists: a worker that runs it at once writes its outcome
            # ("bulk.<action>.finished") after the request, never before it
            client.audit().record(actor, f"bulk.{action}", {"filter": f.as_dict()},
                                  detail={"operation": rec["id"]})
        client._write([rec], now, batch=False)
        return client.get(rec["id"])

    def count(self, action: str, filter: BulkFilter | dict | None = None,
              limit: int = 10_000) -> int:
        """How many jobs the operation would act on now, counted up to ``limit`` (a
        preview for a confirmation page)."""
        f = check_filter(filter).for_action(_check_action(action))
        return sum(1 for _ in itertools.islice(matching_ids(self.client.ledger, f), limit))
