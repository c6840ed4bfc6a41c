-- Store a running job's latest progress, if the token is still its current one.
-- ARGV: ns, now, id, token, progress JSON -> 1, or 0 for a stale token
local key = ns .. 'job:' .. ARGV[3]
if redis.call('HGET', key, 'token') ~= ARGV[4] then return 0 end
redis.call('HSET', key, 'progress', ARGV[5])
return 1
