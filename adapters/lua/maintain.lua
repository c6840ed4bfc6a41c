-- The maintenance tick: reap lost jobs, expire stale ones, release due ones, and
-- dispatch again what was never confirmed; on a sweep, first release the parked jobs of
-- queues no longer paused (a resume whose caller died: release_parked in common.lua).
-- ARGV: ns, now, limit, lost_cap, grace, job_ttl, longest sleep, parked jobs to release
--       at most (0: none, not a sweep), then for a beat carried in the same call (else
--       nothing): worker id, seconds it counts as live, prune ('1'), field, value, ...
--       of its info (worker_beat in common.lua)
-- -> the next deadline (when the loop should run again), how many parked jobs left
--    their sets, then per job to publish: id, new token, the values of DISPATCH_FIELDS...
local limit, cap, grace, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {'', 0}
if ARGV[9] then worker_beat(ARGV[9], tonumber(ARGV[10]), ARGV[11] == '1', 12) end
local unparked = 0
if tonumber(ARGV[8] or 0) > 0 then unparked = release_parked('', tonumber(ARGV[8])) end
out[2] = unparked
-- the members of a deadline set that are due, read only when its first one is: an idle
-- tick costs one EXISTS when every set is empty, else one ZRANGE per set
local SETS = {'leases', 'expiries', 'due', 'dispatching'}
local firsts = {}  -- a set's first deadline (false: empty), while this script has not changed the set
do
  local keys = {}
  for i, set in ipairs(SETS) do keys[i] = ns .. set end
  if redis.call('EXISTS', unpack(keys)) == 0 then
    for _, set in ipairs(SETS) do firsts[set] = false end
  end
end
local function due_in(set)
  if firsts[set] == false then return {} end
  local first = redis.call('ZRANGE', ns .. set, 0, 0, 'WITHSCORES')
  if first[2] == nil or tonumber(first[2]) > now then
    firsts[set] = first[2] and tonumber(first[2]) or false
    return {}
  end
  return redis.call('ZRANGEBYSCORE', ns .. set, '-inf', now, 'LIMIT', 0, limit)
end
local function new_token() return 'r' .. redis.call('INCR', ns .. 'seq') end
local function emit(id, key, tok)
  out[#out + 1] = id
  out[#out + 1] = tok
  local r = hmget(key, DISPATCH_FIELDS)
  for _, name in ipairs(DISPATCH_FIELDS) do out[#out + 1] = r[name] or '' end
end
local function cancel(id, key, reason, attempts)
  local c = hmget(key, {'queue', 'state', 'tenant', 'created_at'})
  redis.call('HSET', key, 'state', 'canceled', 'cancel_reason', reason, 'finished_at', ARGV[2], 'token', '')
  unqueue(id, c.queue)
  move(id, c.tenant, c.created_at, c.state, 'canceled', ttl)
  redis.call('ZREM', ns .. 'due', id)
  redis.call('ZREM', ns .. 'dispatching', id)
  redis.call('ZREM', ns .. 'expiries', id)
  event(key, 'canceled', attempts, {reason=reason})
  count_end(key, 'canceled')
  wf_end(key, 'canceled', ttl)
  close(key, ttl)
end
-- 1. running jobs whose worker stopped renewing the lease
for _, id in ipairs(due_in('leases')) do
  redis.call('ZREM', ns .. 'leases', id)
  local key = ns .. 'job:' .. id
  local s = hmget(key, {'state', 'cancel_requested', 'attempts', 'cancel_reason', 'tenant',
                        'created_at', 'queue'})
  if s.state == 'started' then
    if s.cancel_requested == '1' then
      cancel(id, key, s.cancel_reason or 'requested', s.attempts)
    else
      local n = redis.call('HINCRBY', key, 'lost', 1)
      local err = cjson.encode({type='WorkerLost', message='the worker running attempt ' .. s.attempts ..
        ' died or stopped answering (lost delivery ' .. n .. ' of at most ' .. cap .. ')'})
      if n >= cap then
        redis.call('HSET', key, 'state', 'failed', 'error', err, 'finished_at', ARGV[2], 'token', '')
        move(id, s.tenant, s.created_at, 'started', 'failed', ttl)
        per_minute('failed')
        event(key, 'failed', s.attempts, {reason='worker_lost'})
        count_end(key, 'failed')
        wf_end(key, 'failed', ttl)
        close(key, ttl)
      else
        redis.call('HSET', key, 'state', 'queued', 'error', err, 'token', '')
        redis.call('ZADD', ns .. 'due', now, id)
        firsts.due = nil
        redis.call('ZADD', ns .. 'queued:' .. s.queue, now, id)
        move(id, s.tenant, s.created_at, 'started', 'queued')
        event(key, 'queued', s.attempts, {reason='worker_lost'})
      end
    end
  end
end
-- 2. jobs that expired before they started
for _, id in ipairs(due_in('expiries')) do
  redis.call('ZREM', ns .. 'expiries', id)
  local key = ns .. 'job:' .. id
  local s = hmget(key, {'state', 'attempts'})
  if ACTIVE[s.state] then cancel(id, key, 'expired', s.attempts) end
end
-- 3. jobs whose time has come, handed out by priority: jobs due together (the same
-- instant, or one tick) reach the engine high first, whatever their order in the set
local released = {high = {}, default = {}, low = {}}
for _, id in ipairs(due_in('due')) do
  redis.call('ZREM', ns .. 'due', id)
  local key = ns .. 'job:' .. id
  local s = hmget(key, {'state', 'attempts', 'priority', 'queue', 'tenant', 'created_at'})
  if ACTIVE[s.state] then
    local tok = new_token()
    redis.call('HSET', key, 'state', 'queued', 'token', tok)
    -- NX: a job already queued (waiting for a rate slot) keeps its place in the backlog
    redis.call('ZADD', ns .. 'queued:' .. s.queue, 'NX', now, id)
    redis.call('ZADD', ns .. 'dispatching', now + grace, id)
    firsts.dispatching = nil
    if s.state ~= 'queued' then
      event(key, 'queued', s.attempts)
      move(id, s.tenant, s.created_at, s.state, 'queued')
    end
    table.insert(released[s.priority] or released.default, {id, key, tok})
  end
end
for _, priority in ipairs({'high', 'default', 'low'}) do
  for _, r in ipairs(released[priority]) do emit(r[1], r[2], r[3]) end
end
-- 4. dispatches that were never confirmed (the publisher died half-way)
for _, id in ipairs(due_in('dispatching')) do
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
-- 5. index entries of records that expired ({ns}gone: ended jobs by when their record goes)
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', ns .. 'gone', '-inf', now, 'LIMIT', 0, limit)) do
  -- '<state> <tenant> <id> <type>' ('<state> <tenant> <id>' before the type indexes)
  local state, tenant, id, jtype = string.match(entry, '^(%S+) (%S+) (%S+) (%S+)$')
  if not state then state, tenant, id = string.match(entry, '^(%S+) (.*) (%S+)$') end
  local left = redis.call('PTTL', ns .. 'job:' .. id)
  if left > 0 then
    redis.call('ZADD', ns .. 'gone', now + left / 1000 + 1, entry)
  else
    redis.call('ZREM', ns .. 'gone', entry)
  end
  if left == -2 then
    redis.call('ZREM', ns .. 't:' .. tenant, id)
    redis.call('ZREM', ns .. 'all', id)
    move(id, tenant, 0, state, nil)
    type_unindex(id, tenant, jtype)
  end
end
-- 6. when to run again: the earliest deadline left, at the latest the longest sleep;
-- a deadline written earlier than this later wakes a loop (common.lua's deadline)
local next_at = now + tonumber(ARGV[7])
for _, set in ipairs(SETS) do
  local first = firsts[set]
  if first == nil then  -- changed (or due) in this script: read it again
    local top = redis.call('ZRANGE', ns .. set, 0, 0, 'WITHSCORES')
    first = top[2] and tonumber(top[2]) or false
  end
  if first and first < next_at then next_at = first end
end
redis.call('SET', ns .. 'wake_at', tostring(next_at))
out[1] = tostring(next_at)
return out
