-- Read only: the per-minute counters ({ns}m:{minute}) of consecutive minutes, in one
-- round trip. ARGV: ns, now, first minute (Unix seconds), how many, then the field
-- names -> their values minute after minute ('0' for none)
local first, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local fields = {unpack(ARGV, 5)}
local out = {}
for i = 0, n - 1 do
  local v = redis.call('HMGET', ns .. 'm:' .. tostring(first + 60 * i), unpack(fields))
  for j = 1, #fields do out[#out + 1] = v[j] or '0' end
end
return out
