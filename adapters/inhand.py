"""Deliveries in hand: what a worker took from a broker that forgets a message once it
has handed it out (kombu's Redis transport without ack emulation, RQ's queues), noted
as it is taken, so that a worker killed before it claims the job does not strand it.

A note is ``<job id>-<token>`` in a sorted set of the engine's, by when it was taken
(RQ's pop writes its own inside its script). The maintenance loop's sweep
(``Engine.recover_stranded``) delivers again each note older than a lease whose job
was never claimed, and drops the rest: a claimed job is its lease's from then on.
"""

from __future__ import annotations

import time

import redis

__all__ = ["note", "recover"]


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
