"""Periodic schedules, stored in Redis and fired by the engine's own scheduler process.

The store and the firing rule live here, once: Celery beat (with a scheduler class
that reads this store) and rq-scheduler both call :meth:`Schedules.tick` on every beat.
A tick enqueues one ordinary job per due schedule with an idempotency key made of the
schedule's name and the tick's time, and moves the schedule's next time with a
compare-and-set, so two scheduler processes never fire a tick twice. A scheduler that
was down fires at most ``catch_up`` of the runs it missed, never a burst.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .errors import IdempotencyKeyReused, InvalidJob, InvalidState, JobNotFound, unavailable
from .options import JobOptions
from .types import JobInfo
from .validation import SCHEDULE_NAME, build_record, prefixed

__all__ = ["Schedules", "ScheduleInfo", "next_cron_time", "validate_cron", "validate_timezone"]

_OPTION_FIELDS = ("queue", "priority", "max_retries", "timeout")
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_SPANS = (60, 24, 31, 12, 7)
"""How many values each cron field takes: no step can be longer."""

_CAS = """
local idx, member, expected, nxt = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local score = redis.call('ZSCORE', idx, member)
if not score or tonumber(score) ~= tonumber(expected) then return 0 end
redis.call('ZADD', idx, nxt, member)
redis.call('HSET', KEYS[2], 'next_run_at', nxt, 'last_run_at', ARGV[4], 'last_job_id', ARGV[5])
return 1
"""


def _iso(at: float) -> str:
    """A tick time as the API shows times: ISO 8601 in UTC."""
    return datetime.fromtimestamp(at, timezone.utc).isoformat()


def validate_timezone(name: str) -> ZoneInfo:
    """The zone called ``name``; ``InvalidJob`` (field ``timezone``) if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidJob(f"unknown timezone {name!r}",
                         {"timezone": [f"unknown timezone {name!r}; use an IANA name such "
                                       "as 'Europe/Berlin' or 'UTC'"]}) from None


def validate_cron(expr: str) -> str:
    """A five-field cron expression, or ``InvalidJob`` (field ``cron``) saying what is wrong."""
    fields = expr.split() if isinstance(expr, str) else []
    if len(fields) != 5:
        raise InvalidJob("cron needs five fields",
                         {"cron": ["needs five fields: minute hour day-of-month month "
                                   f"day-of-week (got {len(fields)})"]})
    for name, span, field in zip(_CRON_FIELDS, _CRON_SPANS, fields):
        for part in field.split(","):
            _, slash, step = part.rpartition("/")
            if slash and not (step.isascii() and step.isdigit() and len(step) <= 3
                              and 1 <= int(step) <= span):
                raise InvalidJob(f"invalid cron step {step!r}",
                                 {"cron": [f"the step of {name} in {expr!r} must be 1 to {span}"]})
    if not croniter.is_valid(" ".join(fields)):
        raise InvalidJob(f"invalid cron expression {expr!r}",
                         {"cron": [f"{expr!r} is not a valid cron expression"]})
    return " ".join(fields)


def _to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``zone`` as UTC; a time skipped by a DST change moves
    to the first wall-clock minute that exists after it; a repeated one is its first."""
    for _ in range(24 * 60):
        aware = local.replace(tzinfo=zone, fold=0)
        utc = aware.astimezone(timezone.utc)
        if utc.astimezone(zone).replace(tzinfo=None) == local:
            return utc
        local = (local + timedelta(minutes=1)).replace(second=0, microsecond=0)
    raise ValueError("no valid local time")  # pragma: no cover - no zone skips a day


def next_cron_time(expr: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first time after ``after`` (aware) at which ``expr`` fires in ``zone``, in UTC.

    Cron speaks wall-clock time: ``30 2 * * *`` fires once a day at 02:30 local time,
    also on the days a DST change skips 02:30 (then at the first minute after the gap)
    or repeats it (then once, at the first 02:30).
    """
    local_after = after.astimezone(zone).replace(tzinfo=None)
    it = croniter(expr, local_after)
    for _ in range(10000):
        candidate = _to_utc(it.get_next(datetime), zone)
        if candidate > after:
            return candidate
    raise ValueError(f"cron {expr!r} never fires")  # pragma: no cover


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScheduleInfo:
    """One periodic schedule."""

    name: str
    """Unique within its tenant."""
    tenant: str
    """The owner; the jobs it creates belong to this tenant."""
    job_type: str
    """The job type it enqueues."""
    payload: dict
    """The payload of every job it enqueues."""
    options: dict
    """``queue``, ``priority``, ``max_retries``, ``timeout`` of every job."""
    cron: str | None
    """Five-field cron expression, or ``None`` when ``every`` is set."""
    every: float | None
    """Seconds between runs, or ``None`` when ``cron`` is set."""
    timezone: str
    """IANA zone the cron expression is read in."""
    enabled: bool
    """False while paused."""
    next_run_at: datetime | None
    """When it fires next (``None`` while paused)."""
    last_run_at: datetime | None
    """The tick time of the last run it fired."""
    last_job_id: str | None
    """The job the last run created."""
    created_at: datetime
    """When it was created."""

    @classmethod
    def from_record(cls, rec: dict) -> "ScheduleInfo":
        def ts(key):
            return datetime.fromtimestamp(float(rec[key]), timezone.utc) if rec.get(key) else None
        return cls(name=rec["name"], tenant=rec["tenant"], job_type=rec["job_type"],
                   payload=json.loads(rec["payload"]), options=json.loads(rec["options"]),
                   cron=rec.get("cron") or None,
                   every=float(rec["every"]) if rec.get("every") else None,
                   timezone=rec.get("timezone") or "UTC", enabled=rec.get("enabled") == "1",
                   next_run_at=ts("next_run_at") if rec.get("enabled") == "1" else None,
                   last_run_at=ts("last_run_at"), last_job_id=rec.get("last_job_id") or None,
                   created_at=ts("created_at"))


class Schedules:
    """The schedule store of one adapter's ledger, and the tick that fires it."""

    def __init__(self, adapter, catch_up: int = 1):
        """``adapter`` is the :class:`~adapters.client.Switchyard` client whose ledger
        holds the schedules and which enqueues their jobs."""
        self.adapter = adapter
        self.r = adapter.redis
        self.ns = adapter.settings.home_namespace
        self.index = f"{self.ns}schedules"
        self.catch_up = catch_up
        self._cas = self.r.register_script(_CAS)

    def _key(self, tenant: str, name: str) -> str:
        return f"{self.ns}sched:{tenant}:{name}"

    # -- validation --------------------------------------------------------------------
    def _next(self, rec: dict, after: float) -> float:
        """The first fire time strictly after ``after``."""
        if rec.get("every"):
            every, anchor = float(rec["every"]), float(rec["anchor"])
            k = math.floor((after - anchor) / every) + 1
            return anchor + max(k, 1) * every
        zone = ZoneInfo(rec["timezone"])
        return next_cron_time(rec["cron"], zone,
                              datetime.fromtimestamp(after, timezone.utc)).timestamp()

    def _validated(self, tenant: str, name: str, job_type: str, payload: dict | None,
                   options: dict | None, cron: str | None, every: float | None,
                   tz: str) -> dict:
        if not isinstance(name, str) or not SCHEDULE_NAME.fullmatch(name):
            raise InvalidJob("bad schedule name", {"name": ["1-100 letters, digits, '_', '.', '-'"]})
        if name in (".", ".."):  # dot segments: /v1/schedules/.. is /v1/schedules
            raise InvalidJob("bad schedule name",
                             {"name": ["'.' and '..' are not names: a URL drops them"]})
        if (cron is None) == (every is None):
            raise InvalidJob("give cron or every, not both",
                             {"cron": ["exactly one of cron and every is required"]})
        options = dict(options or {})
        unknown = set(options) - set(_OPTION_FIELDS)
        if unknown:
            raise InvalidJob("unsupported schedule job options",
                             {f"job.options.{k}": ["not allowed in a schedule"] for k in unknown})
        rec = {"tenant": tenant, "name": name, "timezone": tz}
        validate_timezone(tz)
        if cron is not None:
            rec["cron"], rec["every"] = validate_cron(cron), ""
        else:
            if not isinstance(every, (int, float)) or not math.isfinite(every) or every < 1:
                raise InvalidJob("every must be at least 1 second", {"every": ["must be >= 1"]})
            rec["cron"], rec["every"] = "", repr(float(every))
        # the job must be enqueueable as given: the same checks as a real enqueue
        try:
            build_record(self.adapter, job_type, payload, JobOptions(**options), tenant,
                         time.time())
        except InvalidJob as exc:
            raise prefixed("job.", exc) from exc
        rec.update(job_type=job_type, payload=json.dumps(payload or {}),
                   options=json.dumps(options))
        return rec

    # -- CRUD ----------------------------------------------------------------------------
    def create(self, tenant: str, name: str, job_type: str, payload: dict | None = None,
               options: dict | None = None, *, cron: str | None = None,
               every: float | None = None, timezone_name: str = "UTC",
               enabled: bool = True) -> ScheduleInfo:
        """Create a schedule; ``InvalidState`` if the tenant already has one of that name."""
        rec = self._validated(tenant, name, job_type, payload, options, cron, every,
                              timezone_name)
        now = time.time()
        rec.update(created_at=repr(now), anchor=repr(now), enabled="1" if enabled else "0",
                   last_run_at="", last_job_id="")
        rec["next_run_at"] = repr(self._next(rec, now))
        key = self._key(tenant, name)
        with unavailable("cannot write to Redis"):
            if not self.r.hsetnx(key, "name", name):
                raise InvalidState(f"schedule {name!r} already exists", state="exists")
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(key, mapping=rec)
            pipe.sadd(f"{self.ns}sched:t:{tenant}", name)
            if enabled:
                pipe.zadd(self.index, {f"{tenant}/{name}": float(rec["next_run_at"])})
            pipe.execute()
        return self.get(tenant, name)

    def get(self, tenant: str, name: str) -> ScheduleInfo:
        """The schedule; ``JobNotFound`` if the tenant has none of that name."""
        with unavailable("cannot read from Redis"):
            rec = self.r.hgetall(self._key(tenant, name))
        if not rec or "job_type" not in rec:
            raise JobNotFound(f"no schedule {name!r}")
        return ScheduleInfo.from_record(rec)

    def list(self, tenant: str) -> list[ScheduleInfo]:
        """The tenant's schedules by name."""
        with unavailable("cannot read from Redis"):
            names = sorted(self.r.smembers(f"{self.ns}sched:t:{tenant}"))
            pipe = self.r.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._key(tenant, name))
            records = pipe.execute()
        return [ScheduleInfo.from_record(rec) for rec in records if rec.get("job_type")]

    def update(self, tenant: str, name: str, **changes) -> ScheduleInfo:
        """Change ``enabled``, ``cron``/``every``, ``timezone`` or the job; takes effect at
        the next tick of any running scheduler, no restart needed."""
        current = self.get(tenant, name)
        job = changes.get("job") or {}
        cron, every = current.cron, current.every
        if "cron" in changes and changes["cron"] is not None:
            cron, every = changes["cron"], None
        if "every" in changes and changes["every"] is not None:
            cron, every = None, changes["every"]
        rec = self._validated(tenant, name, job.get("type", current.job_type),
                              job.get("payload", current.payload),
                              job.get("options", current.options), cron, every,
                              changes.get("timezone") or current.timezone)
        enabled = changes.get("enabled", current.enabled)
        now = time.time()
        rec["enabled"] = "1" if enabled else "0"
        if rec["every"] and current.every != float(rec["every"]) or not current.enabled:
            rec["anchor"] = repr(now)
        with unavailable("cannot write to Redis"):
            full = {**self.r.hgetall(self._key(tenant, name)), **rec}
            full["next_run_at"] = repr(self._next(full, now))
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(self._key(tenant, name), mapping=full)
            member = f"{tenant}/{name}"
            if enabled:
                pipe.zadd(self.index, {member: float(full["next_run_at"])})
            else:
                pipe.zrem(self.index, member)
            pipe.execute()
        return self.get(tenant, name)

    def delete(self, tenant: str, name: str) -> None:
        """Remove the schedule; jobs it already created stay."""
        self.get(tenant, name)
        with unavailable("cannot write to Redis"):
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(self._key(tenant, name))
            pipe.srem(f"{self.ns}sched:t:{tenant}", name)
            pipe.zrem(self.index, f"{tenant}/{name}")
            pipe.execute()

    def tenants(self) -> list[str]:
        """Every tenant that has schedules (for an operator's view of all of them)."""
        prefix = f"{self.ns}sched:t:"
        with unavailable("cannot read from Redis"):
            return sorted(k[len(prefix):] for k in self.r.scan_iter(match=f"{prefix}*"))

    def run_now(self, tenant: str, name: str) -> JobInfo:
        """Enqueue the schedule's job once, now, and record it as the schedule's last run
        (``last_run_at``, ``last_job_id``); its next regular run stays where it was. The
        job's links name the schedule and ``"run": "manual"``, so it reads as a run of it."""
        info = self.get(tenant, name)
        now = time.time()
        job = self.adapter.enqueue(info.job_type, info.payload, JobOptions(**info.options),
                                   tenant=tenant,
                                   links={"schedule": name, "tick": _iso(now), "run": "manual"})
        with unavailable("cannot write to Redis"):
            if self.r.exists(self._key(tenant, name)):  # not re-created by a delete meanwhile
                self.r.hset(self._key(tenant, name),
                            mapping={"last_run_at": repr(now), "last_job_id": job.id})
        return job

    # -- firing --------------------------------------------------------------------------
    def seconds_to_next(self, now: float | None = None) -> float | None:
        """Seconds until the earliest enabled schedule is due (None if there is none)."""
        with unavailable("cannot read from Redis"):
            first = self.r.zrange(self.index, 0, 0, withscores=True)
        if not first:
            return None
        return max(0.0, first[0][1] - (time.time() if now is None else now))

    def tick(self, now: float | None = None, limit: int = 100) -> list[str]:
        """Fire every due schedule once; returns the ids of the jobs enqueued."""
        with unavailable("cannot fire schedules"):
            return self._tick(now, limit)

    def _tick(self, now: float | None, limit: int) -> list[str]:
        now = time.time() if now is None else now
        fired = []
        for member, due in self.r.zrangebyscore(self.index, "-inf", now, start=0, num=limit,
                                                withscores=True):
            tenant, name = member.split("/", 1)
            key = self._key(tenant, name)
            rec = self.r.hgetall(key)
            if rec.get("enabled") != "1":
                self.r.zrem(self.index, member)
                continue
            ticks = [due]
            while len(ticks) < 10000:
                following = self._next(rec, ticks[-1])
                if following > now:
                    break
                ticks.append(following)
            next_due = self._next(rec, ticks[-1])
            to_fire = ticks[-self.catch_up:] if self.catch_up > 0 else (
                ticks[-1:] if now - ticks[-1] < 5 else [])
            job_id = rec.get("last_job_id", "")
            for tick_at in to_fire:
                try:
                    info = self.adapter.enqueue(
                        rec["job_type"], json.loads(rec["payload"]),
                        JobOptions(**json.loads(rec["options"]),
                                   idempotency_key=f"schedule:{name}:{tick_at:.3f}"),
                        tenant=tenant, links={"schedule": name, "tick": _iso(tick_at)})
                    job_id = info.id
                except IdempotencyKeyReused as exc:
                    # another scheduler fired this tick from the schedule as it was
                    # before a change: the tick has its job
                    job_id = exc.job_id
                fired.append(job_id)
            # only one scheduler moves the schedule on; the idempotency key already made
            # sure a second one that got this far enqueued nothing new
            self._cas(keys=[self.index, key],
                      args=[member, repr(due), repr(next_due),
                            repr(to_fire[-1]) if to_fire else rec.get("last_run_at", ""),
                            job_id])
        return fired
