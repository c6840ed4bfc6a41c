-- Delete a job for good (a bulk delete): its record, its history and every index entry.
-- A running job is refused (its worker holds it). A waiting one ends as canceled first,
-- so its counters and its workflow move on as for a cancel (a chain's later jobs end
-- canceled, a chord's body too).
-- ARGV: ns, now, id, job_ttl, states ('a,b': delete only in one of these; '': any)
-- -> 'deleted', 'running', 'changed' (in none of the states any more) or 'missing'
local id = ARGV[3]
local key = ns .. 'job:' .. id
local s = hmget(key, {'state', 'tenant', 'queue', 'idempotency_key', 'type'})
if not s.state then return 'missing' end
if s.state == 'started' then return 'running' end
if ARGV[5] ~= '' and not string.find(',' .. ARGV[5] .. ',', ',' .. s.state .. ',', 1, true) then
  return 'changed'
end
if ACTIVE[s.state] then
  count_end(key, 'canceled')
  wf_end(key, 'canceled', tonumber(ARGV[4]))
end
unqueue(id, s.queue)
redis.call('DEL', key, key .. ':events')
redis.call('ZREM', ns .. 't:' .. s.tenant, id)
redis.call('ZREM', ns .. 'all', id)
move(id, s.tenant, 0, s.state, nil)
type_unindex(id, s.tenant, s.type)
redis.call('ZREM', ns .. 'due', id)
redis.call('ZREM', ns .. 'dispatching', id)
redis.call('ZREM', ns .. 'expiries', id)
if s.idempotency_key and s.idempotency_key ~= '' then
  local ik = ns .. 'idem:' .. s.tenant .. ':' .. s.idempotency_key
  local stored = redis.call('GET', ik)
  if stored and string.match(stored, '^(%S+)') == id then redis.call('DEL', ik) end
end
return 'deleted'
