-- Identity resolution of one batch, atomically. The algorithm of streams/identity/base.py,
-- mirrored from streams/identity/memory.py (tests hold the two to each other).
-- KEYS[1]: the graph tag, e.g. "{cx:idg}"
-- ARGV[1]: JSON batch [{m: messageId, ts: ms, ch: channel, ids: [[type, value], ...], tr: {trait: value}}];
--          ids as IdentityRules.prepare gives them: unique, unblocked, priority order, never empty
-- ARGV[2]: JSON rules {limits: {type: n}, max_ids: n, max_merges: n}
-- returns JSON [[pid, outcome, created(0/1), merges [[survivor, absorbed, [[t, v]...], ts]], dropped [[t, v]...]], ...]
local G = KEYS[1]
local batch = cjson.decode(ARGV[1])
local rules = cjson.decode(ARGV[2])
local limits = rules.limits

local function ikey(t, v) return G .. ':i:' .. t .. ':' .. v end
local function pkey(pid) return G .. ':p:' .. pid end

local function live(pid)
  local nxt = redis.call('HGET', pkey(pid), 'mi')
  local guard = 0
  while nxt and guard < 64 do
    pid = nxt
    nxt = redis.call('HGET', pkey(pid), 'mi')
    guard = guard + 1
  end
  return pid
end

local function violates(typed_counts, total)
  if total > rules.max_ids then return true end
  for t, n in pairs(typed_counts) do
    local lim = limits[t]
    if lim and n > lim then return true end
  end
  return false
end

local function count_ids(list, counts)
  for _, m in ipairs(list) do
    local t = string.match(m, '^([^:]+):')
    counts[t] = (counts[t] or 0) + 1
  end
end

local function attach(pid, ids)
  for _, i in ipairs(ids) do
    redis.call('SET', ikey(i[1], i[2]), pid)
    redis.call('SADD', pkey(pid) .. ':ids', i[1] .. ':' .. i[2])
  end
end

local function touch(pid, ev)
  local k = pkey(pid)
  local fs = tonumber(redis.call('HGET', k, 'fs'))
  local ls = tonumber(redis.call('HGET', k, 'ls'))
  if not fs or ev.ts < fs then redis.call('HSET', k, 'fs', ev.ts) end
  if not ls or ev.ts > ls then redis.call('HSET', k, 'ls', ev.ts) end
  local chk = k .. ':ch'
  local cur = tonumber(redis.call('HGET', chk, ev.ch))
  if not cur or ev.ts > cur then redis.call('HSET', chk, ev.ch, ev.ts) end
  if ev.tr then
    local tk = k .. ':traits'
    for name, v in pairs(ev.tr) do
      local old = redis.call('HGET', tk, name)
      if (not old) or ev.ts >= cjson.decode(old)[2] then
        redis.call('HSET', tk, name, cjson.encode({v, ev.ts}))
      end
    end
  end
end

local function merge(survivor, absorbed, linking, ts)
  local sk, ak = pkey(survivor), pkey(absorbed)
  local ids = redis.call('SMEMBERS', ak .. ':ids')
  for _, m in ipairs(ids) do
    local t, v = string.match(m, '^([^:]+):(.*)$')
    redis.call('SET', ikey(t, v), survivor)
    redis.call('SADD', sk .. ':ids', m)
  end
  local traits = redis.call('HGETALL', ak .. ':traits')
  for j = 1, #traits, 2 do
    local name, enc = traits[j], traits[j + 1]
    local old = redis.call('HGET', sk .. ':traits', name)
    if (not old) or cjson.decode(enc)[2] > cjson.decode(old)[2] then
      redis.call('HSET', sk .. ':traits', name, enc)
    end
  end
  local chans = redis.call('HGETALL', ak .. ':ch')
  for j = 1, #chans, 2 do
    local cur = tonumber(redis.call('HGET', sk .. ':ch', chans[j]))
    local t = tonumber(chans[j + 1])
    if not cur or t > cur then redis.call('HSET', sk .. ':ch', chans[j], t) end
  end
  local afs = tonumber(redis.call('HGET', ak, 'fs'))
  local als = tonumber(redis.call('HGET', ak, 'ls'))
  if afs and afs < tonumber(redis.call('HGET', sk, 'fs')) then redis.call('HSET', sk, 'fs', afs) end
  if als and als > tonumber(redis.call('HGET', sk, 'ls')) then redis.call('HSET', sk, 'ls', als) end
  local anm = tonumber(redis.call('HGET', ak, 'nm') or '0')
  redis.call('HINCRBY', sk, 'nm', anm + 1)
  local amerges = redis.call('LRANGE', ak .. ':merges', 0, -1)
  for _, rec in ipairs(amerges) do redis.call('RPUSH', sk .. ':merges', rec) end
  local link = {}
  for _, i in ipairs(linking) do table.insert(link, i[1] .. ':' .. i[2]) end
  redis.call('RPUSH', sk .. ':merges', cjson.encode({absorbed = absorbed, linking = link, ts = ts}))
  redis.call('DEL', ak .. ':ids', ak .. ':traits', ak .. ':ch', ak .. ':merges')
  redis.call('HSET', ak, 'mi', survivor)
  redis.call('SADD', sk .. ':absorbed', absorbed)
  -- one hop: whatever pointed to the absorbed profile now points to the survivor
  local sub = redis.call('SMEMBERS', ak .. ':absorbed')
  for _, x in ipairs(sub) do
    redis.call('SADD', sk .. ':absorbed', x)
    redis.call('HSET', pkey(x), 'mi', survivor)
  end
  redis.call('DEL', ak .. ':absorbed')
end

local out = {}
for n, ev in ipairs(batch) do
  local ids = ev.ids
  local dropped = {}
  local result
  while true do
    local matched, seen, owner = {}, {}, {}
    local new = {}
    for _, i in ipairs(ids) do
      local pid = redis.call('GET', ikey(i[1], i[2]))
      if pid then
        pid = live(pid)
        owner[i[1] .. ':' .. i[2]] = pid
        if not seen[pid] then seen[pid] = true; table.insert(matched, pid) end
      else
        table.insert(new, i)
      end
    end
    if #matched == 0 then
      local counts = {}
      for _, i in ipairs(ids) do counts[i[1]] = (counts[i[1]] or 0) + 1 end
      if #ids > 1 and violates(counts, #ids) then
        table.insert(dropped, table.remove(ids))
      else
        local pid = 'p_' .. string.sub(redis.sha1hex(ev.m .. '|' .. ids[1][1] .. ':' .. ids[1][2]), 1, 24)
        redis.call('HSET', pkey(pid), 'c', ev.ts, 'fs', ev.ts, 'ls', ev.ts, 'nm', 0)
        attach(pid, new)
        touch(pid, ev)
        result = {pid, 'new', 1, {}, dropped}
        break
      end
    else
      local counts, total, merges_after = {}, #new, #matched - 1
      for _, m in ipairs(matched) do
        local members = redis.call('SMEMBERS', pkey(m) .. ':ids')
        count_ids(members, counts)
        total = total + #members
        merges_after = merges_after + tonumber(redis.call('HGET', pkey(m), 'nm') or '0')
      end
      for _, i in ipairs(new) do counts[i[1]] = (counts[i[1]] or 0) + 1 end
      if #ids > 1 and (violates(counts, total) or merges_after > rules.max_merges) then
        table.insert(dropped, table.remove(ids))
      else
        local survivor, sc = nil, nil
        for _, m in ipairs(matched) do
          local c = tonumber(redis.call('HGET', pkey(m), 'c'))
          if survivor == nil or c < sc or (c == sc and m < survivor) then survivor, sc = m, c end
        end
        local merges = {}
        for _, absorbed in ipairs(matched) do
          if absorbed ~= survivor then
            local linking = {}
            for _, i in ipairs(ids) do
              local o = owner[i[1] .. ':' .. i[2]]
              if o == absorbed or o == survivor then table.insert(linking, i) end
            end
            merge(survivor, absorbed, linking, ev.ts)
            table.insert(merges, {survivor, absorbed, linking, ev.ts})
          end
        end
        attach(survivor, new)
        touch(survivor, ev)
        local outcome = 'matched'
        if #merges > 0 then outcome = 'merged' end
        result = {survivor, outcome, 0, merges, dropped}
        break
      end
    end
  end
  out[n] = result
end
return cjson.encode(out)
