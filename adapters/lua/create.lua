-- Write new job records, all or none.
-- ARGV: ns, now, idem_ttl, grace, riders (how many of the last ARGV are riders), then
-- per record: fingerprint, and its field/value pairs as one JSON array of strings (one
-- argument, not two per field: the client packs far fewer), then the riders: the engine's
-- writes of the records' deliveries (adapters/riders.py), each its command, its argument
-- count and its arguments, its key the next of KEYS (KEYS[1] is the namespace), or the
-- templates of shared hash fields (below); they run
-- after the records, so a record and its delivery are written together or not at all
-- -> {created (1) or idempotent hit (0), id, ...}, or {-1, index, first job's id} when a
-- record's idempotency key was used with other parameters (then nothing is written)
local idem_ttl = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local last = #ARGV - tonumber(ARGV[5])
-- A template ('=', its count, field, value, ...: no key) holds the fields many hashes of
-- the call share; 'HSET=' (count, the template's number, then its own field, value, ...)
-- is an HSET of those and its own (Riders.hset_shared).
local riders, templates = {}, {}
do
  local i, k = last + 1, 1
  local writes = {HSET = 1, RPUSH = 1, LPUSH = 1, SADD = 1, ZADD = 1, PEXPIRE = 1,
                  EXPIRE = 1, XADD = 1}
  while i <= #ARGV do
    local name, n = ARGV[i], tonumber(ARGV[i + 1])
    if name == '=' and n then
      templates[#templates + 1] = {i + 2, i + 1 + n}
    else
      k = k + 1
      local shared = name == 'HSET=' and n and n >= 1 and templates[tonumber(ARGV[i + 2])]
      if not (writes[name] or shared) or not n or not KEYS[k] then
        return redis.error_reply('ERR create: a rider is not a single-key write: ' .. name)
      end
      if shared then
        riders[#riders + 1] = {'HSET', KEYS[k], i + 3, i + 1 + n, shared}
      else
        riders[#riders + 1] = {name, KEYS[k], i + 2, i + 1 + n}
      end
    end
    i = i + 2 + n
  end
end
local recs = {}
for i = 6, last, 2 do
  local pairs_ = cjson.decode(ARGV[i + 1])
  local f = {}
  for j = 1, #pairs_, 2 do f[pairs_[j]] = pairs_[j + 1] end
  recs[#recs + 1] = {fp = ARGV[i], f = f, pairs = pairs_}
end
-- Every key is checked before anything is written, so a reused key anywhere in a
-- batch writes nothing at all. An idempotency record is '<job id> <fingerprint>'.
local seen = {}
for r, rec in ipairs(recs) do
  local key = rec.f['idempotency_key']
  if key and key ~= '' then
    local ik = ns .. 'idem:' .. rec.f['tenant'] .. ':' .. key
    local prior = seen[ik]
    if not prior then
      local stored = redis.call('GET', ik)
      if stored then
        local eid, efp = string.match(stored, '^(%S+) ?(.*)$')
        if redis.call('EXISTS', ns .. 'job:' .. eid) == 1 then prior = {eid, efp} end
      end
    end
    if prior then
      -- a record of an older version has no fingerprint: it matches anything
      if prior[2] ~= '' and prior[2] ~= rec.fp then return {-1, r - 1, prior[1]} end
      rec.hit = prior[1]
    else
      seen[ik] = {rec.f['id'], rec.fp}
      rec.ik = ik
    end
  end
end
local out = {}
-- a batch's index entries go in one ZADD per index (common.lua's zadd), its queues in
-- one SADD and its counts in one HINCRBY per type
zadds, zadd_keys = {}, {}
local queues, queue_list, counted, counts = {}, {}, {}, {}
for _, rec in ipairs(recs) do
  local f = rec.f
  if rec.hit then
    out[#out + 1] = 0
    out[#out + 1] = rec.hit
  else
    local id = f['id']
    if rec.ik then redis.call('SET', rec.ik, id .. ' ' .. rec.fp, 'EX', idem_ttl) end
    local key = ns .. 'job:' .. id
    local fields = rec.pairs
    fields[#fields + 1] = 'events'
    fields[#fields + 1] = ev(f['state'], 0)
    redis.call('HSET', key, unpack(fields))
    zadd(ns .. 't:' .. f['tenant'], ARGV[2], id)
    local created = (f['created_at'] and f['created_at'] ~= '') and f['created_at'] or ARGV[2]
    zadd(ns .. 'all', created, id)
    type_index(id, f['tenant'], f['type'], created)
    if f['retry_of'] and f['retry_of'] ~= '' then  -- the job it replays names its retries
      local ok = ns .. 'job:' .. f['retry_of']
      local seen = redis.call('HGET', ok, 'retried_as')
      if seen ~= false or redis.call('EXISTS', ok) == 1 then
        redis.call('HSET', ok, 'retried_as', (seen and seen ~= '') and (seen .. ' ' .. id) or id)
      end
    end
    move(id, f['tenant'], created, nil, f['state'])
    if f['state'] == 'scheduled' then
      if f['waiting'] ~= '1' then deadline('due', f['run_at'], id) end
    elseif grace >= 0 then
      -- grace < 0: the engine's publish commits in this same transaction, no guard needed
      redis.call('ZADD', ns .. 'dispatching', now + grace, id)
    end
    if f['expires_at'] and f['expires_at'] ~= '' then
      deadline('expiries', f['expires_at'], id)
    end
    if not queues[f['queue']] then
      queues[f['queue']] = true
      queue_list[#queue_list + 1] = f['queue']
    end
    if f['state'] == 'queued' then zadd(ns .. 'queued:' .. f['queue'], now, id) end
    local stat = 'enqueued|' .. f['type'] .. '|' .. f['backend']
    if not counts[stat] then
      counts[stat] = 0
      counted[#counted + 1] = stat
    end
    counts[stat] = counts[stat] + 1
    out[#out + 1] = 1
    out[#out + 1] = id
  end
end
flush_zadds()
if #queue_list > 0 then redis.call('SADD', ns .. 'queues', unpack(queue_list)) end
for _, stat in ipairs(counted) do redis.call('HINCRBY', ns .. 'stats', stat, counts[stat]) end
for _, w in ipairs(riders) do
  if w[5] then
    local a = {unpack(ARGV, w[5][1], w[5][2])}
    for j = w[3], w[4] do a[#a + 1] = ARGV[j] end
    redis.call('HSET', w[2], unpack(a))
  else
    redis.call(w[1], w[2], unpack(ARGV, w[3], w[4]))
  end
end
return out
