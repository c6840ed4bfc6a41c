-- A caller waits for the job to end (``?wait=``): counted in the record's 'waited', so
-- that close() in common.lua wakes it through {ns}done:{id} when the job ends.
-- ARGV: ns, now, id -> the job's state ('' and not counted when there is no such job,
-- nor when it has ended already)
local key = ns .. 'job:' .. ARGV[3]
local state = redis.call('HGET', key, 'state')
if not state then return '' end
if not ENDED[state] then redis.call('HINCRBY', key, 'waited', 1) end
return state
