-- A live worker's announcement, one round trip every other beat of a worker whose loop
-- does not maintain at that beat (else maintain.lua carries it): worker_beat in common.lua.
-- ARGV: ns, now, worker id, seconds it counts as live, prune ('1': drop the entries of
-- workers silent for longer), then field, value, ... of its info.
worker_beat(ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', 6)
return 1
