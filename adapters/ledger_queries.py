"""The ledger's reads: job records, their history, the tenant's pages, counters, workers.

No read changes a job (``page`` only drops index entries of records that expired);
every state change is a script, in ``adapters/ledger.py``.

On a sharded ledger (``adapters/shards.py``) a read of one job goes to its shard; a read
over many (a tenant's page, counters, backlogs) reads every shard and merges: pages by
``(creation time, id)``, the order every shard's index keeps, so a cursor means the same
position in every shard and paging goes on across them.
"""

from __future__ import annotations

import heapq
import json
import re
import time

import redis

from . import record
from .types import utc

__all__ = ["LedgerQueries", "merge_newest"]


def merge_newest(walks):
    """One newest-first walk of ``(id, score)`` out of one per shard, each newest first
    (equal scores by descending id, as ZREVRANGEBYSCORE gives them)."""
    walks = list(walks)
    if len(walks) == 1:
        return walks[0]
    return heapq.merge(*walks, key=lambda entry: (entry[1], entry[0]), reverse=True)


class LedgerQueries:
    """The read side of :class:`adapters.ledger.Ledger`."""

    r: redis.Redis
    ns: str
    s: "AdapterSettings"  # noqa: F821 - set by the Ledger
    shards: "Shards"  # noqa: F821 - adapters.shards, set by the Ledger

    def key(self, job_id: str) -> str:
        return f"{self.shards.ns(job_id)}job:{job_id}"

    def load(self, job_id: str) -> dict[str, str]:
        return self.r.hgetall(self.key(job_id))

    def load_workflow(self, workflow_id: str) -> dict[str, str]:
        return self.r.hgetall(f"{self.shards.ns(workflow_id)}wf:{workflow_id}")

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
        score = after = None
        if cursor:
            raw_score, _, raw_after = cursor.partition("|")
            score, after = float(raw_score), (raw_after or None)
        chunk = max(limit, 100)
        found: list[dict] = []
        scanned = 0
        position: tuple[str, float] | None = None
        walker = merge_newest(self._walk(f"{ns}t:{tenant}", score, after, chunk)
                              for ns in self.shards.namespaces)
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
            for ns, ids in self.shards.by_shard(gone).items():
                self.r.zrem(f"{ns}t:{tenant}", *ids)
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
        first (every shard's, merged); records that have expired are skipped."""
        walks = [self._created_in(ns, tenant, start, end, fields, batch)
                 for ns in self.shards.namespaces]
        if len(walks) == 1:
            yield from (values for _, values in walks[0])
            return
        yield from (values for _, values in heapq.merge(*walks, key=lambda e: e[0]))

    def _created_in(self, ns: str, tenant: str, start: float, end: float,
                    fields: tuple[str, ...], batch: int):
        """``(score, fields)`` of one shard's jobs of ``tenant`` in ``[start, end)``, oldest
        first. Paged by offset, so jobs created in the same instant (a batch) are all read."""
        index = f"{ns}t:{tenant}"
        offset = 0
        while True:
            entries = self.r.zrangebyscore(index, start, f"({end!r}", start=offset, num=batch,
                                           withscores=True)
            if not entries:
                return
            offset += len(entries)
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in entries:
                pipe.hmget(self.key(job_id), fields)
            for (_, score), values in zip(entries, pipe.execute()):
                if any(v is not None for v in values):
                    yield score, dict(zip(fields, values))
            if len(entries) < batch:
                return

    def tenants(self) -> list[str]:
        """Every tenant with a job index (``{ns}t:*``), by one SCAN of the keyspace.

        Only a walk over every tenant (an operator's bulk operation) asks, so it is paid
        there: a set of tenants kept by the create script would cost every enqueue one
        more command (a single job's 12 would be 13)."""
        def glob(text: str) -> str:
            return "".join("\\" + c if c in "*?[]\\" else c for c in text)

        if self.shards.count == 1:
            prefix = f"{self.ns}t:"
            return sorted({key[len(prefix):]
                           for key in self.r.scan_iter(match=glob(prefix) + "*", count=1000)})
        base = self.s.namespace  # one walk of the keyspace for every shard: sy:{*}:t:*
        shape = re.compile(re.escape(base) + r"\{\d+\}:t:(.*)", re.S)
        keys = self.r.scan_iter(match=glob(base) + "{*}:t:*", count=1000)
        return sorted({m.group(1) for m in map(shape.fullmatch, keys) if m})

    def stats(self) -> dict[str, float]:
        """Counters since the ledger began: ``enqueued|type|backend``;
        ``ran|type|backend|outcome|le``, attempts that ran, by how they ended (``retry``
        or a final state) and duration bucket (per-bucket, not cumulative);
        ``duration_sum|type|backend``; and ``finished|type|backend|state``, jobs that
        ended without running (canceled or expired while waiting, lost for good).
        Records of older versions may also hold ``duration|type|backend|le``."""
        out: dict[str, float] = {}
        for ns in self.shards.namespaces:
            for k, v in self.r.hgetall(f"{ns}stats").items():
                out[k] = out.get(k, 0.0) + float(v)
        return out

    def counts_by_state(self) -> dict[str, int]:
        """Jobs waiting in the ledger right now: ``scheduled`` (due set) and ``running``."""
        pipe = self.r.pipeline(transaction=False)
        for ns in self.shards.namespaces:
            pipe.zcard(f"{ns}due")
            pipe.zcard(f"{ns}leases")
        answers = pipe.execute()
        return {"scheduled": sum(answers[::2]), "running": sum(answers[1::2])}

    def backlog(self, queues: list[str] | None = None) -> dict[str, tuple[int, float | None]]:
        """Per queue ever used (or of ``queues``): ``(jobs queued now, when the oldest of
        them became queued)``, the time ``None`` for an empty queue."""
        queues = sorted(self.queue_names()) if queues is None else queues
        if not queues:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for name in queues:
            for ns in self.shards.namespaces:
                pipe.zcard(f"{ns}queued:{name}")
                pipe.zrange(f"{ns}queued:{name}", 0, 0, withscores=True)
        answers = iter(pipe.execute())
        out = {}
        for name in queues:
            count, oldest = 0, None
            for _ in self.shards.namespaces:
                n, first = next(answers), next(answers)
                count += n
                if first and (oldest is None or first[0][1] < oldest):
                    oldest = first[0][1]
            out[name] = (count, oldest)
        return out

    def queue_names(self) -> set[str]:
        """Every queue a job was ever enqueued to (or that was paused), of every shard."""
        names: set[str] = set()
        for ns in self.shards.namespaces:
            names |= self.r.smembers(f"{ns}queues")
        return names

    def paused(self) -> dict[str, dict]:
        """The paused queues (``{ns}paused``): ``{queue: {"at": datetime, "by": str | None}}``."""
        out = {}
        for name, raw in sorted(self.r.hgetall(f"{self.ns}paused").items()):
            value = json.loads(raw)
            out[name] = {"at": utc(float(value["at"])), "by": value.get("by")}
        return out

    def workers(self, ttl: float) -> list[dict]:
        """Workers seen within ``ttl`` seconds (each with its ``id`` too)."""
        seen = self.r.zrangebyscore(f"{self.ns}workers", time.time() - ttl, "+inf",
                                    withscores=True)
        pipe = self.r.pipeline(transaction=False)
        for worker_id, _ in seen:
            pipe.hgetall(f"{self.ns}worker:{worker_id}")
        # "seen at" is the live set's score, the worker's last beat
        return [{**w, "id": worker_id, "seen_at": repr(at)}
                for (worker_id, at), w in zip(seen, pipe.execute()) if w]
