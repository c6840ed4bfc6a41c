-- A live worker's announcement, one round trip every few seconds of every worker.
-- ARGV: ns, now, worker id, seconds it counts as live, then field, value, ... of its info.
local id, ttl = ARGV[3], tonumber(ARGV[4])
local key = ns .. 'worker:' .. id
redis.call('HSET', key, 'seen_at', ARGV[2], unpack(ARGV, 5))
redis.call('EXPIRE', key, math.floor(ttl) + 1)
redis.call('ZADD', ns .. 'workers', now, id)
redis.call('ZREMRANGEBYSCORE', ns .. 'workers', '-inf', now - ttl)
return 1
