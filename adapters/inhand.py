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
import threading
import time

import redis

log = logging.getLogger("switchyard.inhand")

__all__ = ["Notes", "recover", "recover_unnoted"]


class Notes:
    """Notes written without waiting for Redis's answer, on a connection of their own.

    A note only has to be in Redis before the worker could die with the delivery it
    names unclaimed; the job's claim, which follows at once, need not wait for it. So
    :meth:`note` sends the ZADD and returns, and reads the answer of the note before it
    (long arrived) first: a worker's note costs it no round trip. A note that lands after
    its claim stays until the sweep drops it (its job is claimed); one lost with a worker
    that died before Redis took it is a delivery popped and never noted, which
    :func:`recover_unnoted` finds. A Redis error surfaces at the next note, or at
    :meth:`flush`. A cluster's client (no connection of its own to hold) writes each
    note and waits for it.
    """

    def __init__(self, client):
        self.client = client
        self._connection = None
        self._pending = 0
        self._lock = threading.Lock()

    def note(self, key: str, job_id: str, token: str) -> None:
        """Send the note of ``(job_id, token)`` to ``key``. Raises a Redis error of its
        sending, or once it is sent, one an earlier note met (its answer, read now)."""
        member = f"{job_id}-{token}"
        pool = getattr(self.client, "connection_pool", None)
        if pool is None:
            self.client.zadd(key, {member: time.time()})
            return
        with self._lock:
            if self._connection is None:
                # held for good, out of the pool: an unread answer never reaches another
                self._connection = pool.get_connection()
            earlier = None
            try:
                self._read_answers()
            except redis.RedisError as exc:  # that note's; this one still goes
                earlier = exc
                if not isinstance(exc, redis.ResponseError):
                    self._drop()  # the connection is not to be trusted: a new one
            try:
                # no health check: its PING would read the answer of the note before
                self._connection.send_command("ZADD", key, repr(time.time()), member,
                                              check_health=False)
                self._pending += 1
            except BaseException:
                self._drop()
                raise
            if earlier is not None:
                raise earlier

    def flush(self) -> None:
        """Read every answer still unread (raising the first error among them)."""
        with self._lock:
            try:
                self._read_answers()
            except BaseException:
                self._drop()
                raise

    def _read_answers(self) -> None:
        while self._pending:
            self._pending -= 1
            self._connection.read_response()

    def _drop(self) -> None:
        self._pending = 0
        if self._connection is not None:
            self._connection.disconnect()


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
