"""The ledger: Switchyard's own record of every job, in Redis.

Each state change is one Lua script, so a change is atomic and costs one round trip.
Keys (``ns`` is ``SWITCHYARD_NAMESPACE``, ``sy:`` by default):

    {ns}job:{id}              hash: the job (see ``JobInfo.from_record``); its ``events``
                              field is its history, one JSON object per line
    {ns}t:{tenant}            zset: the tenant's job ids by creation time
    {ns}idem:{tenant}:{key}   string: idempotency key -> "<job id> <fingerprint>" (sha256 of
                              the request's type, payload and options)
    {ns}due                   zset: jobs waiting for their time (delay, backoff, rate slot)
    {ns}dispatching           zset: jobs being handed to the engine, by deadline
    {ns}leases                zset: running jobs, by the time their lease runs out
    {ns}expiries              zset: jobs with ``expires_at`` that have not started
    {ns}queues                set: every queue a job was ever enqueued to
    {ns}queued:{queue}        zset: the queue's jobs in state queued, by when they became so
    {ns}rl:{type}             zset: recent starts of a rate-limited job type
    {ns}workers, {ns}worker:{id}   live workers and what they listen to

Every delivery handed to an engine carries a *token*; a worker runs a job only if
the token it was given is the job's current one, so a stale or duplicated message
(a broker redelivery, a reaper's second dispatch) is dropped, never run twice.
"""

from __future__ import annotations

import dataclasses
import json
import time

import redis

from .errors import IdempotencyKeyReused
from .settings import AdapterSettings

__all__ = ["Ledger", "Dispatch", "ClaimResult"]

_LUA_COMMON = """
local ns = ARGV[1]
local now = tonumber(ARGV[2])
-- A job's history is one hash field, JSON lines: the hot paths (create, claim, finish)
-- read and write it with the HMGET and HSET they do anyway, so it costs no command.
local function ev(state, attempt, extra)
  local e = {state=state, at=now, attempt=tonumber(attempt) or 0}
  if extra then for k, v in pairs(extra) do e[k] = v end end
  return cjson.encode(e)
end
local function append(old, line)
  if old and old ~= '' then return old .. '\\n' .. line end
  return line
end
local function event(key, state, attempt, extra)
  redis.call('HSET', key, 'events', append(redis.call('HGET', key, 'events'), ev(state, attempt, extra)))
end
local function close(key, ttl)
  redis.call('EXPIRE', key, ttl)
end
-- {ns}queued:{queue} holds the ids of the queue's jobs in state queued, by the time they
-- became queued: the backlog per queue (/readyz, /metrics) without reading any record.
local function unqueue(id, q)
  if q and q ~= '' then redis.call('ZREM', ns .. 'queued:' .. q, id) end
end
local BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
local ACTIVE = {scheduled=true, queued=true, retrying=true}
local ENDED = {succeeded=true, failed=true, canceled=true}
local function count_end(key, outcome)
  local tb = redis.call('HMGET', key, 'type', 'backend')
  redis.call('HINCRBY', ns .. 'stats', 'finished|' .. tb[1] .. '|' .. tb[2] .. '|' .. outcome, 1)
end
-- Workflows: what a job's end means for the jobs after it. Called wherever a job ends.
local function wf_end(key, outcome, ttl, w)
  w = w or redis.call('HMGET', key, 'wf', 'wf_role', 'wf_next')
  if not w[1] or w[1] == '' then return end
  local wk = ns .. 'wf:' .. w[1]
  local kind = redis.call('HGET', wk, 'kind')
  if not kind then return end
  local function finish(state)
    if redis.call('HGET', wk, 'state') == 'running' then
      redis.call('HSET', wk, 'state', state, 'finished_at', ARGV[2])
      redis.call('EXPIRE', wk, ttl)
    end
  end
  local function release(nid, upstream)
    local nk = ns .. 'job:' .. nid
    local st = redis.call('HMGET', nk, 'state', 'run_at')
    if st[1] == 'scheduled' then
      redis.call('HSET', nk, 'upstream', upstream, 'waiting', '')
      -- a delay or run_at of its own is the earliest it starts once released
      redis.call('ZADD', ns .. 'due', math.max(now, tonumber(st[2]) or 0), nid)
    end
  end
  local function cancel_waiting(nid, reason)
    local nk = ns .. 'job:' .. nid
    local st = redis.call('HMGET', nk, 'state', 'attempts', 'queue')
    if st[1] and ACTIVE[st[1]] then
      redis.call('HSET', nk, 'state', 'canceled', 'cancel_reason', reason, 'finished_at', ARGV[2], 'token', '')
      unqueue(nid, st[3])
      redis.call('ZREM', ns .. 'due', nid)
      redis.call('ZREM', ns .. 'dispatching', nid)
      redis.call('ZREM', ns .. 'expiries', nid)
      event(nk, 'canceled', st[2], {reason=reason})
      count_end(nk, 'canceled')
      close(nk, ttl)
    end
  end
  local ended = (outcome == 'succeeded' and 'succeeded') or (outcome == 'canceled' and 'canceled') or 'failed'
  local reason = (outcome == 'canceled' and 'upstream_canceled') or 'upstream_failed'
  if kind == 'chain' then
    if outcome == 'succeeded' then
      if w[3] and w[3] ~= '' then release(w[3], redis.call('HGET', key, 'result')) else finish('succeeded') end
    else
      local nid = w[3]
      while nid and nid ~= '' do
        cancel_waiting(nid, reason)
        nid = redis.call('HGET', ns .. 'job:' .. nid, 'wf_next')
      end
      finish(ended)
    end
  elseif kind == 'group' then
    local left = redis.call('HINCRBY', wk, 'pending', -1)
    if outcome ~= 'succeeded' then finish(ended) elseif left <= 0 then finish('succeeded') end
  elseif w[2] == 'body' then
    finish(ended)
  else
    local body = redis.call('HGET', wk, 'body')
    if outcome ~= 'succeeded' then
      cancel_waiting(body, reason)
      finish(ended)
    elseif redis.call('HINCRBY', wk, 'pending', -1) <= 0 then
      local results = {}
      for i, hid in ipairs(cjson.decode(redis.call('HGET', wk, 'header'))) do
        local r = redis.call('HGET', ns .. 'job:' .. hid, 'result')
        results[i] = (r and r ~= '') and r or 'null'
      end
      release(body, '[' .. table.concat(results, ',') .. ']')
    end
  end
end
"""

# ARGV: ns, now, idem_ttl, grace, then per record: fingerprint, n, n field/value pairs
# -> {created (1) or idempotent hit (0), id, ...}, or {-1, index, first job's id} when a
# record's idempotency key was used with other parameters (then nothing is written)
_CREATE = _LUA_COMMON + """
local idem_ttl = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local recs = {}
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  local f = {}
  for j = i + 2, i + 1 + 2 * n, 2 do f[ARGV[j]] = ARGV[j + 1] end
  recs[#recs + 1] = {fp = ARGV[i], f = f, first = i + 2, last = i + 1 + 2 * n}
  i = i + 2 + 2 * n
end
-- Every key is checked before anything is written, so a reused key anywhere in a
-- batch writes nothing at all. An idempotency record is '<job id> <fingerprint>'.
local seen = {}
for r, rec in ipairs(recs) do
  local key = rec.f['idempotency_key']
  if key and key ~= '' then
    local ik = ns .. 'idem:' .. rec.f['tenant'] .. ':' .. key
    local prior = seen[ik]
    if not prior then
      local stored = redis.call('GET', ik)
      if stored then
        local eid, efp = string.match(stored, '^(%S+) ?(.*)$')
        if redis.call('EXISTS', ns .. 'job:' .. eid) == 1 then prior = {eid, efp} end
      end
    end
    if prior then
      -- a record of an older version has no fingerprint: it matches anything
      if prior[2] ~= '' and prior[2] ~= rec.fp then return {-1, r - 1, prior[1]} end
      rec.hit = prior[1]
    else
      seen[ik] = {rec.f['id'], rec.fp}
      rec.ik = ik
    end
  end
end
local out = {}
for _, rec in ipairs(recs) do
  local f = rec.f
  if rec.hit then
    out[#out + 1] = 0
    out[#out + 1] = rec.hit
  else
    local id = f['id']
    if rec.ik then redis.call('SET', rec.ik, id .. ' ' .. rec.fp, 'EX', idem_ttl) end
    local key = ns .. 'job:' .. id
    local fields = {unpack(ARGV, rec.first, rec.last)}
    fields[#fields + 1] = 'events'
    fields[#fields + 1] = ev(f['state'], 0)
    redis.call('HSET', key, unpack(fields))
    redis.call('ZADD', ns .. 't:' .. f['tenant'], ARGV[2], id)
    if f['state'] == 'scheduled' then
      if f['waiting'] ~= '1' then redis.call('ZADD', ns .. 'due', f['run_at'], id) end
    elseif grace >= 0 then
      -- grace < 0: the engine's publish commits in this same transaction, no guard needed
      redis.call('ZADD', ns .. 'dispatching', now + grace, id)
    end
    if f['expires_at'] ~= '' then
      redis.call('ZADD', ns .. 'expiries', f['expires_at'], id)
    end
    redis.call('SADD', ns .. 'queues', f['queue'])
    if f['state'] == 'queued' then redis.call('ZADD', ns .. 'queued:' .. f['queue'], now, id) end
    redis.call('HINCRBY', ns .. 'stats', 'enqueued|' .. f['type'] .. '|' .. f['backend'], 1)
    out[#out + 1] = 1
    out[#out + 1] = id
  end
end
return out
"""

# ARGV: ns, now, id, tenant, idempotency_key
_DELETE = _LUA_COMMON + """
local id = ARGV[3]
local key = ns .. 'job:' .. id
local tb = redis.call('HMGET', key, 'type', 'backend', 'queue')
unqueue(id, tb[3])
if tb[1] and tb[2] then
  -- the job was never published: take back its enqueue count too
  redis.call('HINCRBY', ns .. 'stats', 'enqueued|' .. tb[1] .. '|' .. tb[2], -1)
end
redis.call('DEL', key, key .. ':events')
redis.call('ZREM', ns .. 't:' .. ARGV[4], id)
redis.call('ZREM', ns .. 'due', id)
redis.call('ZREM', ns .. 'dispatching', id)
redis.call('ZREM', ns .. 'expiries', id)
if ARGV[5] ~= '' then
  local ik = ns .. 'idem:' .. ARGV[4] .. ':' .. ARGV[5]
  local stored = redis.call('GET', ik)
  if stored and string.match(stored, '^(%S+)') == id then redis.call('DEL', ik) end
end
return 1
"""

# ARGV: ns, now, id, token, worker, lease_seconds, job_ttl
_CLAIM = _LUA_COMMON + """
local id, token = ARGV[3], ARGV[4]
local key = ns .. 'job:' .. id
local s = redis.call('HMGET', key, 'state', 'token', 'expires_at', 'rate', 'type', 'attempts',
                     'payload', 'tenant', 'queue', 'timeout', 'max_retries', 'links', 'upstream',
                     'events')
if not s[1] then return {'drop', 'unknown'} end
if s[2] ~= token then return {'drop', 'stale'} end
if s[1] ~= 'queued' then return {'drop', s[1]} end
if s[3] and s[3] ~= '' and tonumber(s[3]) <= now then
  redis.call('HSET', key, 'state', 'canceled', 'cancel_reason', 'expired',
             'finished_at', ARGV[2], 'token', '')
  redis.call('ZREM', ns .. 'expiries', id)
  unqueue(id, s[9])
  event(key, 'canceled', s[6], {reason='expired'})
  count_end(key, 'canceled')
  wf_end(key, 'canceled', tonumber(ARGV[7]))
  close(key, tonumber(ARGV[7]))
  return {'drop', 'expired'}
end
if s[4] and s[4] ~= '' then
  local limit, window = string.match(s[4], '^(%d+) (.+)$')
  limit, window = tonumber(limit), tonumber(window)
  local rk = ns .. 'rl:' .. s[5]
  redis.call('ZREMRANGEBYSCORE', rk, '-inf', '(' .. tostring(now - window))
  if redis.call('ZCARD', rk) >= limit then
    local oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
    local at = tonumber(oldest[2]) + window
    redis.call('HSET', key, 'token', '')
    redis.call('ZADD', ns .. 'due', at, id)
    return {'defer', tostring(at)}
  end
  redis.call('ZADD', rk, ARGV[2], id .. ':' .. s[6])
  redis.call('EXPIRE', rk, math.ceil(window) + 1)
end
-- One read above and one write here: this runs once per job, on every job.
local attempts = (tonumber(s[6]) or 0) + 1
redis.call('HSET', key, 'attempts', attempts, 'state', 'started', 'started_at', ARGV[2],
           'worker', ARGV[5], 'finished_at', '',
           'events', append(s[14], ev('started', attempts, {worker=ARGV[5]})))
redis.call('ZADD', ns .. 'leases', now + tonumber(ARGV[6]), id)
unqueue(id, s[9])
if s[3] and s[3] ~= '' then redis.call('ZREM', ns .. 'expiries', id) end
return {'run', tostring(attempts), s[5], s[7], s[8], s[9], s[10], s[11], s[12] or '', s[13] or ''}
"""

# ARGV: ns, now, id, token, outcome, job_ttl, a, b
#   succeeded: a = result JSON; failed: a = error JSON
#   canceled: a = reason, b = error JSON or ''; retry: a = error JSON, b = due time
_FINISH = _LUA_COMMON + """
local id, token, outcome = ARGV[3], ARGV[4], ARGV[5]
local key = ns .. 'job:' .. id
-- One read, one write and the bookkeeping: this runs once per attempt, on every job.
local s = redis.call('HMGET', key, 'token', 'attempts', 'type', 'backend', 'started_at', 'events',
                     'wf', 'wf_role', 'wf_next')
if s[1] ~= token then return 0 end
redis.call('ZREM', ns .. 'leases', id)
local ran = now - (tonumber(s[5]) or now)
local bucket = '+Inf'
for _, le in ipairs(BUCKETS) do
  if ran <= le then bucket = tostring(le) break end
end
local tb = s[3] .. '|' .. s[4]
-- One counter per (outcome, duration bucket): the histogram and the finished counts
-- are both sums of these.
redis.call('HINCRBY', ns .. 'stats', 'ran|' .. tb .. '|' .. outcome .. '|' .. bucket, 1)
redis.call('HINCRBYFLOAT', ns .. 'stats', 'duration_sum|' .. tb, ran)
if outcome == 'retry' then
  redis.call('HSET', key, 'state', 'retrying', 'error', ARGV[7], 'token', '', 'run_at', ARGV[8],
             'events', append(s[6], ev('retrying', s[2], {run_at=tonumber(ARGV[8])})))
  redis.call('ZADD', ns .. 'due', ARGV[8], id)
  return 1
end
local events = append(s[6], ev(outcome, s[2]))
if outcome == 'succeeded' then
  redis.call('HSET', key, 'state', outcome, 'result', ARGV[7], 'finished_at', ARGV[2], 'token', '',
             'events', events)
elseif outcome == 'failed' then
  redis.call('HSET', key, 'state', outcome, 'error', ARGV[7], 'finished_at', ARGV[2], 'token', '',
             'events', events)
elseif ARGV[8] ~= '' then
  redis.call('HSET', key, 'state', outcome, 'cancel_reason', ARGV[7], 'finished_at', ARGV[2],
             'token', '', 'events', events, 'error', ARGV[8])
else
  redis.call('HSET', key, 'state', outcome, 'cancel_reason', ARGV[7], 'finished_at', ARGV[2],
             'token', '', 'events', events)
end
if s[7] and s[7] ~= '' then wf_end(key, outcome, tonumber(ARGV[6]), {s[7], s[8], s[9]}) end
close(key, tonumber(ARGV[6]))
return 1
"""

# ARGV: ns, now, id, reason, job_ttl
_CANCEL = _LUA_COMMON + """
local id = ARGV[3]
local key = ns .. 'job:' .. id
local s = redis.call('HMGET', key, 'state', 'attempts', 'queue')
if not s[1] then return 'missing' end
if ENDED[s[1]] then return 'ended:' .. s[1] end
if s[1] == 'started' then
  redis.call('HSET', key, 'cancel_requested', '1', 'cancel_reason', ARGV[4])
  event(key, 'cancel_requested', s[2], {reason=ARGV[4]})
  return 'requested'
end
redis.call('HSET', key, 'state', 'canceled', 'cancel_reason', ARGV[4], 'finished_at', ARGV[2],
           'token', '')
unqueue(id, s[3])
redis.call('ZREM', ns .. 'due', id)
redis.call('ZREM', ns .. 'dispatching', id)
redis.call('ZREM', ns .. 'expiries', id)
event(key, 'canceled', s[2], {reason=ARGV[4]})
count_end(key, 'canceled')
wf_end(key, 'canceled', tonumber(ARGV[5]))
close(key, tonumber(ARGV[5]))
return 'canceled'
"""

# ARGV: ns, now, id, token, lease_seconds
_HEARTBEAT = _LUA_COMMON + """
local key = ns .. 'job:' .. ARGV[3]
local s = redis.call('HMGET', key, 'token', 'cancel_requested')
if s[1] ~= ARGV[4] then return 'lost' end
redis.call('ZADD', ns .. 'leases', now + tonumber(ARGV[5]), ARGV[3])
if s[2] == '1' then return 'cancel' end
return 'ok'
"""

# ARGV: ns, now, id, token, id, token, ...
_REDELIVER = _LUA_COMMON + """
local n = 0
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = ns .. 'job:' .. id
  local s = redis.call('HMGET', key, 'state', 'token', 'attempts')
  -- only a delivery that is still the job's current one and was never claimed
  if s[1] == 'queued' and s[2] == token then
    redis.call('HSET', key, 'token', '')
    redis.call('ZREM', ns .. 'dispatching', id)
    redis.call('ZADD', ns .. 'due', now, id)
    event(key, 'queued', s[3], {reason='delivery_lost'})
    n = n + 1
  end
end
return n
"""

# ARGV: ns, now, limit, lost_cap, grace, job_ttl
_MAINTAIN = _LUA_COMMON + """
local limit, cap, grace, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
local function new_token() return 'r' .. redis.call('INCR', ns .. 'seq') end
local function emit(id, key, tok)
  local r = redis.call('HMGET', key, 'queue', 'priority', 'timeout', 'type')
  for _, v in ipairs({id, tok, r[1], r[2], r[3], r[4]}) do table.insert(out, v) end
end
local function cancel(id, key, reason, attempts)
  redis.call('HSET', key, 'state', 'canceled', 'cancel_reason', reason, 'finished_at', ARGV[2], 'token', '')
  unqueue(id, redis.call('HGET', key, 'queue'))
  redis.call('ZREM', ns .. 'due', id)
  redis.call('ZREM', ns .. 'dispatching', id)
  redis.call('ZREM', ns .. 'expiries', id)
  event(key, 'canceled', attempts, {reason=reason})
  count_end(key, 'canceled')
  wf_end(key, 'canceled', ttl)
  close(key, ttl)
end
-- 1. running jobs whose worker stopped renewing the lease
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ns .. 'leases', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', ns .. 'leases', id)
  local key = ns .. 'job:' .. id
  local s = redis.call('HMGET', key, 'state', 'cancel_requested', 'attempts', 'cancel_reason')
  if s[1] == 'started' then
    if s[2] == '1' then
      cancel(id, key, s[4] or 'requested', s[3])
    else
      local n = redis.call('HINCRBY', key, 'lost', 1)
      local err = cjson.encode({type='WorkerLost', message='the worker running attempt ' .. s[3] ..
        ' died or stopped answering (lost delivery ' .. n .. ' of at most ' .. cap .. ')'})
      if n >= cap then
        redis.call('HSET', key, 'state', 'failed', 'error', err, 'finished_at', ARGV[2], 'token', '')
        event(key, 'failed', s[3], {reason='worker_lost'})
        count_end(key, 'failed')
        wf_end(key, 'failed', ttl)
        close(key, ttl)
      else
        redis.call('HSET', key, 'state', 'queued', 'error', err, 'token', '')
        redis.call('ZADD', ns .. 'due', now, id)
        redis.call('ZADD', ns .. 'queued:' .. redis.call('HGET', key, 'queue'), now, id)
        event(key, 'queued', s[3], {reason='worker_lost'})
      end
    end
  end
end
-- 2. jobs that expired before they started
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ns .. 'expiries', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', ns .. 'expiries', id)
  local key = ns .. 'job:' .. id
  local s = redis.call('HMGET', key, 'state', 'attempts')
  if ACTIVE[s[1]] then cancel(id, key, 'expired', s[2]) end
end
-- 3. jobs whose time has come, handed out by priority: jobs due together (the same
-- instant, or one tick) reach the engine high first, whatever their order in the set
local released = {high = {}, default = {}, low = {}}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ns .. 'due', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', ns .. 'due', id)
  local key = ns .. 'job:' .. id
  local s = redis.call('HMGET', key, 'state', 'attempts', 'priority', 'queue')
  if ACTIVE[s[1]] then
    local tok = new_token()
    redis.call('HSET', key, 'state', 'queued', 'token', tok)
    -- NX: a job already queued (waiting for a rate slot) keeps its place in the backlog
    redis.call('ZADD', ns .. 'queued:' .. s[4], 'NX', now, id)
    redis.call('ZADD', ns .. 'dispatching', now + grace, id)
    if s[1] ~= 'queued' then event(key, 'queued', s[2]) end
    table.insert(released[s[3]] or released.default, {id, key, tok})
  end
end
for _, priority in ipairs({'high', 'default', 'low'}) do
  for _, r in ipairs(released[priority]) do emit(r[1], r[2], r[3]) end
end
-- 4. dispatches that were never confirmed (the publisher died half-way)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ns .. 'dispatching', '-inf', now, 'LIMIT', 0, limit)) do
  local key = ns .. 'job:' .. id
  if redis.call('HGET', key, 'state') == 'queued' then
    local tok = new_token()
    redis.call('HSET', key, 'token', tok)
    redis.call('ZADD', ns .. 'dispatching', now + grace, id)
    emit(id, key, tok)
  else
    redis.call('ZREM', ns .. 'dispatching', id)
  end
end
return out
"""


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


class Ledger:
    """Reads and writes job records; every write is one atomic script."""

    def __init__(self, client: redis.Redis, settings: AdapterSettings):
        self.r = client
        self.s = settings
        self.ns = settings.namespace
        self._create = client.register_script(_CREATE)
        self._create_loaded = False
        self._delete = client.register_script(_DELETE)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._maintain = client.register_script(_MAINTAIN)
        self._redeliver = client.register_script(_REDELIVER)

    def key(self, job_id: str) -> str:
        return f"{self.ns}job:{job_id}"

    def idempotency_key(self, tenant: str, key: str) -> str:
        """The key holding ``"<job id> <fingerprint>"`` for a tenant's idempotency key."""
        return f"{self.ns}idem:{tenant}:{key}"

    # -- writes from the API side ---------------------------------------------------
    def create_many(self, records: list[dict], now: float,
                    workflow: dict | None = None) -> list[tuple[bool, str]]:
        """Write the records (and the ``workflow`` holding them), all or none, in one
        round trip; ``(created, id)`` each (an idempotent hit returns the first job's id
        and ``created=False``), every record under a dispatch guard.

        Raises ``IdempotencyKeyReused`` (and writes nothing) when a record's key names
        a job enqueued with other parameters (``rec["fingerprint"]`` differs)."""
        if workflow is None:
            return self._outcomes(self._create(args=self._create_argv(records, now)))
        pipe = self.r.pipeline(transaction=True)
        self._write_workflow(pipe, workflow, now)
        self._create(args=self._create_argv(records, now), client=pipe)
        return self._outcomes(pipe.execute()[-1])

    def _write_workflow(self, pipe, workflow: dict, now: float) -> None:
        pipe.hset(f"{self.ns}wf:{workflow['id']}", mapping=workflow)
        pipe.zadd(f"{self.ns}wft:{workflow['tenant']}", {workflow["id"]: now})

    @staticmethod
    def _outcomes(flat: list) -> list[tuple[bool, str]]:
        if flat and int(flat[0]) == -1:
            index, job_id = int(flat[1]), flat[2]
            raise IdempotencyKeyReused(
                f"idempotency_key was used for job {job_id} with other parameters; send "
                "the same request to get that job, or use a new key", job_id=job_id,
                index=index)
        return [(bool(int(flat[i])), flat[i + 1]) for i in range(0, len(flat), 2)]

    def create_in(self, pipeline: redis.client.Pipeline, records: list[dict], now: float,
                  workflow: dict | None = None) -> None:
        """Queue the creation of ``records`` (and their ``workflow``) in ``pipeline``, a
        transaction that also publishes them to an engine keeping its queues in this
        Redis: the records and their deliveries commit together, so they need no
        dispatch guard. The caller has checked their idempotency keys under WATCH. The
        script must be loaded (:meth:`load_create_script`); a missing one fails its
        command in the transaction, and the caller retries."""
        if not self._create_loaded:
            self.load_create_script()
        if workflow is not None:
            self._write_workflow(pipeline, workflow, now)
        pipeline.evalsha(self._create.sha, 0, *self._create_argv(records, now, guard=False))

    def load_create_script(self) -> None:
        """Load the create script into Redis (on first use, or after a restart)."""
        self._create.sha = self.r.script_load(_CREATE)
        self._create_loaded = True

    def _create_argv(self, records: list[dict], now: float, guard: bool = True) -> list:
        argv = [self.ns, repr(now), self.s.idempotency_ttl, self.s.lease_seconds if guard else -1]
        for rec in records:
            pairs = [(k, v) for k, v in rec.items() if k != "fingerprint"]
            argv += [rec.get("fingerprint") or "", len(pairs)]
            for k, v in pairs:
                argv += [k, v]
        return argv

    def load_workflow(self, workflow_id: str) -> dict[str, str]:
        return self.r.hgetall(f"{self.ns}wf:{workflow_id}")

    def load_many(self, job_ids: list[str]) -> list[dict[str, str]]:
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.key(job_id))
        return pipe.execute()

    def delete_many(self, items: list[tuple[str, str, str]], workflow: dict | None = None) -> None:
        """Remove never-published records ``(id, tenant, idempotency_key)`` (and their
        ``workflow``)."""
        pipe = self.r.pipeline(transaction=True)
        for job_id, tenant, idem in items:
            self._delete(args=[self.ns, repr(time.time()), job_id, tenant, idem], client=pipe)
        if workflow is not None:
            pipe.delete(f"{self.ns}wf:{workflow['id']}")
            pipe.zrem(f"{self.ns}wft:{workflow['tenant']}", workflow["id"])
        pipe.execute()

    def dispatched(self, job_ids: list[str], pipeline: redis.client.Pipeline | None = None) -> None:
        """The engine has the jobs: lift their dispatch guard (in ``pipeline`` if given, so
        an engine that shares this Redis can commit it with its own write)."""
        (self.r if pipeline is None else pipeline).zrem(f"{self.ns}dispatching", *job_ids)

    def cancel(self, job_id: str, reason: str, now: float) -> str:
        """``canceled``, ``requested`` (it is running), ``ended:<state>`` or ``missing``."""
        return self._cancel(args=[self.ns, repr(now), job_id, reason, self.s.job_ttl])

    # -- writes from the worker side ------------------------------------------------
    def claim(self, job_id: str, token: str, worker: str, now: float) -> ClaimResult:
        """Atomically decide whether this delivery runs, and mark it started if so."""
        r = self._claim(args=[self.ns, repr(now), job_id, token, worker,
                              self.s.lease_seconds, self.s.job_ttl])
        if r[0] == "drop":
            return ClaimResult("drop", reason=r[1])
        if r[0] == "defer":
            return ClaimResult("defer", reason=r[1])
        return ClaimResult("run", attempt=int(r[1]), job_type=r[2], payload=r[3], tenant=r[4],
                           queue=r[5], timeout=float(r[6]), max_retries=int(r[7]), links=r[8],
                           upstream=r[9])

    def finish(self, job_id: str, token: str, outcome: str, a: str = "", b: str = "",
               now: float | None = None) -> bool:
        """Record the end of an attempt; False if this worker no longer owns the job."""
        now = time.time() if now is None else now
        return bool(self._finish(args=[self.ns, repr(now), job_id, token, outcome,
                                       self.s.job_ttl, a, b]))

    def heartbeat(self, job_id: str, token: str) -> str:
        """Renew the lease; ``ok``, ``cancel`` (a cancel is pending) or ``lost``."""
        return self._heartbeat(args=[self.ns, repr(time.time()), job_id, token,
                                     self.s.lease_seconds])

    def progress(self, job_id: str, token: str, progress: dict) -> None:
        """Store the job's latest progress."""
        self.r.hset(self.key(job_id), "progress", json.dumps(progress))

    def redeliver_unclaimed(self, deliveries: list[tuple[str, str]]) -> int:
        """Deliveries ``(job id, token)`` that a worker took from the engine and died with
        before claiming: each one that is still its job's current delivery is cancelled and
        the job released again (with a new token) at the next maintenance tick. Returns
        how many were."""
        if not deliveries:
            return 0
        argv: list = [self.ns, repr(time.time())]
        for job_id, token in deliveries:
            argv += [job_id, token]
        return int(self._redeliver(args=argv))

    def current_tokens(self, job_ids: list[str]) -> list[str | None]:
        """Each job's current delivery token (``""`` once it ended, ``None`` if unknown)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.key(job_id), "token")
        return pipe.execute()

    def maintain(self, now: float, limit: int = 100) -> list[Dispatch]:
        """Reap lost jobs, expire stale ones, release due ones; returns what to publish,
        the released jobs ordered by priority (``high`` first)."""
        flat = self._maintain(args=[self.ns, repr(now), limit, self.s.max_lost_deliveries,
                                    self.s.lease_seconds, self.s.job_ttl])
        return [Dispatch(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], float(flat[i + 4]),
                         flat[i + 5]) for i in range(0, len(flat), 6)]

    # -- reads ------------------------------------------------------------------------
    def load(self, job_id: str) -> dict[str, str]:
        return self.r.hgetall(self.key(job_id))

    def events(self, job_id: str) -> list[dict]:
        """The job's state changes, oldest first (JSON lines in its ``events`` field)."""
        raw = self.r.hget(self.key(job_id), "events")
        if raw is None:  # a record written before the history moved into the hash
            return [json.loads(e) for e in self.r.lrange(self.key(job_id) + ":events", 0, -1)]
        return [json.loads(line) for line in raw.split("\n") if line]

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
        index = f"{self.ns}t:{tenant}"
        score = after = None
        if cursor:
            raw_score, _, raw_after = cursor.partition("|")
            score, after = float(raw_score), (raw_after or None)
        chunk = max(limit, 100)
        found: list[dict] = []
        scanned = 0
        position: tuple[str, float] | None = None
        walker = self._walk(index, score, after, chunk)
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
            if gone:
                self.r.zrem(index, *gone)
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
        first; records that have expired are skipped. Paged by offset, so jobs created
        in the same instant (a batch) are all read."""
        index = f"{self.ns}t:{tenant}"
        offset = 0
        while True:
            ids = self.r.zrangebyscore(index, start, f"({end!r}", start=offset, num=batch)
            if not ids:
                return
            offset += len(ids)
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.key(job_id), fields)
            for values in pipe.execute():
                if any(v is not None for v in values):
                    yield dict(zip(fields, values))
            if len(ids) < batch:
                return

    def stats(self) -> dict[str, float]:
        """Counters since the ledger began: ``enqueued|type|backend``;
        ``ran|type|backend|outcome|le``, attempts that ran, by how they ended (``retry``
        or a final state) and duration bucket (per-bucket, not cumulative);
        ``duration_sum|type|backend``; and ``finished|type|backend|state``, jobs that
        ended without running (canceled or expired while waiting, lost for good).
        Records of older versions may also hold ``duration|type|backend|le``."""
        return {k: float(v) for k, v in self.r.hgetall(f"{self.ns}stats").items()}

    def counts_by_state(self) -> dict[str, int]:
        """Jobs waiting in the ledger right now: ``scheduled`` (due set) and ``running``."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(f"{self.ns}due")
        pipe.zcard(f"{self.ns}leases")
        due, running = pipe.execute()
        return {"scheduled": due, "running": running}

    def backlog(self) -> dict[str, tuple[int, float | None]]:
        """Per queue ever used: ``(jobs queued now, when the oldest of them became
        queued)``, the time ``None`` for an empty queue."""
        queues = sorted(self.r.smembers(f"{self.ns}queues"))
        if not queues:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for name in queues:
            pipe.zcard(f"{self.ns}queued:{name}")
            pipe.zrange(f"{self.ns}queued:{name}", 0, 0, withscores=True)
        answers = pipe.execute()
        return {name: (count, oldest[0][1] if oldest else None)
                for name, count, oldest in zip(queues, answers[::2], answers[1::2])}

    # -- workers ------------------------------------------------------------------------
    def worker_heartbeat(self, worker_id: str, info: dict, ttl: float) -> None:
        """Announce a live worker."""
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(f"{self.ns}worker:{worker_id}", mapping={**info, "seen_at": repr(now)})
        pipe.expire(f"{self.ns}worker:{worker_id}", int(ttl) + 1)
        pipe.zadd(f"{self.ns}workers", {worker_id: now})
        pipe.zremrangebyscore(f"{self.ns}workers", "-inf", now - ttl)
        pipe.execute()

    def worker_gone(self, worker_id: str) -> None:
        self.r.delete(f"{self.ns}worker:{worker_id}")
        self.r.zrem(f"{self.ns}workers", worker_id)

    def workers(self, ttl: float) -> list[dict]:
        """Workers seen within ``ttl`` seconds (each with its ``id`` too)."""
        ids = self.r.zrangebyscore(f"{self.ns}workers", time.time() - ttl, "+inf")
        pipe = self.r.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(f"{self.ns}worker:{worker_id}")
        return [{**w, "id": worker_id} for worker_id, w in zip(ids, pipe.execute()) if w]
