-- Release parked jobs of queues that are not paused (a resume, or the maintenance loop
-- finishing a resume whose caller died): each goes to the due set at the time it became
-- queued, so the maintenance release publishes it with a new token, oldest first and by
-- priority, as any due job. A job that is no longer queued (canceled, expired) is dropped.
-- ARGV: ns, now, queue ('' = every queue with parked jobs), limit
-- -> how many left the parked sets (0: none is left on a queue that is not paused)
local limit = tonumber(ARGV[4])
local queues = {ARGV[3]}
if ARGV[3] == '' then queues = redis.call('SMEMBERS', ns .. 'parked') end
local n = 0
for _, q in ipairs(queues) do
  if n >= limit then break end
  local pk = ns .. 'parked:' .. q
  if redis.call('HEXISTS', ns .. 'paused', q) == 0 then
    local batch = redis.call('ZRANGE', pk, 0, limit - n - 1, 'WITHSCORES')
    for i = 1, #batch, 2 do
      local id, since = batch[i], batch[i + 1]
      redis.call('ZREM', pk, id)
      local key = ns .. 'job:' .. id
      local s = hmget(key, {'state', 'token'})
      if s.state == 'queued' and (not s.token or s.token == '') then
        deadline('due', since, id)
      end
      n = n + 1
    end
    if redis.call('EXISTS', pk) == 0 then redis.call('SREM', ns .. 'parked', q) end
  end
end
return n
