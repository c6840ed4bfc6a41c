"""The audit log: who did what to which jobs, when, and to how many.

Every action a person takes through the API or the operator's pages -- a cancel, a
retry, a bulk operation, a queue paused, a schedule changed -- is one entry of a capped
Redis stream, newest last (``XADD ... MAXLEN ~ 100000``):

    {ns}audit              every entry (what an operator's key reads)
    {ns}audit:{tenant}     the entries of that tenant's keys (what the tenant reads)

An entry's fields are strings: ``at`` (Unix seconds), ``label`` and ``role`` of the
actor's API key, ``tenant`` (``*`` for an operator's key), ``action`` (e.g.
``job.retry``, ``bulk.delete``), ``target`` (JSON: ``{"job": id}``, ``{"filter": {...}}``,
``{"queue": name}``, ``{"schedule": name}``), ``count`` (how many jobs, ``""`` if not
one number) and ``detail`` (JSON, ``""`` if none). The stream's own id orders them and
is the paging cursor.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .types import utc

__all__ = ["Audit", "MAX_ENTRIES", "OPERATOR", "actor_of"]

MAX_ENTRIES = 100_000
"""About how many entries each stream keeps (``MAXLEN ~``): the oldest go first."""
OPERATOR = "*"
"""The tenant of an operator's key (as ``API_KEYS`` spells it), whose entries only
operators read."""


def actor_of(actor: Any) -> dict[str, str]:
    """``{"label", "role", "tenant"}`` of an API key (anything with ``label``, ``role`` and
    ``tenant``), a mapping of those, or a bare name (an operator's, e.g. a script's)."""
    if isinstance(actor, str):
        return {"label": actor, "role": "operator", "tenant": OPERATOR}
    get = actor.get if isinstance(actor, dict) else (lambda name, default: getattr(
        actor, name, default))
    return {"label": str(get("label", "") or ""), "role": str(get("role", "") or ""),
            "tenant": str(get("tenant", "") or OPERATOR)}


def _before(cursor: str) -> str | None:
    """The stream id just below ``cursor`` (``None`` below the very first one), so a page
    starts strictly after the previous page's last entry."""
    ms, _, seq = cursor.partition("-")
    if not (ms.isdigit() and (seq.isdigit() or not seq)) or len(cursor) > 41:
        raise ValueError(f"not a cursor of the audit log: {cursor[:50]!r}")
    ms, seq = int(ms), int(seq or 0)
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{2 ** 64 - 1}" if ms else None


class Audit:
    """The audit log on a client's ledger Redis (``client.audit()``)."""

    def __init__(self, client: Any):
        self.r = client.redis
        self.ns = client.settings.home_namespace

    def _stream(self, tenant: str | None) -> str:
        return f"{self.ns}audit" if tenant is None else f"{self.ns}audit:{tenant}"

    def record(self, actor: Any, action: str, target: Any, count: int | None = None,
               detail: Any = None) -> str:
        """Add one entry; returns its id. ``actor`` as :func:`actor_of` takes it;
        ``target`` and ``detail`` anything JSON."""
        who = actor_of(actor)
        fields = {"at": repr(time.time()), **who, "action": action,
                  "target": json.dumps(target, separators=(",", ":")),
                  "count": "" if count is None else str(int(count)),
                  "detail": "" if detail is None else json.dumps(detail, separators=(",", ":"))}
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self._stream(None), fields, maxlen=MAX_ENTRIES, approximate=True)
        if who["tenant"] != OPERATOR:
            pipe.xadd(self._stream(who["tenant"]), fields, maxlen=MAX_ENTRIES, approximate=True)
        return pipe.execute()[0]

    def list(self, limit: int = 50, before: str | None = None,
             tenant: str | None = None) -> tuple[list[dict], str | None]:
        """``(entries, next_cursor)``, newest first: every entry, or the entries of
        ``tenant``'s keys; ``before`` is the ``next_cursor`` of the previous page (an
        entry id: the page starts below it); ``next_cursor`` is ``None`` on the last page.

        Each entry: ``{"id", "at" (aware datetime), "actor": {"label", "role",
        "tenant"}, "action", "target", "count" (int or None), "detail"}``."""
        top = "+" if before is None else _before(before)
        if top is None:
            return [], None
        raw = self.r.xrevrange(self._stream(tenant), top, "-", count=limit + 1)
        entries = [_entry(entry_id, fields) for entry_id, fields in raw[:limit]]
        return entries, (entries[-1]["id"] if len(raw) > limit else None)


def _entry(entry_id: str, f: dict[str, str]) -> dict:
    return {"id": entry_id, "at": utc(float(f.get("at") or 0)),
            "actor": {"label": f.get("label", ""), "role": f.get("role", ""),
                      "tenant": f.get("tenant", "")},
            "action": f.get("action", ""),
            "target": json.loads(f["target"]) if f.get("target") else None,
            "count": int(f["count"]) if f.get("count") else None,
            "detail": json.loads(f["detail"]) if f.get("detail") else None}
