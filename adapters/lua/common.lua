-- Shared by every script. ARGV[1] is the namespace, ARGV[2] the time (Unix seconds).
-- The loader puts CLAIM_FIELDS, DISPATCH_FIELDS and BUCKETS (from adapters/record.py)
-- before this file.
local ns = ARGV[1]
local now = tonumber(ARGV[2])
-- HMGET as a table by field name; a field that is not there reads as false.
local function hmget(key, names)
  local v = redis.call('HMGET', key, unpack(names))
  local t = {}
  for i, n in ipairs(names) do t[n] = v[i] end
  return t
end
-- A job's history is one hash field, JSON lines: the hot paths (create, claim, finish)
-- read and write it with the HMGET and HSET they do anyway, so it costs no command.
local function ev(state, attempt, extra)
  local e = {state=state, at=now, attempt=tonumber(attempt) or 0}
  if extra then for k, v in pairs(extra) do e[k] = v end end
  return cjson.encode(e)
end
local function append(old, line)
  if old and old ~= '' then return old .. '\n' .. line end
  return line
end
local function event(key, state, attempt, extra)
  redis.call('HSET', key, 'events', append(redis.call('HGET', key, 'events'), ev(state, attempt, extra)))
end
-- A job ended: its record expires in ttl, and each caller waiting for it to end (the
-- record's 'waited', counted by watch.lua) is woken by one element on {ns}done:{id}, a
-- list that expires soon after. waited: the field as read already, or nil to read it.
local function close(key, ttl, waited)
  redis.call('EXPIRE', key, ttl)
  if waited == nil then waited = redis.call('HGET', key, 'waited') end
  local n = tonumber(waited)
  if n and n > 0 then
    local done = ns .. 'done:' .. string.sub(key, #ns + 5)  -- key is ns .. 'job:' .. id
    local ones = {}
    for i = 1, math.min(n, 100) do ones[i] = '1' end
    redis.call('RPUSH', done, unpack(ones))
    redis.call('EXPIRE', done, 60)
  end
end
-- {ns}queued:{queue} holds the ids of the queue's jobs in state queued, by the time they
-- became queued: the backlog per queue (/readyz, /metrics) without reading any record.
local function unqueue(id, q)
  if q and q ~= '' then redis.call('ZREM', ns .. 'queued:' .. q, id) end
end
-- A deadline for the maintenance loops (a job due, a job's expiry). The loops sleep until
-- the earliest deadline they know, {ns}wake_at (written by maintain.lua); one earlier
-- than that wakes one of them through {ns}wake (a list of at most one element).
local function deadline(set, at, id)
  redis.call('ZADD', ns .. set, at, id)
  local known = tonumber(redis.call('GET', ns .. 'wake_at'))
  if known and tonumber(at) < known then
    redis.call('SET', ns .. 'wake_at', at)
    redis.call('LPUSH', ns .. 'wake', '1')
    redis.call('LTRIM', ns .. 'wake', 0, 0)
  end
end
local ACTIVE = {scheduled=true, queued=true, retrying=true}
local ENDED = {succeeded=true, failed=true, canceled=true}
-- The state indexes, scored by creation time like {ns}t:{tenant}: {ns}ts:{tenant}:{state}
-- and {ns}as:{state} (every tenant), for every state but succeeded (dense: its pages walk
-- {ns}t:{tenant} or {ns}all). A job is in at most one state's pair, moved here wherever its
-- state changes; an ended one goes to {ns}gone by when its record expires, and the
-- maintenance tick drops the index entries of records that are gone.
local INDEXED = {scheduled=true, queued=true, started=true, retrying=true, failed=true,
                 canceled=true}
-- {ns}ty:{tenant}:{type} and {ns}aty:{type}: a type's jobs by creation time, written once
-- at create, so a type filter walks that type's jobs alone; they leave with the record.
-- Index writes: at once, or where a script collects them (zadds is a table: create.lua
-- writing a batch) one ZADD per key when it calls flush_zadds; nothing reads those
-- indexes in between.
local zadds, zadd_keys = nil, nil
local function zadd(key, score, member)
  if not zadds then return redis.call('ZADD', key, score, member) end
  local t = zadds[key]
  if not t then
    t = {}
    zadds[key] = t
    zadd_keys[#zadd_keys + 1] = key
  end
  t[#t + 1] = score
  t[#t + 1] = member
end
local function flush_zadds()
  for _, key in ipairs(zadd_keys or {}) do
    local t = zadds[key]
    for i = 1, #t, 4000 do redis.call('ZADD', key, unpack(t, i, math.min(i + 3999, #t))) end
  end
  zadds, zadd_keys = nil, nil
end
local function type_index(id, tenant, jtype, created)
  zadd(ns .. 'ty:' .. tenant .. ':' .. jtype, created, id)
  zadd(ns .. 'aty:' .. jtype, created, id)
end
local function type_unindex(id, tenant, jtype)
  if jtype and jtype ~= '' then
    redis.call('ZREM', ns .. 'ty:' .. tenant .. ':' .. jtype, id)
    redis.call('ZREM', ns .. 'aty:' .. jtype, id)
  end
end
local function move(id, tenant, created, from, to, ttl, jtype)
  if from == to then return end
  if INDEXED[from] then
    redis.call('ZREM', ns .. 'ts:' .. tenant .. ':' .. from, id)
    redis.call('ZREM', ns .. 'as:' .. from, id)
  end
  if INDEXED[to] then
    zadd(ns .. 'ts:' .. tenant .. ':' .. to, created, id)
    zadd(ns .. 'as:' .. to, created, id)
  end
  if ENDED[to] then
    -- the type names its index in the gone entry: the caller's if it has read it
    jtype = jtype or redis.call('HGET', ns .. 'job:' .. id, 'type') or ''
    redis.call('ZADD', ns .. 'gone', now + ttl, to .. ' ' .. tenant .. ' ' .. id .. ' ' .. jtype)
  end
end
-- {ns}m:{minute}: per-minute counters for charts (outcomes, run-time buckets), ~25 h.
-- The outcome comes first, so the hash is created by one that counts 1: it gets its
-- expiry then, not on every call.
local function per_minute(a, b, c)
  local mk = ns .. 'm:' .. tostring(math.floor(now / 60) * 60)
  if redis.call('HINCRBY', mk, a, 1) == 1 then redis.call('EXPIRE', mk, 90000) end
  if b then redis.call('HINCRBY', mk, b, 1) end
  if c then redis.call('HINCRBY', mk, c, 1) end
end
local function count_end(key, outcome)
  local tb = redis.call('HMGET', key, 'type', 'backend')
  redis.call('HINCRBY', ns .. 'stats', 'finished|' .. tb[1] .. '|' .. tb[2] .. '|' .. outcome, 1)
end
-- Workflows: what a job's end means for the jobs after it. Called wherever a job ends;
-- w is the job's {wf, wf_role, wf_next} when the caller has read them already.
local function wf_end(key, outcome, ttl, w)
  w = w or hmget(key, {'wf', 'wf_role', 'wf_next'})
  if not w.wf or w.wf == '' then return end
  local wk = ns .. 'wf:' .. w.wf
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
    local st = hmget(nk, {'state', 'run_at'})
    if st.state == 'scheduled' then
      redis.call('HSET', nk, 'upstream', upstream, 'waiting', '')
      -- a delay or run_at of its own is the earliest it starts once released
      deadline('due', math.max(now, tonumber(st.run_at) or 0), nid)
    end
  end
  local function cancel_waiting(nid, reason)
    local nk = ns .. 'job:' .. nid
    local st = hmget(nk, {'state', 'attempts', 'queue', 'tenant', 'created_at'})
    if st.state and ACTIVE[st.state] then
      redis.call('HSET', nk, 'state', 'canceled', 'cancel_reason', reason, 'finished_at', ARGV[2], 'token', '')
      unqueue(nid, st.queue)
      move(nid, st.tenant, st.created_at, st.state, 'canceled', ttl)
      redis.call('ZREM', ns .. 'due', nid)
      redis.call('ZREM', ns .. 'dispatching', nid)
      redis.call('ZREM', ns .. 'expiries', nid)
      event(nk, 'canceled', st.attempts, {reason=reason})
      count_end(nk, 'canceled')
      close(nk, ttl)
    end
  end
  local ended = (outcome == 'succeeded' and 'succeeded') or (outcome == 'canceled' and 'canceled') or 'failed'
  local reason = (outcome == 'canceled' and 'upstream_canceled') or 'upstream_failed'
  if kind == 'chain' then
    if outcome == 'succeeded' then
      if w.wf_next and w.wf_next ~= '' then
        release(w.wf_next, redis.call('HGET', key, 'result'))
      else
        finish('succeeded')
      end
    else
      local nid = w.wf_next
      while nid and nid ~= '' do
        cancel_waiting(nid, reason)
        nid = redis.call('HGET', ns .. 'job:' .. nid, 'wf_next')
      end
      finish(ended)
    end
  elseif kind == 'group' then
    local left = redis.call('HINCRBY', wk, 'pending', -1)
    if outcome ~= 'succeeded' then finish(ended) elseif left <= 0 then finish('succeeded') end
  elseif w.wf_role == 'body' then
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
-- Release parked jobs of queues that are not paused (a resume, or the maintenance sweep
-- finishing a resume whose caller died): each goes to the due set at the time it became
-- queued, so the maintenance release publishes it with a new token, oldest first and by
-- priority, as any due job. A job that is no longer queued (canceled, expired) is dropped.
-- queue '' is every queue with parked jobs; returns how many left the parked sets (0: none
-- is left on a queue that is not paused).
local function release_parked(queue, limit)
  local queues = {queue}
  if queue == '' then queues = redis.call('SMEMBERS', ns .. 'parked') end
  local n = 0
  for _, q in ipairs(queues) do
    if n >= limit then break end
    local pk = ns .. 'parked:' .. q
    if redis.call('HEXISTS', ns .. 'paused', q) == 0 then
      local batch = redis.call('ZRANGE', pk, 0, limit - n - 1, 'WITHSCORES')
      for i = 1, #batch, 2 do
        local id, since = batch[i], batch[i + 1]
        redis.call('ZREM', pk, id)
        local s = hmget(ns .. 'job:' .. id, {'state', 'token'})
        if s.state == 'queued' and (not s.token or s.token == '') then
          deadline('due', since, id)
        end
        n = n + 1
      end
      if redis.call('EXISTS', pk) == 0 then redis.call('SREM', ns .. 'parked', q) end
    end
  end
  return n
end
-- A live worker's announcement (worker_beat.lua; maintain.lua when the loop beats as it
-- maintains). The live set's score is the worker's last beat (readers take "seen at"
-- from it); its info, which does not change, is written when its record is not there
-- (the first beat, or after it expired or was taken away), else only its expiry is
-- renewed. prune drops the entries of workers silent for longer than ttl; the info is
-- ARGV[info_at], ARGV[info_at + 1], ... (field, value, ...).
local function worker_beat(id, ttl, prune, info_at)
  local key = ns .. 'worker:' .. id
  if redis.call('EXPIRE', key, math.floor(ttl) + 1) == 0 then
    redis.call('HSET', key, unpack(ARGV, info_at))
    redis.call('EXPIRE', key, math.floor(ttl) + 1)
  end
  redis.call('ZADD', ns .. 'workers', now, id)
  if prune then redis.call('ZREMRANGEBYSCORE', ns .. 'workers', '-inf', now - ttl) end
end
