-- Remove a record that was never published (the engine refused it): a rollback.
-- ARGV: ns, now, id, tenant, idempotency_key -> 1
local id = ARGV[3]
local key = ns .. 'job:' .. id
local tb = hmget(key, {'type', 'backend', 'queue', 'state'})
unqueue(id, tb.queue)
move(id, ARGV[4], 0, tb.state, nil)
if tb.type and tb.backend then
  -- the job was never published: take back its enqueue count too
  redis.call('HINCRBY', ns .. 'stats', 'enqueued|' .. tb.type .. '|' .. tb.backend, -1)
end
redis.call('DEL', key, key .. ':events')
redis.call('ZREM', ns .. 't:' .. ARGV[4], id)
redis.call('ZREM', ns .. 'all', id)
type_unindex(id, ARGV[4], tb.type)
redis.call('ZREM', ns .. 'due', id)
redis.call('ZREM', ns .. 'dispatching', id)
redis.call('ZREM', ns .. 'expiries', id)
if ARGV[5] ~= '' then
  local ik = ns .. 'idem:' .. ARGV[4] .. ':' .. ARGV[5]
  local stored = redis.call('GET', ik)
  if stored and string.match(stored, '^(%S+)') == id then redis.call('DEL', ik) end
end
return 1
