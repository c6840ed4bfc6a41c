"""The ledger: Switchyard's own record of every job, in Redis.

Each state change is one Lua script, so a change is atomic and costs one round trip.
Keys (``ns`` is ``SWITCHYARD_NAMESPACE``, ``sy:`` by default):

    {ns}job:{id}              hash: the job, its fields declared in ``adapters/record.py``;
                              its ``events`` field is its history, one JSON line each
    {ns}t:{tenant}            zset: the tenant's job ids by creation time
    {ns}all                   zset: every tenant's job ids by creation time
    {ns}ts:{tenant}:{state}   zset: the tenant's jobs in a state (all but succeeded), and
    {ns}as:{state}            every tenant's; by creation time (``adapters/search.py``)
    {ns}gone                  zset: "<state> <tenant> <id>" of ended jobs by record expiry
    {ns}m:{minute}            hash: that minute's outcomes and run-time buckets (25 h)
    {ns}idem:{tenant}:{key}   string: idempotency key -> "<job id> <fingerprint>" (sha256 of
                              the request's type, payload and options)
    {ns}due                   zset: jobs waiting for their time (delay, backoff, rate slot)
    {ns}dispatching           zset: jobs being handed to the engine, by deadline
    {ns}leases                zset: running jobs, by the time their lease runs out
    {ns}expiries              zset: jobs with ``expires_at`` that have not started
    {ns}queues                set: every queue a job was ever enqueued to
    {ns}queued:{queue}        zset: the queue's jobs in state queued, by when they became so
    {ns}rl:{type}             zset: recent starts of a rate-limited job type
    {ns}paused                hash: paused queue -> JSON {"at", "by"} (``adapters/queues.py``)
    {ns}parked:{queue}        zset: a paused queue's jobs that reached a worker, held (still
                              queued) by when they became queued; {ns}parked: those queues
    {ns}workers, {ns}worker:{id}   live workers and what they listen to
    {ns}wf:{id}, {ns}wft:{tenant}  a workflow (kind, state, jobs, pending) and the
                              tenant's workflows by creation time
    {ns}stats                 hash: the counters behind /metrics (see ``Ledger.stats``)

On a sharded ledger (a Redis Cluster, ``adapters/shards.py``) each shard ``sy:{i}:`` holds
all of these for its own jobs; the keys that are no job's (workers, schedules, audit,
bulk operations) are shard 0's. Every script is given one shard's namespace, as ARGV[1]
and as KEYS[1] (the key a cluster client routes by), and touches that shard alone.

The scripts are in ``adapters/lua/`` (loaded by ``adapters/scripts.py``); the reads are
in ``adapters/ledger_queries.py``.

Every delivery handed to an engine carries a *token*; a worker runs a job only if
the token it was given is the job's current one, so a stale or duplicated message
(a broker redelivery, a reaper's second dispatch) is dropped, never run twice.
"""

from __future__ import annotations

import dataclasses
import math
import time

import redis

from . import record, scripts
from .connections import is_cluster
from .ledger_create import LedgerCreate
from .ledger_queries import LedgerQueries
from .settings import AdapterSettings
from .shards import Shards

__all__ = ["Ledger", "Dispatch", "ClaimResult", "CLUSTER_WAKE"]

CLUSTER_WAKE = 1.0
"""On a Redis Cluster a worker's maintenance wait is woken by shard 0's deadlines only
(one blocking pop cannot span slots), so its next run is at most this far off: a
deadline written to another shard is met within it."""
_PRIORITY_ORDER = {"high": 0, "default": 1, "low": 2}


@dataclasses.dataclass(frozen=True)
class Dispatch:
    """One delivery of a job to an engine: everything the engine glue needs."""

    job_id: str
    token: str
    queue: str
    priority: str
    timeout: float
    job_type: str

    @classmethod
    def from_record(cls, rec: dict) -> "Dispatch":
        return cls(rec["id"], rec["token"], rec["queue"], rec["priority"],
                   float(rec["timeout"]), rec["type"])


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    """What a worker may do with a delivery."""

    action: str
    """``run``, ``drop`` or ``defer``."""
    reason: str = ""
    attempt: int = 0
    job_type: str = ""
    payload: str = "{}"
    tenant: str = ""
    queue: str = ""
    timeout: float = 0.0
    max_retries: int = 0
    links: str = ""
    upstream: str = ""


class Ledger(LedgerCreate, LedgerQueries):
    """Reads and writes job records; every write is one atomic script."""

    def __init__(self, client: redis.Redis, settings: AdapterSettings):
        self.r = client
        self.s = settings
        self.shards = Shards(settings.namespace, settings.ledger_shards)
        self.ns = self.shards.home
        """The home namespace: the only one with one shard (``adapters/shards.py``)."""
        self.cluster = is_cluster(client)
        """True on a Redis Cluster, whose pipelines run no script: calls go one by one."""
        self.next_wake = 0.0
        """The earliest deadline the last ``maintain`` left (Unix seconds)."""
        self.unparked = 0
        """How many parked jobs the last ``maintain`` released (with ``unpark``)."""
        self._later = math.inf  # on a cluster: the earliest deadline of the shards skipped
        self._create = client.register_script(scripts.source("create"))
        self._create_loaded = False
        self._delete = client.register_script(scripts.source("delete"))
        self._purge = client.register_script(scripts.source("purge"))
        self._claim = client.register_script(scripts.source("claim"))
        self._finish = client.register_script(scripts.source("finish"))
        self._cancel = client.register_script(scripts.source("cancel"))
        self._heartbeat = client.register_script(scripts.source("heartbeat"))
        self._progress = client.register_script(scripts.source("progress"))
        self._maintain = client.register_script(scripts.source("maintain"))
        self._redeliver = client.register_script(scripts.source("redeliver"))
        self._worker_beat = client.register_script(scripts.source("worker_beat"))
        self._watch = client.register_script(scripts.source("watch"))

    def _run(self, script, ns: str, args: list, client=None):
        """Run a ledger script on shard ``ns`` (its namespace is ARGV[1] and KEYS[1])."""
        return script(keys=[ns], args=[ns, *args], client=client)

    def idempotency_key(self, tenant: str, key: str) -> str:
        """The key holding ``"<job id> <fingerprint>"`` for a tenant's idempotency key."""
        ns = self.shards.namespaces[self.shards.of_name("idem", tenant)]
        return f"{ns}idem:{tenant}:{key}"

    # -- writes from the API side ---------------------------------------------------
    def _each(self, script, calls: list[tuple[str, list]]) -> list:
        """``script`` once per ``(job id, args)``: in one pipelined round trip, or on a
        cluster (whose pipelines run no script) one by one."""
        if self.cluster:
            return [self._run(script, self.shards.ns(job_id), args) for job_id, args in calls]
        pipe = self.r.pipeline(transaction=False)
        for job_id, args in calls:
            self._run(script, self.shards.ns(job_id), args, client=pipe)
        return pipe.execute()

    def cancel_many(self, job_ids: list[str], reason: str, now: float) -> list[str]:
        """:meth:`cancel` of each job, in one round trip; the outcome of each."""
        return self._each(self._cancel, [(job_id, [repr(now), job_id, reason, self.s.job_ttl])
                                         for job_id in job_ids])

    def purge_many(self, job_ids: list[str], now: float,
                   states: tuple[str, ...] = ()) -> list[str]:
        """Delete jobs for good (only those in one of ``states``, if given), in one round
        trip: ``deleted``, ``running`` (refused), ``changed`` (in another state now) or
        ``missing`` each; a waiting job ends canceled first (``lua/purge.lua``)."""
        allowed = ",".join(states)
        return self._each(self._purge, [(job_id, [repr(now), job_id, self.s.job_ttl, allowed])
                                        for job_id in job_ids])

    def dispatched(self, job_ids: list[str], pipeline: redis.client.Pipeline | None = None) -> None:
        """The engine has the jobs: lift their dispatch guard (in ``pipeline`` if given, so
        an engine that shares this Redis can commit it with its own write)."""
        target = self.r if pipeline is None else pipeline
        if self.shards.count == 1:
            target.zrem(f"{self.ns}dispatching", *job_ids)
            return
        for ns, ids in self.shards.by_shard(job_ids).items():
            target.zrem(f"{ns}dispatching", *ids)

    def cancel(self, job_id: str, reason: str, now: float) -> str:
        """``canceled``, ``requested`` (it is running), ``ended:<state>`` or ``missing``."""
        return self._run(self._cancel, self.shards.ns(job_id),
                         [repr(now), job_id, reason, self.s.job_ttl])

    # -- writes from the worker side ------------------------------------------------
    def claim(self, job_id: str, token: str, worker: str, now: float,
              in_hand_key: str | None = None) -> ClaimResult:
        """Atomically decide whether this delivery runs, and mark it started if so; the
        delivery's note in ``in_hand_key`` (``adapters/inhand.py``) is taken out, whatever
        the answer (not on a cluster, where it may live in another slot: the sweep does)."""
        note = "" if self.cluster or not in_hand_key else in_hand_key
        r = self._run(self._claim, self.shards.ns(job_id),
                      [repr(now), job_id, token, worker, self.s.lease_seconds, self.s.job_ttl,
                       note])
        if r[0] == "drop":
            return ClaimResult("drop", reason=r[1])
        if r[0] == "defer":
            return ClaimResult("defer", reason=r[1])
        f = dict(zip(record.CLAIM_FIELDS, r[1:]))
        return ClaimResult("run", attempt=int(f["attempts"]), job_type=f["type"],
                           payload=f["payload"], tenant=f["tenant"], queue=f["queue"],
                           timeout=float(f["timeout"]), max_retries=int(f["max_retries"] or 0),
                           links=f["links"], upstream=f["upstream"])

    def finish(self, job_id: str, token: str, outcome: str, a: str = "", b: str = "",
               now: float | None = None) -> bool:
        """Record the end of an attempt; False if this worker no longer owns the job."""
        now = time.time() if now is None else now
        return bool(self._run(self._finish, self.shards.ns(job_id),
                              [repr(now), job_id, token, outcome, self.s.job_ttl, a, b]))

    def heartbeat(self, job_id: str, token: str) -> str:
        """Renew the lease; ``ok``, ``cancel`` (a cancel is pending) or ``lost``."""
        return self._run(self._heartbeat, self.shards.ns(job_id),
                         [repr(time.time()), job_id, token, self.s.lease_seconds])

    def progress(self, job_id: str, token: str, progress: dict) -> bool:
        """Store the job's latest progress; False (and nothing stored) if ``token`` is no
        longer the job's current delivery (a stale attempt)."""
        value = record.encode({"progress": progress})["progress"]
        return bool(self._run(self._progress, self.shards.ns(job_id),
                              [repr(time.time()), job_id, token, value]))

    def await_end(self, job_id: str, seconds: float, connection, *,
                  watch: bool = False) -> dict[str, str]:
        """Wait on ``connection`` (a client whose socket outlasts ``seconds``) until the
        job ends or ``seconds`` pass, then read its record ({} if it is gone), in one
        round trip: the pop blocks, and the read queued behind it runs once it returns.
        ``watch``: first count this caller on the job (watch.lua), which ``close`` in
        common.lua then wakes as the job ends (a job already ended wakes it at once)."""
        ns = self.shards.ns(job_id)
        done, key = f"{ns}done:{job_id}", f"{ns}job:{job_id}"
        timeout = max(0.01, seconds)
        if self.cluster:  # one by one: a cluster's pipeline runs no script
            if watch:
                self._run(self._watch, ns, [repr(time.time()), job_id])
            connection.blpop([done], timeout=timeout)
            return connection.hgetall(key)
        pipe = connection.pipeline(transaction=False)
        if watch:
            pipe.evalsha(self._watch.sha, 1, ns, ns, repr(time.time()), job_id)
        pipe.blpop([done], timeout=timeout)
        pipe.hgetall(key)
        replies = pipe.execute(raise_on_error=False)
        if isinstance(replies[0], redis.exceptions.NoScriptError):
            # Redis lost its scripts (a restart): nothing was counted, and the pop waited
            # its time out; load the script and count the caller now
            self.r.script_load(self._watch.script)
            self._run(self._watch, ns, [repr(time.time()), job_id])
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(
                    reply, redis.exceptions.NoScriptError):
                raise reply
        return replies[-1]

    def redeliver_unclaimed(self, deliveries: list[tuple[str, str]]) -> int:
        """Deliveries ``(job id, token)`` that a worker took from the engine and died with
        before claiming: each one that is still its job's current delivery is cancelled and
        the job released again (with a new token) at the next maintenance tick. Returns
        how many were."""
        if not deliveries:
            return 0
        tokens = dict(deliveries)
        n = 0
        for ns, ids in self.shards.by_shard([job_id for job_id, _ in deliveries]).items():
            argv: list = [repr(time.time())]
            for job_id in ids:
                argv += [job_id, tokens[job_id]]
            n += int(self._run(self._redeliver, ns, argv))
        return n

    def maintain(self, now: float, limit: int = 100, unpark: int = 0,
                 beat: tuple | None = None) -> list[Dispatch]:
        """Reap lost jobs, expire stale ones, release due ones; returns what to publish,
        the released jobs ordered by priority (``high`` first). ``next_wake`` is then
        the time of the earliest deadline left (at most ``idle_seconds`` on).

        With ``unpark`` (the maintenance loop's sweep) the call first releases up to that
        many parked jobs of queues no longer paused (a resume whose caller died); how
        many left the parked sets is then ``unparked`` (only the shards due are called:
        on a cluster, see :meth:`_shards_due`, the sweep unparks on its own). A ``beat``
        (the arguments of :meth:`worker_heartbeat`) is carried in the home shard's call."""
        width = 2 + len(record.DISPATCH_FIELDS)
        wake, out, self.unparked = math.inf, [], 0
        due = self._shards_due(now)  # one shard: one call, as ever
        if beat is not None and self.ns not in due:  # a cluster's home shard not due
            self.worker_heartbeat(*beat)
        for ns in due:
            flat = self._run(self._maintain, ns, [
                repr(now), limit, self.s.max_lost_deliveries, self.s.lease_seconds,
                self.s.job_ttl, self.s.idle_seconds, unpark,
                *(_beat_args(*beat) if beat is not None and ns == self.ns else ())])
            wake = min(wake, float(flat[0]))
            self.unparked += int(flat[1])
            out += [Dispatch.from_record({"id": flat[i], "token": flat[i + 1],
                                          **dict(zip(record.DISPATCH_FIELDS, flat[i + 2:i + width]))})
                    for i in range(2, len(flat), width)]
        if self.cluster:  # a deadline written to a shard but 0 wakes no loop: look again soon
            wake, self._later = min(wake, self._later, now + CLUSTER_WAKE), math.inf
        self.next_wake = wake
        if self.shards.count > 1:  # released together: high first, whichever shard
            out.sort(key=lambda d: _PRIORITY_ORDER.get(d.priority, 1))
        return out

    def _shards_due(self, now: float):
        """The shards to run the maintain script on: every one, except on a cluster, where
        the loop looks every ``CLUSTER_WAKE`` seconds; there a shard whose earliest
        deadline (its ``wake_at``, which the scripts move earlier when they write an
        earlier one) has not come is skipped, for one GET (every shard's GETs in one
        round trip per node) instead of its script."""
        if not self.cluster:
            return self.shards.namespaces
        pipe = self.r.pipeline(transaction=False)
        for ns in self.shards.namespaces:
            pipe.get(f"{ns}wake_at")
        due = []
        for ns, at in zip(self.shards.namespaces, pipe.execute()):
            if at is None or float(at) <= now:
                due.append(ns)
            else:
                self._later = min(self._later, float(at))
        return due

    def wait_for_deadline(self, timeout: float, connection: redis.Redis) -> bool:
        """Block until a deadline earlier than the last ``next_wake`` is written (True)
        or ``timeout`` seconds pass (False), on ``connection`` (one with no socket
        timeout shorter than ``timeout``)."""
        if self.cluster:  # one blocking pop cannot span slots: shard 0's (see CLUSTER_WAKE)
            return connection.blpop([f"{self.ns}wake"], timeout=timeout) is not None
        return connection.blpop([f"{ns}wake" for ns in self.shards.namespaces],
                                timeout=timeout) is not None

    # -- workers ------------------------------------------------------------------------
    def worker_heartbeat(self, worker_id: str, info: dict, ttl: float,
                         prune: bool = False) -> None:
        """Announce a live worker (its record, live for ``ttl`` seconds, and the live set);
        with ``prune``, also drop from the live set the workers silent for longer."""
        self._run(self._worker_beat, self.ns,
                  [repr(time.time()), *_beat_args(worker_id, info, ttl, prune)])

    def worker_seen(self, worker_id: str) -> None:
        """A beat between two :meth:`worker_heartbeat` calls: the worker's score in the
        live set alone (one ZADD, of a worker still there: not one :meth:`worker_gone`
        took away)."""
        self.r.zadd(f"{self.ns}workers", {worker_id: time.time()}, xx=True)

    def worker_gone(self, worker_id: str) -> None:
        self.r.delete(f"{self.ns}worker:{worker_id}")
        self.r.zrem(f"{self.ns}workers", worker_id)


def _beat_args(worker_id: str, info: dict, ttl: float, prune: bool = False) -> list:
    """A worker beat's arguments, as worker_beat.lua and maintain.lua take them."""
    argv: list = [worker_id, ttl, "1" if prune else ""]
    for field, value in info.items():
        argv += [field, value]
    return argv
