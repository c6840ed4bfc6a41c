-- Deliveries a worker took and died with before claiming: release their jobs again.
-- ARGV: ns, now, id, token, id, token, ... -> how many were
local n = 0
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = ns .. 'job:' .. id
  local s = hmget(key, {'state', 'token', 'attempts'})
  -- only a delivery that is still the job's current one and was never claimed
  if s.state == 'queued' and s.token == token then
    redis.call('HSET', key, 'token', '')
    redis.call('ZREM', ns .. 'dispatching', id)
    deadline('due', now, id)
    event(key, 'queued', s.attempts, {reason='delivery_lost'})
    n = n + 1
  end
end
return n
