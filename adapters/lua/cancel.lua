-- Cancel a job: at once if it waits, by request if it runs.
-- ARGV: ns, now, id, reason, job_ttl -> 'canceled', 'requested', 'ended:<state>' or 'missing'
local id = ARGV[3]
local key = ns .. 'job:' .. id
local s = hmget(key, {'state', 'attempts', 'queue', 'tenant', 'created_at'})
if not s.state then return 'missing' end
if ENDED[s.state] then return 'ended:' .. s.state end
if s.state == 'started' then
  redis.call('HSET', key, 'cancel_requested', '1', 'cancel_reason', ARGV[4])
  event(key, 'cancel_requested', s.attempts, {reason=ARGV[4]})
  return 'requested'
end
redis.call('HSET', key, 'state', 'canceled', 'cancel_reason', ARGV[4], 'finished_at', ARGV[2],
           'token', '')
unqueue(id, s.queue)
move(id, s.tenant, s.created_at, s.state, 'canceled', tonumber(ARGV[5]))
redis.call('ZREM', ns .. 'due', id)
redis.call('ZREM', ns .. 'dispatching', id)
redis.call('ZREM', ns .. 'expiries', id)
event(key, 'canceled', s.attempts, {reason=ARGV[4]})
count_end(key, 'canceled')
wf_end(key, 'canceled', tonumber(ARGV[5]))
close(key, tonumber(ARGV[5]))
return 'canceled'
