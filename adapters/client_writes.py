"""How the client writes new jobs: their records and their deliveries, so that neither
exists without the other (README, "Never a half-written job"). A mixin of
``adapters/client.Switchyard``, which holds ``engine``, ``ledger`` and ``name``."""

from __future__ import annotations

import logging

import redis

from .errors import BackendUnavailable, IdempotencyKeyReused, unavailable
from .ledger import Dispatch
from .riders import Riders

__all__ = ["JobWrites", "WRITE_FAILED"]

log = logging.getLogger("switchyard.adapter")

WRITE_FAILED = "cannot write the job to Redis"


class JobWrites:
    """The write of new jobs' records and deliveries, by the route the engine declares."""

    def _write(self, records: list[dict], now: float, workflow: dict | None = None,
               batch: bool = True, meanwhile=None) -> list[tuple[bool, str]]:
        """The records (and the workflow holding them) and their deliveries; ``(created,
        job id)`` per record, ``created=False`` for an idempotent hit. ``meanwhile()``,
        if given, runs while Redis writes them where that is one script call (else not
        at all): work of the caller's that holds while every record is created."""
        if self.engine.shares_ledger_redis:
            return self._write_in_transaction(records, now, workflow, batch, meanwhile)
        with unavailable(WRITE_FAILED):
            outcomes = self.ledger.create_many(records, now, workflow, batch=batch)
        created = [rec for rec, (fresh, _) in zip(records, outcomes) if fresh]
        deliveries = [Dispatch.from_record(r) for r in created if r["state"] == "queued"]
        if deliveries:
            try:
                self.engine.publish(deliveries)
            except Exception as exc:
                self._rollback(created, workflow)
                raise BackendUnavailable(f"the {self.name} broker refused the job: {exc}") from exc
            try:
                self.ledger.dispatched([d.job_id for d in deliveries])
            except redis.RedisError:
                # The guard expires on its own; the maintenance loop then publishes
                # again, and the engine drops the now-stale first delivery by its token.
                log.warning("could not clear the dispatch guard of %d job(s)", len(deliveries))
        return outcomes

    def _write_in_transaction(self, records: list[dict], now: float, workflow: dict | None,
                              batch: bool, meanwhile=None) -> list[tuple[bool, str]]:
        """Records and deliveries in one script call: the engine's publish writes into
        a :class:`~adapters.riders.Riders`, whose commands the create script runs after
        the records. With idempotency keys or a workflow, that call goes in a MULTI:
        the keys are read first under WATCH (a hit is answered without writing; a key
        taken meanwhile retries), and the workflow's writes go with it."""
        keyed = [i for i, rec in enumerate(records) if rec.get("idempotency_key")]
        if not keyed and workflow is None:
            riders = self._riders(records)
            try:
                return self.ledger.create_riding(records, now, riders, batch, meanwhile)
            except Exception as exc:
                # one script call: it wrote everything or nothing; if it did and the
                # answer was lost, removing the records makes the deliveries stale
                self._rollback(records)
                raise BackendUnavailable(f"{WRITE_FAILED}: {exc}") from exc
        for attempt in range(1, 6):
            try:
                with self.engine.transaction() as pipe:
                    outcomes = [(True, rec["id"]) for rec in records]
                    if keyed:
                        outcomes = self._idempotent_hits(pipe, records, keyed, outcomes,
                                                         batch)
                    pipe.multi()
                    fresh = [rec for rec, (new, _) in zip(records, outcomes) if new]
                    if fresh:
                        self.ledger.create_in(pipe, fresh, now, workflow, self._riders(fresh))
                        pipe.execute()
                    return outcomes
            except redis.WatchError:
                continue
            except redis.exceptions.NoScriptError:
                # Redis restarted (or flushed its scripts): the deliveries ride in the
                # script, so none went out; only a workflow's own writes did, and the
                # retry writes them again as they were. Load it and retry.
                self.ledger.load_create_script()
            except IdempotencyKeyReused:
                raise
            except Exception as exc:
                # The transaction committed whole or not at all; if it did and the
                # answer was lost, removing the records makes the deliveries stale.
                self._rollback(records, workflow)
                raise BackendUnavailable(f"{WRITE_FAILED}: {exc}") from exc
        raise BackendUnavailable(f"{WRITE_FAILED}: its idempotency keys kept changing")

    def _riders(self, records: list[dict]) -> Riders:
        """The engine's writes of the queued records' deliveries, for the create script."""
        riders = Riders()
        deliveries = [Dispatch.from_record(r) for r in records if r["state"] == "queued"]
        if deliveries:
            self.engine.publish(deliveries, riders)
        return riders

    def _idempotent_hits(self, pipe, records, keyed, outcomes, batch):
        keys = [self.ledger.idempotency_key(records[i]["tenant"], records[i]["idempotency_key"])
                for i in keyed]
        pipe.watch(*keys)
        for index, held in zip(keyed, pipe.mget(keys)):
            if held is None:
                continue
            job_id, _, fingerprint = (held.decode() if isinstance(held, bytes) else held
                                      ).partition(" ")
            if fingerprint != records[index]["fingerprint"]:
                raise IdempotencyKeyReused(
                    f"idempotency_key was used for job {job_id} with other parameters; send "
                    "the same request to get that job, or use a new key", job_id=job_id,
                    index=index, batch=batch)
            outcomes[index] = (False, job_id)
        return outcomes

    def _rollback(self, records: list[dict], workflow: dict | None = None) -> None:
        try:
            self.ledger.delete_many([(rec["id"], rec["tenant"], rec.get("idempotency_key") or "")
                                     for rec in records], workflow)
        except redis.RedisError:
            log.exception("rollback of %d unpublished job(s) failed", len(records))
