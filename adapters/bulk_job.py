"""The job type ``switchyard.bulk``: one bulk operation, run by a worker like any job.

It first takes a snapshot of the matches (:func:`adapters.bulk.matching_ids`) into a
Redis list, then acts on it ``CHUNK`` jobs per round trip, reporting progress after
each chunk: so what it acts on is fixed at the start (the new jobs a retry creates are
never matched), and 100,000 matches cost a few hundred round trips, not 100,000.

    {ns}bulk:{op id}         list: the snapshot, the ids to act on, in order
    {ns}bulk:{op id}:tally   hash: matched, offset (acted on so far), done,
                             skipped:<reason>, errors:<reason>, requested

Both go once the operation ends (and expire a day after its start if it never does).
If its worker dies, the redelivered operation resumes at the offset of the last chunk
it finished: at most that one chunk is acted on twice (a retry of it then makes
another new job per job; a cancel or a delete twice is harmless).

Per action, each job is one of: ``done``; ``skipped`` for a reason (``missing``: gone
since the snapshot; ``not_retryable``: no longer failed or canceled; ``ended``: a
cancel of a job that ended meanwhile; ``running``: a delete of a running job, refused;
``changed``: a delete of a job no longer in the filter's states);
or an ``error`` (``unknown_type``, ``invalid``, ``unsupported``: a retry whose job can no
longer be built; ``unavailable``: the broker refused a chunk).
"""

from __future__ import annotations

import collections
import time
from typing import Any

from .bulk import BULK_TYPE, CHUNK, check_filter, matching_ids
from .errors import BackendUnavailable, InvalidJob, InvalidState, UnknownJobType, UnsupportedFeature
from .registry import job
from .types import JobInfo
from .validation import build_record, placement, replay

__all__ = ["run_bulk", "Operation"]

KEEP = 24 * 3600
"""Seconds the snapshot of an operation that never ended is kept."""
_RETRY_FIELDS = ("id", "type", "tenant", "state", "queue", "priority", "payload",
                 "max_retries", "timeout", "links")
"""What a retry reads of each job (not its result or history)."""


@job(BULK_TYPE, builtin=True)
def run_bulk(ctx, action, filter, as_of, actor=None):
    """Retry, cancel or delete every job a filter matched when the operation was asked for."""
    result = Operation(ctx, action, filter, as_of).run()
    if actor:
        ctx.adapter.audit().record(actor, f"bulk.{action}.finished",
                                   {"operation": ctx.job_id, "filter": filter},
                                   count=result["done"], detail=result)
    return result


class Operation:
    """One run of one operation (``ctx`` is the ``switchyard.bulk`` job's context)."""

    def __init__(self, ctx: Any, action: str, filter: dict, as_of: float):
        self.ctx, self.client = ctx, ctx.adapter
        self.ledger = self.client.ledger
        self.r = self.ledger.r
        self.action, self.filter, self.as_of = action, filter, as_of
        self.key = f"{self.ledger.ns}bulk:{ctx.job_id}"
        self.tally_key = f"{self.key}:tally"
        self.match = check_filter(filter).for_action(action)
        self.act = {"retry": self._retry, "cancel": self._cancel, "delete": self._delete}[action]

    def run(self) -> dict:
        matched = self._snapshot()
        offset = int(self.r.hget(self.tally_key, "offset") or 0)
        self._progress(offset, matched)
        while offset < matched:
            ids = self.r.lrange(self.key, offset, offset + CHUNK - 1)
            if not ids:
                break
            counts = self.act(ids)
            offset += len(ids)
            pipe = self.r.pipeline(transaction=True)
            for name, n in counts.items():
                pipe.hincrby(self.tally_key, name, n)
            pipe.hset(self.tally_key, "offset", offset)
            pipe.execute()
            self._progress(offset, matched)
        result = self._result()
        self.r.delete(self.key, self.tally_key)
        return result

    def _snapshot(self) -> int:
        """The number of matches, written to the snapshot list first unless an earlier
        attempt of this operation finished writing it."""
        matched = self.r.hget(self.tally_key, "matched")
        if matched is not None:
            return int(matched)
        self.r.delete(self.key)
        self.ctx.progress(0, None, "finding the matching jobs")
        matched, chunk = 0, []
        for job_id in matching_ids(self.ledger, self.match, self.as_of):
            chunk.append(job_id)
            if len(chunk) == CHUNK:
                matched += self._append(chunk)
                chunk = []
        if chunk:
            matched += self._append(chunk)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.tally_key, mapping={"matched": matched, "offset": 0})
        pipe.expire(self.tally_key, KEEP)
        pipe.execute()
        return matched

    def _append(self, ids: list[str]) -> int:
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.key, *ids)
        pipe.expire(self.key, KEEP)
        pipe.execute()
        return len(ids)

    def _progress(self, offset: int, matched: int) -> None:
        tally = self.r.hgetall(self.tally_key)
        done = int(tally.get("done") or 0)
        skipped = sum(int(v) for k, v in tally.items() if k.startswith("skipped:"))
        errors = sum(int(v) for k, v in tally.items() if k.startswith("errors:"))
        self.ctx.progress(offset, matched, f"{self.action}: {done} done, {skipped} skipped, "
                                           f"{errors} errors")

    def _result(self) -> dict:
        tally = self.r.hgetall(self.tally_key)

        def by_reason(kind: str) -> dict[str, int]:
            return {k.split(":", 1)[1]: int(v) for k, v in sorted(tally.items())
                    if k.startswith(kind + ":")}

        result = {"action": self.action, "filter": self.filter,
                  "matched": int(tally.get("matched") or 0), "done": int(tally.get("done") or 0),
                  "skipped": by_reason("skipped"), "errors": by_reason("errors")}
        if self.action == "cancel":
            result["requested"] = int(tally.get("requested") or 0)
        return result

    # -- the actions: each takes a chunk of ids, returns its counts --------------------
    def _retry(self, ids: list[str]) -> collections.Counter:
        """Each failed or canceled job replayed as a new job (``retry_of`` naming it),
        built as ``client.retry`` builds one, the chunk written in one round trip."""
        counts: collections.Counter = collections.Counter()
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.ledger.key(job_id), _RETRY_FIELDS)
        now, records = time.time(), []
        for values in pipe.execute():
            rec = {k: v for k, v in zip(_RETRY_FIELDS, values) if v is not None}
            if "state" not in rec:
                counts["skipped:missing"] += 1
                continue
            info = JobInfo.from_record(rec)
            try:
                spec, links = replay(info)
                # in the shard of the job it replays (create writes its retried_as)
                records.append(build_record(self.client, *spec, info.tenant, now, links,
                                            info.id, shard=placement(self.client, [spec],
                                                                     info.tenant, info.id)))
            except InvalidState:
                counts["skipped:not_retryable"] += 1
            except UnknownJobType:
                counts["errors:unknown_type"] += 1
            except InvalidJob:
                counts["errors:invalid"] += 1
            except UnsupportedFeature:
                counts["errors:unsupported"] += 1
        # one write per ledger shard (one with a single shard): a write is one script
        for group in self.ledger.shards.by_shard_records(records):
            try:
                self.client._write(group, now)
                counts["done"] += len(group)
            except BackendUnavailable:
                counts["errors:unavailable"] += len(group)
        return counts

    def _cancel(self, ids: list[str]) -> collections.Counter:
        counts: collections.Counter = collections.Counter()
        for outcome in self.ledger.cancel_many(ids, "requested", time.time()):
            if outcome in ("canceled", "requested"):
                counts["done"] += 1
                counts["requested"] += outcome == "requested"
            else:
                counts["skipped:" + ("ended" if outcome.startswith("ended:") else outcome)] += 1
        return counts

    def _delete(self, ids: list[str]) -> collections.Counter:
        counts: collections.Counter = collections.Counter()
        for outcome in self.ledger.purge_many(ids, time.time(), self.match.states):
            counts["done" if outcome == "deleted" else f"skipped:{outcome}"] += 1
        return counts
