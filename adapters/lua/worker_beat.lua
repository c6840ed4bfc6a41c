-- A live worker's announcement, one round trip every few seconds of every worker.
-- ARGV: ns, now, worker id, seconds it counts as live, prune ('1': drop the entries of
-- workers silent for longer), then field, value, ... of its info.
-- The live set's score is the worker's last beat (readers take "seen at" from it); its
-- info, which does not change, is written when its record is not there (the first beat,
-- or after it expired or was taken away), else only its expiry is renewed.
local id, ttl = ARGV[3], tonumber(ARGV[4])
local key = ns .. 'worker:' .. id
if redis.call('EXPIRE', key, math.floor(ttl) + 1) == 0 then
  redis.call('HSET', key, unpack(ARGV, 6))
  redis.call('EXPIRE', key, math.floor(ttl) + 1)
end
redis.call('ZADD', ns .. 'workers', now, id)
if ARGV[5] == '1' then redis.call('ZREMRANGEBYSCORE', ns .. 'workers', '-inf', now - ttl) end
return 1
