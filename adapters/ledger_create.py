"""The ledger's writes of new jobs: records (and their workflow), all or none, and
their deliveries' writes riding in the same script call (``adapters/riders.py``); and
taking back records that were never published. A mixin of ``adapters/ledger.Ledger``."""

from __future__ import annotations

import json
import time

import redis

from . import record, scripts
from .errors import IdempotencyKeyReused
from .riders import Riders

__all__ = ["LedgerCreate"]


def _text(value) -> str:
    """A record's value as the text Redis stores, spelled as redis-py would send it."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    raise TypeError(f"a job record holds text and numbers, not {type(value).__name__}")


_ARGV_FIELDS = frozenset(record.FIELDS) | {"fingerprint"}
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""A record's pairs as create.lua reads them (one encoder: json.dumps with options
builds a new one per call)."""


class LedgerCreate:
    """Creating and deleting job records (``Ledger`` holds the client and scripts)."""

    def create_many(self, records: list[dict], now: float, workflow: dict | None = None,
                    batch: bool = True) -> list[tuple[bool, str]]:
        """Write the records (and the ``workflow`` holding them), all or none, in one
        round trip; ``(created, id)`` each (an idempotent hit returns the first job's id
        and ``created=False``), every record under a dispatch guard.

        Raises ``IdempotencyKeyReused`` (and writes nothing) when a record's key names
        a job enqueued with other parameters (``rec["fingerprint"]`` differs)."""
        ns = self.shards.one_shard(records) if records else self.ns
        if workflow is None:
            return self._outcomes(self._run(self._create, ns, self._create_argv(records, now)),
                                  batch)
        if self.cluster:
            # a cluster's pipeline runs no script: the workflow first (its shard's MULTI),
            # then its jobs; a failed write takes the workflow back
            pipe = self.r.pipeline(transaction=True)
            self._write_workflow(pipe, ns, workflow, now)
            pipe.execute()
            try:
                return self._outcomes(self._run(self._create, ns, self._create_argv(records, now)),
                                      batch)
            except BaseException:
                self._drop_workflow(self.r, ns, workflow)
                raise
        pipe = self.r.pipeline(transaction=True)
        self._write_workflow(pipe, ns, workflow, now)
        self._run(self._create, ns, self._create_argv(records, now), client=pipe)
        return self._outcomes(pipe.execute()[-1], batch)

    @staticmethod
    def _write_workflow(pipe, ns: str, workflow: dict, now: float) -> None:
        pipe.hset(f"{ns}wf:{workflow['id']}", mapping=workflow)
        pipe.zadd(f"{ns}wft:{workflow['tenant']}", {workflow["id"]: now})

    @staticmethod
    def _drop_workflow(target, ns: str, workflow: dict) -> None:
        target.delete(f"{ns}wf:{workflow['id']}")
        target.zrem(f"{ns}wft:{workflow['tenant']}", workflow["id"])

    @staticmethod
    def _outcomes(flat: list, batch: bool = True) -> list[tuple[bool, str]]:
        if flat and int(flat[0]) == -1:
            index, job_id = int(flat[1]), flat[2]
            raise IdempotencyKeyReused(
                f"idempotency_key was used for job {job_id} with other parameters; send "
                "the same request to get that job, or use a new key", job_id=job_id,
                index=index, batch=batch)
        return [(bool(int(flat[i])), flat[i + 1]) for i in range(0, len(flat), 2)]

    def create_riding(self, records: list[dict], now: float, riders: Riders,
                      batch: bool = True, meanwhile=None) -> list[tuple[bool, str]]:
        """Write ``records`` and, in the same script call, ``riders``: the writes of
        their deliveries by an engine keeping its queues in this Redis. They commit
        together, so the records need no dispatch guard: one client command. Records
        without idempotency keys only (a hit would still have its delivery written);
        those with keys go through :meth:`create_in`, after a check under WATCH.

        ``meanwhile()`` (the caller's work that does not need the answer) runs while
        Redis runs the script: the call is sent, then ``meanwhile`` runs, then the
        answer is read. Where that read fails (a lost connection, a script Redis no
        longer holds) the call goes again the usual way, as redis-py's retry would."""
        ns = self.shards.one_shard(records)
        keys = [ns, *riders.keys]
        args = [ns, *self._create_argv(records, now, False, riders)]
        if meanwhile is None or self.cluster:
            if meanwhile is not None:
                meanwhile()
            return self._outcomes(self._create(keys=keys, args=args), batch)
        pool, ran = self.r.connection_pool, False
        conn = pool.get_connection()
        try:
            conn.send_command("EVALSHA", self._create.sha, len(keys), *keys, *args)
            meanwhile()
            ran = True
            reply = conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.NoScriptError) as exc:
            lost_script = isinstance(exc, redis.exceptions.NoScriptError)
            if not lost_script:
                conn.disconnect()  # its answer may still come: never read it as another's
            pool.release(conn)
            if not ran:
                meanwhile()
            if lost_script:  # loaded once here: the call below then runs it at once
                self.load_create_script()
            return self._outcomes(self._create(keys=keys, args=args), batch)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        pool.release(conn)
        return self._outcomes(reply, batch)

    def create_in(self, pipeline: redis.client.Pipeline, records: list[dict], now: float,
                  workflow: dict | None = None, riders: Riders | None = None) -> None:
        """Queue the creation of ``records`` (and their ``workflow``) in ``pipeline``, a
        transaction on this Redis, with ``riders`` (their deliveries' writes, as in
        :meth:`create_riding`): records and deliveries commit together, so they need
        no dispatch guard. The caller has checked their idempotency keys under WATCH.
        The script must be loaded (:meth:`load_create_script`); a missing one fails its
        command in the transaction, and the caller retries."""
        if not self._create_loaded:
            self.load_create_script()
        ns = self.shards.one_shard(records)
        if workflow is not None:
            self._write_workflow(pipeline, ns, workflow, now)
        keys = riders.keys if riders is not None else []
        pipeline.evalsha(self._create.sha, 1 + len(keys), ns, *keys, ns,
                         *self._create_argv(records, now, False, riders))

    def load_create_script(self) -> None:
        """Load the create script into Redis (on first use, or after a restart)."""
        self._create.sha = self.r.script_load(scripts.source("create"))
        self._create_loaded = True

    def _create_argv(self, records: list[dict], now: float, guard: bool = True,
                     riders: Riders | None = None) -> list:
        tail = riders.args if riders is not None else []
        argv = [repr(now), self.s.idempotency_ttl, self.s.lease_seconds if guard else -1,
                len(tail)]
        for rec in records:
            if not rec.keys() <= _ARGV_FIELDS:
                unknown = [k for k in rec if k not in _ARGV_FIELDS]
                raise KeyError(f"not fields of the job record (adapters/record.py): {unknown}")
            flat = [x for k, v in rec.items() if k != "fingerprint"
                    for x in (k, v if type(v) is str else _text(v))]
            argv += [rec.get("fingerprint") or "", _to_json(flat)]
        return argv + tail

    def delete_many(self, items: list[tuple[str, str, str]], workflow: dict | None = None) -> None:
        """Remove never-published records ``(id, tenant, idempotency_key)`` (and their
        ``workflow``)."""
        ns = self.shards.ns(items[0][0]) if items else self.ns  # one write: one shard
        if self.cluster:
            for job_id, tenant, idem in items:
                self._run(self._delete, ns, [repr(time.time()), job_id, tenant, idem])
            if workflow is not None:
                self._drop_workflow(self.r, ns, workflow)
            return
        pipe = self.r.pipeline(transaction=True)
        for job_id, tenant, idem in items:
            self._run(self._delete, ns, [repr(time.time()), job_id, tenant, idem], client=pipe)
        if workflow is not None:
            self._drop_workflow(pipe, ns, workflow)
        pipe.execute()
