-- A caller waits for the job to end (``?wait=``): counted in the record's 'waited', so
-- that close() in common.lua wakes it through {ns}done:{id} when the job ends. A job that
-- has ended already (or is gone) is not counted: the caller is woken at once instead, so
-- that a blocking pop sent right behind this call returns at once.
-- ARGV: ns, now, id -> the job's state ('' when there is no such job)
local key = ns .. 'job:' .. ARGV[3]
local state = redis.call('HGET', key, 'state')
if state and not ENDED[state] then
  redis.call('HINCRBY', key, 'waited', 1)
  return state
end
local done = ns .. 'done:' .. ARGV[3]
redis.call('RPUSH', done, '1')
redis.call('EXPIRE', done, 60)
return state or ''
