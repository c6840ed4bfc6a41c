-- Renew a running job's lease, if the token is still its current one.
-- ARGV: ns, now, id, token, lease_seconds -> 'ok', 'cancel' (a cancel is pending) or 'lost'
local key = ns .. 'job:' .. ARGV[3]
local s = hmget(key, {'token', 'cancel_requested'})
if s.token ~= ARGV[4] then return 'lost' end
redis.call('ZADD', ns .. 'leases', now + tonumber(ARGV[5]), ARGV[3])
if s.cancel_requested == '1' then return 'cancel' end
return 'ok'
