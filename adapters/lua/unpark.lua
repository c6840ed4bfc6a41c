-- Release parked jobs of queues that are not paused: release_parked in common.lua (a
-- resume calls it for its queue; the maintenance sweep, in maintain.lua, for every queue).
-- ARGV: ns, now, queue ('' = every queue with parked jobs), limit
-- -> how many left the parked sets (0: none is left on a queue that is not paused)
return release_parked(ARGV[3], tonumber(ARGV[4]))
