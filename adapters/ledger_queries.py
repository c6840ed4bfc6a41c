"""The ledger's reads: job records, their history, the tenant's pages, counters, workers.

No read changes a job (``page`` only drops index entries of records that expired);
every state change is a script, in ``adapters/ledger.py``.
"""

from __future__ import annotations

import json
import time

import redis

from . import record
from .types import utc

__all__ = ["LedgerQueries"]


class LedgerQueries:
    """The read side of :class:`adapters.ledger.Ledger`."""

    r: redis.Redis
    ns: str

    def key(self, job_id: str) -> str:
        return f"{self.ns}job:{job_id}"

    def load(self, job_id: str) -> dict[str, str]:
        return self.r.hgetall(self.key(job_id))

    def load_workflow(self, workflow_id: str) -> dict[str, str]:
        return self.r.hgetall(f"{self.ns}wf:{workflow_id}")

    def load_many(self, job_ids: list[str]) -> list[dict[str, str]]:
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.key(job_id))
        return pipe.execute()

    def current_tokens(self, job_ids: list[str]) -> list[str | None]:
        """Each job's current delivery token (``""`` once it ended, ``None`` if unknown)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.key(job_id), "token")
        return pipe.execute()

    def events(self, job_id: str) -> list[dict]:
        """The job's state changes, oldest first (JSON lines in its ``events`` field)."""
        raw = self.r.hget(self.key(job_id), "events")
        if raw is None:  # a record written before the history moved into the hash
            return [json.loads(e) for e in self.r.lrange(self.key(job_id) + ":events", 0, -1)]
        return record.FIELDS["events"].codec.decode(raw)

    def _walk(self, index: str, score: float | None, after: str | None, chunk: int):
        """``(id, score)`` of the index newest first, strictly after position ``(score, after)``.

        Jobs enqueued together share one score (a batch is written with one timestamp),
        so a position is a score *and* an id: members of equal score come in descending
        id order, and the rest of a tie group is read before moving below its score.
        """
        while True:
            if score is None:
                top = "+inf"
            else:
                if after is not None:
                    for member in self.r.zrevrangebyscore(index, repr(score), repr(score)):
                        if member < after:
                            yield member, score
                top = f"({score!r}"
            batch = self.r.zrevrangebyscore(index, top, "-inf", start=0, num=chunk,
                                            withscores=True)
            yield from batch
            if len(batch) < chunk:
                return
            after, score = batch[-1]

    def page(self, tenant: str, *, state: str | None, job_type: str | None, limit: int,
             cursor: str | None, scan_cap: int = 5000) -> tuple[list[dict], str | None]:
        """Newest-first records of ``tenant`` after ``cursor``, filtered.

        The cursor is ``"<score>|<id>"`` of the last job handed out (a bare score, the
        older form, means "below that score"). Scanning stops after ``scan_cap`` index
        entries; the cursor then points there, so a sparse filter pages on instead of
        ending early.
        """
        index = f"{self.ns}t:{tenant}"
        score = after = None
        if cursor:
            raw_score, _, raw_after = cursor.partition("|")
            score, after = float(raw_score), (raw_after or None)
        chunk = max(limit, 100)
        found: list[dict] = []
        scanned = 0
        position: tuple[str, float] | None = None
        walker = self._walk(index, score, after, chunk)
        exhausted = False
        while len(found) < limit and scanned < scan_cap:
            batch = [entry for _, entry in zip(range(chunk), walker)]
            if not batch:
                exhausted = True
                break
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in batch:
                pipe.hgetall(self.key(job_id))
            records = pipe.execute()
            gone = []
            for (job_id, member_score), rec in zip(batch, records):
                scanned += 1
                position = (job_id, member_score)
                if not rec:
                    gone.append(job_id)
                elif (state is None or rec.get("state") == state) and (
                        job_type is None or rec.get("type") == job_type):
                    found.append(rec)
                    if len(found) == limit:
                        break
            if gone:
                self.r.zrem(index, *gone)
            if len(batch) < chunk and len(found) < limit:
                exhausted = True
                break
        if exhausted or position is None:
            return found, None
        return found, f"{position[1]!r}|{position[0]}"

    def created_between(self, tenant: str, start: float, end: float,
                        fields: tuple[str, ...] = ("id", "type", "state", "created_at"),
                        batch: int = 500):
        """Yield ``fields`` of each of ``tenant``'s jobs created in ``[start, end)``, oldest
        first; records that have expired are skipped. Paged by offset, so jobs created
        in the same instant (a batch) are all read."""
        index = f"{self.ns}t:{tenant}"
        offset = 0
        while True:
            ids = self.r.zrangebyscore(index, start, f"({end!r}", start=offset, num=batch)
            if not ids:
                return
            offset += len(ids)
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.key(job_id), fields)
            for values in pipe.execute():
                if any(v is not None for v in values):
                    yield dict(zip(fields, values))
            if len(ids) < batch:
                return

    def tenants(self) -> list[str]:
        """Every tenant with a job index (``{ns}t:*``), by one SCAN of the keyspace.

        Only a walk over every tenant (an operator's bulk operation) asks, so it is paid
        there: a set of tenants kept by the create script would cost every enqueue one
        more command (a single job's 12 would be 13)."""
        prefix = f"{self.ns}t:"
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        return sorted({key[len(prefix):] for key in self.r.scan_iter(match=pattern, count=1000)})

    def stats(self) -> dict[str, float]:
        """Counters since the ledger began: ``enqueued|type|backend``;
        ``ran|type|backend|outcome|le``, attempts that ran, by how they ended (``retry``
        or a final state) and duration bucket (per-bucket, not cumulative);
        ``duration_sum|type|backend``; and ``finished|type|backend|state``, jobs that
        ended without running (canceled or expired while waiting, lost for good).
        Records of older versions may also hold ``duration|type|backend|le``."""
        return {k: float(v) for k, v in self.r.hgetall(f"{self.ns}stats").items()}

    def counts_by_state(self) -> dict[str, int]:
        """Jobs waiting in the ledger right now: ``scheduled`` (due set) and ``running``."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(f"{self.ns}due")
        pipe.zcard(f"{self.ns}leases")
        due, running = pipe.execute()
        return {"scheduled": due, "running": running}

    def backlog(self) -> dict[str, tuple[int, float | None]]:
        """Per queue ever used: ``(jobs queued now, when the oldest of them became
        queued)``, the time ``None`` for an empty queue."""
        queues = sorted(self.r.smembers(f"{self.ns}queues"))
        if not queues:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for name in queues:
            pipe.zcard(f"{self.ns}queued:{name}")
            pipe.zrange(f"{self.ns}queued:{name}", 0, 0, withscores=True)
        answers = pipe.execute()
        return {name: (count, oldest[0][1] if oldest else None)
                for name, count, oldest in zip(queues, answers[::2], answers[1::2])}

    def paused(self) -> dict[str, dict]:
        """The paused queues (``{ns}paused``): ``{queue: {"at": datetime, "by": str | None}}``."""
        out = {}
        for name, raw in sorted(self.r.hgetall(f"{self.ns}paused").items()):
            value = json.loads(raw)
            out[name] = {"at": utc(float(value["at"])), "by": value.get("by")}
        return out

    def workers(self, ttl: float) -> list[dict]:
        """Workers seen within ``ttl`` seconds (each with its ``id`` too)."""
        ids = self.r.zrangebyscore(f"{self.ns}workers", time.time() - ttl, "+inf")
        pipe = self.r.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(f"{self.ns}worker:{worker_id}")
        return [{**w, "id": worker_id} for worker_id, w in zip(ids, pipe.execute()) if w]
