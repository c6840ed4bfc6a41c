"""What the pages read and do, through the client's public calls: its indexed reads
(``client.search()``), queues (``client.queues()``), audit log (``client.audit()``) and
bulk actions (``client.bulk()``). Nothing here knows the web.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from typing import Any

from adapters import Capability, JobInfo, JobNotFound, JobState

__all__ = ["Filters", "features", "page", "find", "counts", "failure_groups", "queue_rows",
           "audit", "audit_entries", "bulk_start", "schedules", "STATES"]

STATES = tuple(s.value for s in JobState)
_CURSOR = re.compile(r"[0-9][0-9.eE+-]{0,40}(\|[A-Za-z0-9_.:-]{0,200})?")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_FIELD = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def features(client) -> dict[str, bool]:
    """What the engine lets the pages offer (an engine without pausing shows no pause)."""
    return {"search": True, "audit": True, "bulk": True,
            "queues": client.supports(Capability.PAUSE_QUEUES)}


def _when(text: str, field: str, problems: list[str]) -> float | None:
    """A ``datetime-local`` value (read as UTC) or ISO time; None and a problem if not one."""
    if not text:
        return None
    try:
        at = datetime.datetime.fromisoformat(text[:40])
    except ValueError:
        problems.append(f"{field}: not a date and time")
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.timezone.utc)
    return at.timestamp()


@dataclasses.dataclass(frozen=True)
class Filters:
    """The jobs a list (or a bulk action) is about, from a query string or a form."""

    tenant: str | None = None
    state: str | None = None
    type: str | None = None
    queue: str | None = None
    after: float | None = None
    before: float | None = None
    payload: tuple[str, str] | None = None
    """``field=value``: a top-level payload field (``"42"`` also matches the number 42)."""
    cursor: str | None = None
    problems: tuple[str, ...] = ()

    @classmethod
    def parse(cls, args, tenant: str | None) -> "Filters":
        """Read ``args`` (a tenant's key: its own tenant, whatever ``args`` say); whatever
        is not a valid value is dropped with a word in ``problems``, never an error."""
        problems: list[str] = []

        def name(field):
            value = (args.get(field) or "").strip()
            if value and not _NAME.fullmatch(value):
                problems.append(f"{field}: letters, digits, '_', '.', ':' or '-' only")
                return None
            return value or None

        state = (args.get("state") or "").strip() or None
        if state is not None and state not in STATES:
            problems.append("state: not a state")
            state = None
        payload = None
        raw = (args.get("payload") or "").strip()[:300]
        if raw:
            field, sep, value = raw.partition("=")
            if not sep or not _FIELD.fullmatch(field.strip()):
                problems.append("payload: give field=value (a top-level field of the payload)")
            else:
                payload = (field.strip(), value.strip())
        cursor = (args.get("cursor") or "").strip() or None
        if cursor is not None and not _CURSOR.fullmatch(cursor):
            problems.append("cursor: not one this page gave out")
            cursor = None
        return cls(tenant=tenant if tenant is not None else name("tenant"), state=state,
                   type=name("type"), queue=name("queue"),
                   after=_when((args.get("after") or "").strip(), "after", problems),
                   before=_when((args.get("before") or "").strip(), "before", problems),
                   payload=payload, cursor=cursor, problems=tuple(problems))

    def query(self, **changes) -> dict[str, str]:
        """The filter as query arguments (for links: the next page, a bulk action)."""
        f = dataclasses.replace(self, **changes)

        def iso(at):
            return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S") if at is not None else None
        out = {"tenant": f.tenant, "state": f.state, "type": f.type, "queue": f.queue,
               "after": iso(f.after), "before": iso(f.before), "cursor": f.cursor,
               "payload": f"{f.payload[0]}={f.payload[1]}" if f.payload else None}
        return {k: v for k, v in out.items() if v}

    def job_filter(self):
        """The filter as ``adapters.search.JobFilter`` (exclusive created bounds)."""
        from adapters.search import JobFilter

        return JobFilter(tenant=self.tenant, state=self.state, type=self.type,
                         queue=self.queue, created_after=self.after,
                         created_before=self.before,
                         payload=(self.payload,) if self.payload else ())


def page(client, f: Filters, limit: int = 50) -> tuple[list[JobInfo], str | None, str | None]:
    """``(jobs, next cursor, note)``: newest first, from the ledger's indexes."""
    try:
        items, cursor = client.search().page(f.job_filter(), limit=limit, cursor=f.cursor)
    except ValueError:
        return [], None, "that page is gone; start again from the first"
    return items, cursor, None


def find(client, tenant: str | None, text: str) -> JobInfo | None:
    """The job with id ``text``, else the one a tenant's idempotency key ``text`` names
    (``tenant/key`` for an operator); None for nothing visible to ``tenant``."""
    text = text.strip()[:300]
    if not text:
        return None
    try:
        return client.get(text, tenant=tenant)
    except JobNotFound:
        pass
    owner, key = tenant, text
    if tenant is None:
        owner, sep, key = text.partition("/")
        if not sep:
            return None
    return client.search().by_idempotency_key(owner, key)


def counts(client, tenant: str | None) -> dict[str, int] | None:
    """Jobs per state of the tenant (or of all)."""
    return client.search().counts(tenant)


GROUPS_FOR = 5.0
"""Seconds a web process reuses a grouping that read ``GROUPS_HEAVY`` failed jobs or more
(up to 5000: on a big ledger the page says how old it is; a small one is always fresh)."""
GROUPS_HEAVY = 1000
_groups: dict[tuple[int, str | None], tuple[float, dict]] = {}


def failure_groups(client, tenant: str | None) -> dict:
    """Failed jobs grouped by type and error type, at most ``GROUPS_FOR`` seconds old,
    with ``as_of`` (Unix seconds)."""
    key = (id(client), tenant)
    now = time.time()
    held = _groups.get(key)
    if held is None or now - held[0] > GROUPS_FOR:
        held = (now, {**_failure_groups(client, tenant), "as_of": now})
        if held[1].get("scanned", 0) >= GROUPS_HEAVY:
            if len(_groups) > 256:
                _groups.clear()
            _groups[key] = held
    return held[1]


def _failure_groups(client, tenant: str | None) -> dict | None:
    """Failed jobs grouped by type and error type."""
    return client.search().failure_groups(tenant, limit=50)


def queue_rows(client) -> list[dict[str, Any]]:
    """Per queue: name, paused, queued, oldest age (s), running, paused by/at."""
    return [{"name": q.name, "paused": q.paused, "queued": q.queued,
                 "oldest_age": getattr(q, "oldest_queued_age", None),
                 "per_minute": q.finished_per_minute, "waiting": q.waiting,
                 "running": getattr(q, "running", None),
                 "paused_by": getattr(q, "paused_by", None)} for q in client.queues().list()]


def audit(client, actor, action: str, target: str, count: int | None = None,
          detail: str | None = None) -> None:
    """Record a page's action in the audit log; ``actor`` is the signed-in ``ApiKey``."""
    client.audit().record(actor, action, target, count=count, detail=detail)


def audit_entries(client, limit: int, before: str | None, tenant: str | None) -> list:
    """The audit log, newest first (a tenant's own entries; every entry for ``None``)."""
    entries, _ = client.audit().list(limit, before=before, tenant=tenant)
    return list(entries)


def bulk_start(client, action: str, f: Filters, actor):
    """Start a bulk action over the filter's jobs (recorded in the audit log as
    ``actor``'s): the operation's JobInfo."""
    wanted = {"tenant": f.tenant, "state": f.state, "type": f.type, "queue": f.queue,
              "created_after": f.after, "created_before": f.before}
    return client.bulk().submit(action, {k: v for k, v in wanted.items() if v is not None},
                                actor=actor)


IN_HAND = 200
"""The most running jobs the Workers page lists."""


def in_hand(client) -> list[JobInfo]:
    """The jobs running now (every tenant's, newest first), each naming the worker process
    (``host:pid``) that runs it."""
    from adapters import JobFilter

    return client.search().page(JobFilter(state="started"), limit=IN_HAND)[0]


def schedules(client, tenant: str | None) -> list:
    """The tenant's schedules (every tenant's for an operator), by tenant and name."""
    store = client.schedules()
    tenants = [tenant] if tenant is not None else store.tenants()
    return [s for t in tenants for s in store.list(t)]
