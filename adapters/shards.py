"""The ledger's shards: which hash-tagged namespace holds a job, so that each script
touches one Redis Cluster slot while the ledger as a whole spreads over many.

With one shard (the default, and what a plain Redis gets) the one namespace is
``SWITCHYARD_NAMESPACE`` itself (``sy:``) and nothing here changes a key. With ``S``
shards (``SWITCHYARD_LEDGER_SHARDS``; a ``redis+cluster://`` URL defaults to 16) shard
``i`` is the namespace ``sy:{i}:``: every key of a shard carries the hash tag ``{i}``,
so all of them live in one slot, and a script given that namespace (and, as its
``KEYS[1]``, the namespace itself, which the cluster client routes by) runs on the one
node that owns it. Each shard is a whole ledger of its own: records, indexes, deadline
sets, counters.

A job lives in the shard its id hashes to (``crc32(id) % S``); the ledger picks the id
when it creates the job, so it can make a job land where the keys it must share a
script with are (``adapters.validation.placement``):

* a workflow's jobs and its ``wf:{id}`` record: the workflow's shard (one script
  releases or cancels the next job when one ends);
* a job with an idempotency key: its tenant's shard (the create script reads the key
  and writes the job at once; a batch of keyed jobs is then still one script);
* a job of a rate-limited type: the type's shard (the claim script counts the type's
  sliding window ``rl:{type}``);
* a retry: the shard of the job it replays (create writes that job's ``retried_as``);
* anything else: a shard at random, one per batch (a batch is written all or none).

Keys that are no job's (schedules, the audit log, workers, bulk operations, the jobs'
file and hook stores) live in shard 0, the *home* namespace. The paused-queue flags
are written to every shard, because every claim reads its own shard's.
"""

from __future__ import annotations

import random
import uuid
import zlib
from typing import Iterable

__all__ = ["Shards"]


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


class Shards:
    """The namespaces of a ledger of ``count`` shards under ``base``."""

    def __init__(self, base: str, count: int = 1):
        if count < 1:
            raise ValueError("a ledger has at least one shard")
        self.count = count
        self.namespaces = (base,) if count == 1 else tuple(
            f"{base}{{{i}}}:" for i in range(count))
        self.home = self.namespaces[0]
        """Shard 0: also the keys that belong to no job."""

    def of(self, job_id: str) -> int:
        """The shard holding job (or workflow) ``job_id``."""
        return 0 if self.count == 1 else _crc(job_id) % self.count

    def ns(self, job_id: str) -> str:
        """The namespace of the shard holding ``job_id``."""
        return self.namespaces[0 if self.count == 1 else _crc(job_id) % self.count]

    def of_name(self, kind: str, name: str) -> int:
        """The shard of a key that is no job's but that jobs share (``idem`` of a
        tenant, ``rl`` of a type)."""
        return 0 if self.count == 1 else _crc(f"{kind}\n{name}") % self.count

    def new_id(self, shard: int | None = None) -> str:
        """A fresh id (32 hex digits) of a job or workflow that lands in ``shard``
        (``None``: any). About ``count`` draws: microseconds."""
        while True:
            job_id = uuid.uuid4().hex
            if shard is None or self.count == 1 or _crc(job_id) % self.count == shard:
                return job_id

    def random(self) -> int:
        return random.randrange(self.count)

    def by_shard(self, job_ids: Iterable[str]) -> dict[str, list[str]]:
        """``{namespace: [ids]}`` of the ids, in their order."""
        out: dict[str, list[str]] = {}
        for job_id in job_ids:
            out.setdefault(self.ns(job_id), []).append(job_id)
        return out


    def by_shard_records(self, records: list[dict]) -> list[list[dict]]:
        """Job records grouped by the shard their ids name, in their order (one group
        with one shard)."""
        if self.count == 1:
            return [records] if records else []
        groups: dict[int, list[dict]] = {}
        for rec in records:
            groups.setdefault(self.of(rec["id"]), []).append(rec)
        return list(groups.values())

    def one_shard(self, records: list[dict]) -> str:
        """The namespace of the shard every record's id names; ``ValueError`` if they
        name several (one script cannot write them)."""
        if self.count == 1:
            return self.home
        found = {self.ns(rec["id"]) for rec in records}
        if len(found) != 1:
            raise ValueError(f"one write's records are in {len(found)} shards, not one")
        return found.pop()
