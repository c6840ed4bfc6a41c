-- Decide whether a delivery runs, and mark the job started if so.
-- ARGV: ns, now, id, token, worker, lease_seconds, job_ttl, in-hand key ('' for none)
-- -> {'drop', why} | {'defer', when} | {'run', the values of CLAIM_FIELDS...}
--    (why 'paused': parked in {ns}parked:{queue})
local id, token = ARGV[3], ARGV[4]
-- The delivery's note in hand (adapters/inhand.py) has done its work whatever the answer:
-- a claimed job is its lease's from now on, and a dropped or deferred delivery is used up.
if ARGV[8] and ARGV[8] ~= '' then redis.call('ZREM', ARGV[8], id .. '-' .. token) end
local key = ns .. 'job:' .. id
local names = {'state', 'token', 'expires_at', 'rate', 'type', 'attempts', 'queue', 'events',
               'created_at'}
for _, name in ipairs(CLAIM_FIELDS) do names[#names + 1] = name end
local s = hmget(key, names)
if not s.state then return {'drop', 'unknown'} end
if s.token ~= token then return {'drop', 'stale'} end
if s.state ~= 'queued' then return {'drop', s.state} end
if s.expires_at and s.expires_at ~= '' and tonumber(s.expires_at) <= now then
  redis.call('HSET', key, 'state', 'canceled', 'cancel_reason', 'expired',
             'finished_at', ARGV[2], 'token', '')
  redis.call('ZREM', ns .. 'expiries', id)
  unqueue(id, s.queue)
  move(id, s.tenant, s.created_at, 'queued', 'canceled', tonumber(ARGV[7]), s.type)
  event(key, 'canceled', s.attempts, {reason='expired'})
  count_end(key, 'canceled')
  wf_end(key, 'canceled', tonumber(ARGV[7]))
  close(key, tonumber(ARGV[7]))
  return {'drop', 'expired'}
end
-- A paused queue (adapters/queues.py): the job stays queued, parked by when it became
-- queued until the queue is resumed; this delivery is used up (its token cleared).
if redis.call('HEXISTS', ns .. 'paused', s.queue) == 1 then
  local since = redis.call('ZSCORE', ns .. 'queued:' .. s.queue, id) or ARGV[2]
  redis.call('HSET', key, 'token', '', 'events', append(s.events, ev('queued', s.attempts, {reason='queue_paused'})))
  redis.call('ZADD', ns .. 'parked:' .. s.queue, since, id)
  redis.call('SADD', ns .. 'parked', s.queue)
  redis.call('ZREM', ns .. 'dispatching', id)
  return {'drop', 'paused'}
end
if s.rate and s.rate ~= '' then
  local limit, window = string.match(s.rate, '^(%d+) (.+)$')
  limit, window = tonumber(limit), tonumber(window)
  local rk = ns .. 'rl:' .. s.type
  redis.call('ZREMRANGEBYSCORE', rk, '-inf', '(' .. tostring(now - window))
  if redis.call('ZCARD', rk) >= limit then
    local oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
    local at = tonumber(oldest[2]) + window
    redis.call('HSET', key, 'token', '')
    deadline('due', at, id)
    return {'defer', tostring(at)}
  end
  redis.call('ZADD', rk, ARGV[2], id .. ':' .. s.attempts)
  redis.call('EXPIRE', rk, math.ceil(window) + 1)
end
-- One read above and one write here: this runs once per job, on every job.
local attempts = (tonumber(s.attempts) or 0) + 1
redis.call('HSET', key, 'attempts', attempts, 'state', 'started', 'started_at', ARGV[2],
           'worker', ARGV[5], 'finished_at', '',
           'events', append(s.events, ev('started', attempts, {worker=ARGV[5]})))
redis.call('ZADD', ns .. 'leases', now + tonumber(ARGV[6]), id)
unqueue(id, s.queue)
move(id, s.tenant, s.created_at, 'queued', 'started')
if s.expires_at and s.expires_at ~= '' then redis.call('ZREM', ns .. 'expiries', id) end
s.attempts = tostring(attempts)
local out = {'run'}
for i, name in ipairs(CLAIM_FIELDS) do out[i + 1] = s[name] or '' end
return out
