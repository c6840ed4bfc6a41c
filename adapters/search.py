"""Indexed reads of the ledger: filtered pages, every match, lookups, counts, failures
grouped, per-minute counters. ``client.search()`` hands out one.

The indexes are kept by the ledger's scripts (``adapters/lua/common.lua``, ``move``),
all sorted sets scored by creation time:

    {ns}t:{tenant}            a tenant's jobs          {ns}all         every tenant's jobs
    {ns}ts:{tenant}:{state}   a tenant's jobs in state {ns}as:{state}  every tenant's, in state
    {ns}ty:{tenant}:{type}    a tenant's jobs of type  {ns}aty:{type}  every tenant's, of type

for every state but ``succeeded``: that one is dense (most jobs), so its pages walk
``t:{tenant}`` / ``all`` and keep the succeeded ones, and its count is the total less
the other states'. A filter picks the narrowest index (of its state's and its type's the
shorter, else the tenant's or ``all``), bounds the walk by the created range, and checks what the index does not
say (type, queue, payload fields, succeeded) on the records. ``{ns}m:{minute}`` holds
per-minute outcomes and run-time buckets (``record.DURATION_BUCKETS``), ~25 h.

Records whose TTL ran out leave the indexes at the maintenance tick (``{ns}gone``); a
walk that meets one first drops it too, as ``LedgerQueries.page`` does.

On a sharded ledger (``adapters/shards.py``) every shard keeps these indexes for its own
jobs: an index is named by its key in shard 0 (:meth:`Search.index`), a walk reads the
same index of every shard and merges them newest first (``merge_newest``; a cursor is a
position in all of them), and counts, failure groups and minutes add the shards up.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any, Iterator

from . import record, scripts
from .errors import unavailable
from .ledger_queries import merge_newest
from .types import JobInfo

__all__ = ["Search", "Searching", "JobFilter", "STATES", "INDEXED_STATES"]

STATES = ("scheduled", "queued", "started", "retrying", "succeeded", "failed", "canceled")
INDEXED_STATES = ("scheduled", "queued", "started", "retrying", "failed", "canceled")
"""States with an index of their own (``INDEXED`` in ``common.lua``)."""

_READ = "cannot read from Redis"
_CHUNK = 200


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Which jobs: every field that is set must match (``tenant=None``: every tenant)."""

    tenant: str | None = None
    state: str | None = None
    type: str | None = None
    queue: str | None = None
    created_after: float | None = None
    """Unix seconds; only jobs created strictly after."""
    created_before: float | None = None
    """Unix seconds; only jobs created strictly before."""
    payload: tuple[tuple[str, Any], ...] = ()
    """``(field, value)`` pairs of top-level payload fields; a string value also matches
    a number or boolean spelled so in JSON (``"42"`` matches ``42``)."""

    def __post_init__(self):
        if isinstance(self.payload, dict):
            object.__setattr__(self, "payload", tuple(sorted(self.payload.items())))
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}")

    def residual(self) -> tuple[str, ...]:
        """The record fields the index cannot answer for this filter."""
        names = [n for n, v in (("type", self.type), ("queue", self.queue)) if v is not None]
        if self.state is not None and self.state not in INDEXED_STATES:
            names.append("state")
        if self.payload:
            names.append("payload")
        return tuple(names)

    def matches(self, rec: dict, state_answered: bool = True) -> bool:
        """Whether a stored record (its strings) passes the residual checks
        (``state_answered``: the walk is over the filter's state index)."""
        if self.type is not None and rec.get("type") != self.type:
            return False
        if self.queue is not None and rec.get("queue") != self.queue:
            return False
        if self.state is not None and (self.state not in INDEXED_STATES or not state_answered) \
                and rec.get("state") != self.state:
            return False
        if self.payload:
            try:
                payload = json.loads(rec.get("payload") or "{}")
            except ValueError:
                return False
            for name, want in self.payload:
                if name not in payload:
                    return False
                have = payload[name]
                if have != want and not (isinstance(want, str) and not isinstance(have, str)
                                         and json.dumps(have) == want):
                    return False
        return True


def _position(cursor: str | None) -> tuple[float | None, str | None]:
    if not cursor:
        return None, None
    raw_score, _, raw_after = cursor.partition("|")
    return float(raw_score), (raw_after or None)


class Search:
    """Reads over the indexes of one ledger (:class:`adapters.ledger.Ledger`)."""

    def __init__(self, ledger):
        self.ledger = ledger
        self.r = ledger.r
        self.ns = ledger.ns
        self.shards = ledger.shards
        self._groups = self.r.register_script(scripts.source("failure_groups"))
        self._minutes = self.r.register_script(scripts.source("minutes"))

    # -- which index ------------------------------------------------------------------
    def index(self, f: JobFilter) -> str:
        """The key the filter walks (shard 0's, on a sharded ledger: every shard has one of
        that name): of its state's index and its type's the shorter."""
        by_state = by_type = None
        if f.state in INDEXED_STATES:
            by_state = (f"{self.ns}as:{f.state}" if f.tenant is None
                        else f"{self.ns}ts:{f.tenant}:{f.state}")
        if f.type is not None:
            by_type = (f"{self.ns}aty:{f.type}" if f.tenant is None
                       else f"{self.ns}ty:{f.tenant}:{f.type}")
        if by_state and by_type:
            in_state, of_type = self._sizes([by_state, by_type])
            return by_type if of_type < in_state else by_state
        return by_state or by_type or (
            f"{self.ns}all" if f.tenant is None else f"{self.ns}t:{f.tenant}")

    def _in_shards(self, index: str) -> list[str]:
        """The index ``index`` (shard 0's key) of every shard."""
        suffix = index[len(self.ns):]
        return [ns + suffix for ns in self.shards.namespaces]

    def _sizes(self, indexes: list[str]) -> list[int]:
        """The ZCARD of each index, summed over the shards, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for index in indexes:
            for key in self._in_shards(index):
                pipe.zcard(key)
        answers = pipe.execute()
        n = self.shards.count
        return [sum(answers[i * n:(i + 1) * n]) for i in range(len(indexes))]

    def _walk(self, index: str, f: JobFilter, cursor: str | None, chunk: int
              ) -> Iterator[tuple[str, float]]:
        """``(id, score)`` newest first after ``cursor`` within the created range, of
        every shard's ``index``."""
        return merge_newest(self._walk_one(key, f, cursor, chunk) for key in self._in_shards(index))

    def _walk_one(self, index: str, f: JobFilter, cursor: str | None, chunk: int
                  ) -> Iterator[tuple[str, float]]:
        """``(id, score)`` of one shard's index newest first after ``cursor`` within the
        created range.

        A position is a score and an id (jobs of one batch share a score): members of
        that score come in descending id order, then those below it."""
        score, after = _position(cursor)
        if f.created_before is not None and (score is None or score >= f.created_before):
            score, after = f.created_before, None
        bottom = "-inf" if f.created_after is None else f"({f.created_after!r}"
        while True:
            if score is None:
                top = "+inf"
            else:
                if after is not None and (f.created_after is None or score > f.created_after):
                    for member in self.r.zrevrangebyscore(index, repr(score), repr(score)):
                        if member < after:
                            yield member, score
                top = f"({score!r}"
            batch = self.r.zrevrangebyscore(index, top, bottom, start=0, num=chunk,
                                            withscores=True)
            yield from batch
            if len(batch) < chunk:
                return
            after, score = batch[-1]

    def _checked(self, index: str, f: JobFilter, cursor: str | None, names: tuple[str, ...] | None,
                 chunk: int) -> Iterator[tuple[str, float, dict | None]]:
        """``(id, score, record or None)`` of every entry walked; ``None`` for an entry that
        does not match. ``names`` None reads the whole record, else those fields only.
        Entries whose record is gone are dropped from ``index``."""
        walker = self._walk(index, f, cursor, chunk)
        state_answered = index[len(self.ns):].startswith(("ts:", "as:"))
        suffix = index[len(self.ns):]
        while True:
            batch = [entry for _, entry in zip(range(chunk), walker)]
            if not batch:
                return
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in batch:
                if names is None:
                    pipe.hgetall(self.ledger.key(job_id))
                else:
                    pipe.hmget(self.ledger.key(job_id), ("state",) + names)
            answers = pipe.execute()
            gone = []
            for (job_id, score), raw in zip(batch, answers):
                rec = raw if names is None else dict(zip(("state",) + names, raw))
                if not rec or rec.get("state") is None:
                    gone.append(job_id)
                    yield job_id, score, None
                else:
                    yield job_id, score, rec if f.matches(rec, state_answered) else None
            for ns, ids in self.shards.by_shard(gone).items():
                self.r.zrem(ns + suffix, *ids)
            if len(batch) < chunk:
                return

    # -- pages and every match --------------------------------------------------------
    def page(self, f: JobFilter, *, limit: int = 50, cursor: str | None = None,
             scan_cap: int = 5000) -> tuple[list[JobInfo], str | None]:
        """Newest-first jobs matching ``f`` after ``cursor``; ``(jobs, next_cursor)``.

        The cursor is ``"<score>|<id>"`` of the last job handed out (a bare score means
        "below that score"), ``None`` on the last page. An index answers the state and
        the created range exactly; the other filters (type, queue, payload, succeeded)
        are checked on the records, at most ``scan_cap`` of them per page: past that the
        page may be short and its cursor points where the walk stopped.
        """
        # with checks to make, the walk reads only the fields checked, then the matches
        names = f.residual() or None
        chunk = min(max(limit, 50) * 4, 1000) if names else limit + 1
        with unavailable(_READ):
            found, position, scanned, more = [], None, 0, False
            for job_id, score, rec in self._checked(self.index(f), f, cursor, names, chunk):
                if len(found) == limit or scanned >= scan_cap:
                    more = True
                    break
                scanned += 1
                position = (job_id, score)
                if rec is not None:
                    found.append(job_id if names else rec)
            if names:
                found = [rec for rec in self.ledger.load_many(found) if rec]
        next_cursor = f"{position[1]!r}|{position[0]}" if more else None
        return [JobInfo.from_record(r) for r in found], next_cursor

    def iter_ids(self, f: JobFilter, *, cursor: str | None = None,
                 chunk: int = 500) -> Iterator[str]:
        """Every id matching ``f``, newest first, without a scan cap (for bulk actions:
        it reads only the fields the filter needs, ``chunk`` records per round trip).
        Jobs that change state meanwhile may be met or missed, as in any live walk."""
        names = f.residual()
        with unavailable(_READ):
            for job_id, _, rec in self._checked(self.index(f), f, cursor, names, chunk):
                if rec is not None:
                    yield job_id

    # -- lookups ----------------------------------------------------------------------
    def job(self, job_id: str, tenant: str | None = None) -> JobInfo | None:
        """The job (``None`` if unknown, or another tenant's when ``tenant`` is given)."""
        with unavailable(_READ):
            rec = self.ledger.load(job_id)
        if not rec or (tenant is not None and rec.get("tenant") != tenant):
            return None
        return JobInfo.from_record(rec)

    def by_idempotency_key(self, tenant: str, key: str) -> JobInfo | None:
        """The job a tenant's idempotency key names, while the key is kept."""
        with unavailable(_READ):
            stored = self.r.get(self.ledger.idempotency_key(tenant, key))
        return self.job(stored.split(" ", 1)[0], tenant) if stored else None

    # -- counts -----------------------------------------------------------------------
    def counts(self, tenant: str | None = None) -> dict[str, int]:
        """Jobs per state now (every state, and ``total``), of a tenant or of all: one
        ZCARD per index, ``succeeded`` being the total less the rest."""
        indexes = [f"{self.ns}all" if tenant is None else f"{self.ns}t:{tenant}"]
        indexes += [self.index(JobFilter(tenant=tenant, state=state)) for state in INDEXED_STATES]
        with unavailable(_READ):
            total, *rest = self._sizes(indexes)
        out = dict(zip(INDEXED_STATES, rest))
        out["succeeded"] = max(0, total - sum(rest))
        return {**{s: out[s] for s in STATES}, "total": total}

    def failure_groups(self, tenant: str | None = None, *, limit: int = 10,
                       scan: int = 5000) -> dict:
        """The failed jobs grouped by ``(type, error type)``, largest groups first.

        Reads the newest ``scan`` failed jobs at most; ``complete`` says whether that
        was all of them (``total`` is the failed index's size either way). Each group:
        ``type``, ``error_type``, ``count``, ``latest_at`` (creation time of its newest
        job), ``sample_id`` and ``message`` (that job's)."""
        index = self.index(JobFilter(tenant=tenant, state="failed"))
        with unavailable(_READ):
            if self.shards.count == 1:
                pipe = self.r.pipeline(transaction=False)
                pipe.zcard(index)
                self._groups(keys=[self.ns], args=[self.ns, repr(time.time()), index,
                                                   max(1, scan)], client=pipe)
                total, flat = pipe.execute()
                answers = [flat]
            else:  # each shard's newest `scan` (a cluster's pipeline runs no script)
                total = self._sizes([index])[0]
                answers = [self._groups(keys=[ns], args=[ns, repr(time.time()), key, max(1, scan)])
                           for ns, key in zip(self.shards.namespaces, self._in_shards(index))]
        scanned, merged = 0, {}
        for flat in answers:
            scanned += int(flat[0])
            for i in range(1, len(flat), 6):
                g = {"type": flat[i], "error_type": flat[i + 1], "count": int(flat[i + 2]),
                     "latest_at": float(flat[i + 3]), "sample_id": flat[i + 4],
                     "message": flat[i + 5]}
                seen = merged.get((g["type"], g["error_type"]))
                if seen is None:
                    merged[(g["type"], g["error_type"])] = g
                else:
                    newest = g if g["latest_at"] > seen["latest_at"] else seen
                    merged[(g["type"], g["error_type"])] = {**newest,
                                                            "count": seen["count"] + g["count"]}
        top = sorted(merged.values(), key=lambda g: (-g["count"], -g["latest_at"]))[:limit]
        return {"groups": top, "scanned": scanned, "total": total,
                "complete": scanned >= total}

    # -- per minute -------------------------------------------------------------------
    def minutes(self, since: float, until: float | None = None) -> list[dict]:
        """One row per minute in ``[since, until)`` (default until now), oldest first:
        ``minute`` (its start, Unix seconds), ``succeeded``, ``failed`` (jobs that ended
        so), ``retried``, ``canceled`` (attempts that ended so), ``ran`` (attempts with a
        run time) and ``p50``/``p95`` of their run time in seconds (``None`` without
        any), interpolated within the duration buckets as Prometheus does. Counters are
        kept about 25 hours."""
        until = time.time() if until is None else until
        starts = list(range(int(since // 60) * 60, int(math.ceil(until / 60)) * 60, 60))
        if not starts:
            return []
        with unavailable(_READ):
            flats = [self._minutes(keys=[ns], args=[ns, repr(time.time()), starts[0], len(starts),
                                                    *_MINUTE_FIELDS])
                     for ns in self.shards.namespaces]
        flat = [sum(int(v) for v in values) for values in zip(*flats)]
        width = len(_MINUTE_FIELDS)
        return [self._row(start, flat[i * width:(i + 1) * width]) for i, start in enumerate(starts)]

    @staticmethod
    def _row(start: int, values: list[int]) -> dict:
        succeeded, failed, retried, canceled, *counts = values
        ran = sum(counts)
        return {"minute": float(start), "succeeded": succeeded, "failed": failed,
                "retried": retried, "canceled": canceled, "ran": ran,
                "p50": _quantile(0.5, counts, ran), "p95": _quantile(0.95, counts, ran)}


_MINUTE_FIELDS = ("succeeded", "failed", "retry", "canceled",
                  *(f"le|{b}" for b in record.DURATION_BUCKETS), "le|+Inf")


def _quantile(q: float, counts: list[int], total: int) -> float | None:
    """The ``q`` quantile of a bucketed histogram (per-bucket counts, the last one +Inf)."""
    if not total:
        return None
    bounds = [float(b) for b in record.DURATION_BUCKETS]
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / n
        seen += n
    return bounds[-1]


class Searching:
    """The client's accessor (mixed into :class:`adapters.client.Switchyard`)."""

    def search(self) -> Search:
        """Indexed reads of the ledger: filtered pages and walks, lookups, counts,
        failures grouped, per-minute counters."""
        return Search(self.ledger)
