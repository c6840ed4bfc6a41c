-- Read only: the newest failed jobs of an index grouped by (type, error type), in one
-- round trip (a page of groups over thousands of jobs would be thousands of reads).
-- ARGV: ns, now, index key, how many entries at most
-- -> {scanned, then per group: type, error type, count, newest score, its id, its message}
local ids = redis.call('ZREVRANGE', ARGV[3], 0, tonumber(ARGV[4]) - 1, 'WITHSCORES')
local groups, order = {}, {}
for i = 1, #ids, 2 do
  local v = redis.call('HMGET', ns .. 'job:' .. ids[i], 'type', 'error')
  if v[1] then
    local et, msg = '', ''
    if v[2] and v[2] ~= '' then
      local ok, e = pcall(cjson.decode, v[2])
      if ok and type(e) == 'table' then
        if type(e.type) == 'string' then et = e.type end
        if type(e.message) == 'string' then msg = string.sub(e.message, 1, 300) end
      end
    end
    local g = groups[v[1] .. '\n' .. et]
    if g then
      g[3] = g[3] + 1
    else
      groups[v[1] .. '\n' .. et] = {v[1], et, 1, ids[i + 1], ids[i], msg}
      order[#order + 1] = v[1] .. '\n' .. et
    end
  end
end
local out = {#ids / 2}
for _, name in ipairs(order) do
  for _, x in ipairs(groups[name]) do out[#out + 1] = x end
end
return out
