"""Deliveries in hand: what a worker took from a broker that forgets a message once it
has handed it out (kombu's Redis transport without ack emulation, RQ's queues), noted
as it is taken, so that a worker killed before it claims the job does not strand it.

A note is ``<job id>-<token>`` in a sorted set of the engine's, by when it was taken
(RQ's pop writes its own inside its script). The maintenance loop's sweep
(``Engine.recover_stranded``) delivers again each note older than a lease whose job
was never claimed, and drops the rest: a claimed job is its lease's from then on.
"""

from __future__ import annotations

import logging
import time

import redis

log = logging.getLogger("switchyard.inhand")

__all__ = ["note", "recover", "recover_unnoted"]


def note(ledger, key: str, job_id: str, token: str) -> None:
    """Note in ``key`` the delivery ``(job_id, token)`` a worker has just taken."""
    ledger.r.zadd(key, {f"{job_id}-{token}": time.time()})


def recover(ledger, key: str, client: redis.Redis | None = None, limit: int = 500) -> int:
    """Deliver again the deliveries noted in ``key`` more than a lease ago that were never
    claimed; how many were. ``client``: the one that wrote the notes (the ledger's)."""
    client = client or ledger.r
    old = client.zrangebyscore(key, "-inf", time.time() - ledger.s.lease_seconds,
                               start=0, num=limit)
    if not old:
        return 0
    members = [m.decode() if isinstance(m, bytes) else m for m in old]
    recovered = ledger.redeliver_unclaimed(
        [tuple(m.rsplit("-", 1)) for m in members if m.count("-") == 1])
    client.zrem(key, *old)
    return recovered


def recover_unnoted(ledger, key: str, lists_empty, limit: int = 100) -> int:
    """Deliveries a worker popped and died with before it could note them in ``key``:
    a job queued for longer than a lease whose queue's broker lists are empty
    (``lists_empty(queue)``, the engine's to answer), neither noted nor claimed, is
    delivered again; its old message, if it is anywhere after all, is dropped by its
    token. Not on a cluster (the ledger's indexes span slots there)."""
    if ledger.cluster:
        return 0
    ns, r = ledger.ns, ledger.r
    cutoff = time.time() - ledger.s.lease_seconds
    lost = []
    for queue in sorted(r.smembers(f"{ns}queues")):
        old = r.zrangebyscore(f"{ns}queued:{queue}", "-inf", cutoff, start=0, num=limit)
        if not old or not lists_empty(queue):
            continue  # nothing waits that long, or a backlog: the jobs wait their turn
        candidates = [(job_id, token) for job_id, token in zip(old, ledger.current_tokens(old))
                      if token]
        notes = r.pipeline(transaction=False)
        for job_id, token in candidates:
            notes.zscore(key, f"{job_id}-{token}")
        lost += [c for c, noted in zip(candidates, notes.execute()) if noted is None]
    if lost:
        log.warning("%d delivery(ies) popped by a worker that died before noting them: "
                    "delivering them again", len(lost))
    return ledger.redeliver_unclaimed(lost)
