-- Record the end of an attempt, if the token is still the job's current one.
-- ARGV: ns, now, id, token, outcome, job_ttl, a, b -> 1, or 0 for a stale token
--   succeeded: a = result JSON; failed: a = error JSON
--   canceled: a = reason, b = error JSON or ''; retry: a = error JSON, b = due time
local id, token, outcome = ARGV[3], ARGV[4], ARGV[5]
local key = ns .. 'job:' .. id
-- One read, one write and the bookkeeping: this runs once per attempt, on every job.
local s = hmget(key, {'token', 'attempts', 'type', 'backend', 'started_at', 'events',
                      'wf', 'wf_role', 'wf_next', 'state', 'tenant', 'created_at', 'queue',
                      'waited'})
if s.token ~= token then return 0 end
redis.call('ZREM', ns .. 'leases', id)
local ran = now - (tonumber(s.started_at) or now)
local bucket = '+Inf'
for _, b in ipairs(BUCKETS) do
  if ran <= b[1] then bucket = b[2] break end
end
local tb = s.type .. '|' .. s.backend
-- One counter per (outcome, duration bucket): the histogram and the finished counts
-- are both sums of these.
redis.call('HINCRBY', ns .. 'stats', 'ran|' .. tb .. '|' .. outcome .. '|' .. bucket, 1)
redis.call('HINCRBYFLOAT', ns .. 'stats', 'duration_sum|' .. tb, ran)
-- 'q|<queue>': attempts that ended per queue and minute (the queues' throughput)
per_minute(outcome, 'le|' .. bucket, 'q|' .. (s.queue or ''))
if outcome == 'retry' then
  redis.call('HSET', key, 'state', 'retrying', 'error', ARGV[7], 'token', '', 'run_at', ARGV[8],
             'events', append(s.events, ev('retrying', s.attempts, {run_at=tonumber(ARGV[8])})))
  deadline('due', ARGV[8], id)
  move(id, s.tenant, s.created_at, s.state, 'retrying')
  return 1
end
local events = append(s.events, ev(outcome, s.attempts))
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
move(id, s.tenant, s.created_at, s.state, outcome, tonumber(ARGV[6]), s.type)
if s.wf and s.wf ~= '' then wf_end(key, outcome, tonumber(ARGV[6]), s) end
close(key, tonumber(ARGV[6]), s.waited or '')
return 1
