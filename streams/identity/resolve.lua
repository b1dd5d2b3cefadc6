-- Identity resolution of a run of events, each atomically. The algorithm of streams/identity/base.py,
-- mirrored from streams/identity/memory.py (tests hold the two to each other).
-- KEYS[1]: the graph tag, e.g. "{cx:idg}"; every key touched is in it (one Redis Cluster slot)
-- ARGV[1]: JSON batch [{m: messageId, ts: ms, ch: channel, ids: [[type, value], ...], tr: {trait: value},
--          src: "topic/partition/offset" (optional), al: an alias's previousId (optional)}];
--          ids as IdentityRules.prepare gives them: unique, unblocked, priority order, never empty
-- ARGV[2]: JSON rules {limits: {type: n}, max_ids: n, max_merges: n, anon_ttl: s, merged_ttl: s,
--          anon_margin: s, anon_types: [type, ...]} (retention: see retain() below; anon_ttl 0 keeps
--          everything)
-- ARGV[3]: seconds a resolution memo lives (events with a src whose outcome is new or merged or
--          that dropped identifiers; the same m and src again returns the memo, applying nothing)
-- returns JSON [[pid, outcome, created(0/1), merges [[survivor, absorbed, [[t, v]...], ts]], dropped [[t, v]...]], ...]
--
-- Cost is linear in the identifiers: each is looked up once (GET, and the merge pointer of its
-- profile once per profile), each matched profile's identifiers and merge count are read once,
-- and the longest prefix of ids that breaks no rule is found in one pass (see resolve_one).
local G = KEYS[1]
local batch = cjson.decode(ARGV[1])
local rules = cjson.decode(ARGV[2])
local limits = rules.limits
local memo_ttl = tonumber(ARGV[3])
local anon_ttl = tonumber(rules.anon_ttl or 0)
local anon_margin = tonumber(rules.anon_margin or 0)
local anon_expiry = anon_ttl + anon_margin  -- seconds: the TTL retain() gives
local merged_ttl = tonumber(rules.merged_ttl or 0)
-- Numbers go to redis.call as strings made here: Redis formats a Lua number with
-- snprintf('%.17g'), which was ~12% of the script's time (ev.tss: the event's ts, made per event)
local function int(n) return string.format('%d', n) end
local anon_expiry_s, merged_ttl_s, memo_ttl_s = int(anon_expiry), int(merged_ttl), int(memo_ttl)
local anon_types = {}
for _, t in ipairs(rules.anon_types or {}) do anon_types[t] = true end
-- a profile's own keys besides its meta hash (the memo index ':r' has its own, shorter TTL)
local SUBKEYS = {':ids', ':traits', ':ch', ':merges', ':absorbed'}

local function ikey(t, v) return G .. ':i:' .. t .. ':' .. v end
local function pkey(pid) return G .. ':p:' .. pid end

-- the live profile (following merge pointers) and its created time and merge count, read with the
-- pointer: one HMGET per hop. Also the first/last seen and retention flag as they are now, for
-- touch() (read in the same call: nothing writes them before touch() unless a merge does).
local function live(pid)
  local meta = redis.call('HMGET', pkey(pid), 'mi', 'c', 'nm', 'fs', 'ls', 'an')
  local guard = 0
  while meta[1] and guard < 64 do
    pid = meta[1]
    meta = redis.call('HMGET', pkey(pid), 'mi', 'c', 'nm', 'fs', 'ls', 'an')
    guard = guard + 1
  end
  return {pid, tonumber(meta[2]), tonumber(meta[3] or '0'), {meta[4], meta[5], meta[6]}}
end

local function attach(pid, ids)
  for _, i in ipairs(ids) do
    redis.call('SET', ikey(i[1], i[2]), pid)
    redis.call('SADD', pkey(pid) .. ':ids', i[1] .. ':' .. i[2])
  end
end

-- Returns the profile's retention flag 'an' as it was, and whether this wrote a field new to the
-- traits hash (which may have created that key: retain() must give it its TTL).
-- fresh: the profile was created by this event (its first/last seen are ev.ts already).
-- seen: its fields fs, ls and an as live() read them, if nothing wrote them since (else nil).
local function touch(pid, ev, fresh, seen)
  local k = pkey(pid)
  local an, grew = nil, false
  if not fresh then
    local meta = seen or redis.call('HMGET', k, 'fs', 'ls', 'an')
    local fs, ls = tonumber(meta[1]), tonumber(meta[2])
    an = meta[3]
    if not fs or ev.ts < fs then
      if not ls or ev.ts > ls then redis.call('HSET', k, 'fs', ev.tss, 'ls', ev.tss)
      else redis.call('HSET', k, 'fs', ev.tss) end
    elseif not ls or ev.ts > ls then redis.call('HSET', k, 'ls', ev.tss) end
  end
  local chk = k .. ':ch'
  local cur = tonumber(redis.call('HGET', chk, ev.ch))
  -- the hash exists already (every event writes it): no TTL to give here
  if not cur or ev.ts > cur then redis.call('HSET', chk, ev.ch, ev.tss) end
  if ev.tr then
    local tk = k .. ':traits'
    for name, v in pairs(ev.tr) do
      local old = redis.call('HGET', tk, name)
      if (not old) or ev.ts >= cjson.decode(old)[2] then
        redis.call('HSET', tk, name, '[' .. cjson.encode(v) .. ',' .. ev.tss .. ']')
        if not old then grew = true end
      end
    end
  end
  return an, grew
end

-- members: the absorbed profile's identifiers, as resolve_one read them (nothing wrote them since)
local function merge(survivor, absorbed, members, linking, ts)
  local sk, ak = pkey(survivor), pkey(absorbed)
  local ids = members
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
  -- the leftover pointer (~190 B) only serves lookups by the old id: it expires like a state tombstone
  if merged_ttl > 0 then redis.call('EXPIRE', ak, merged_ttl_s) end
  redis.call('SADD', sk .. ':absorbed', absorbed)
  -- one hop: whatever pointed to the absorbed profile now points to the survivor
  local sub = redis.call('SMEMBERS', ak .. ':absorbed')
  for _, x in ipairs(sub) do
    redis.call('SADD', sk .. ':absorbed', x)
    redis.call('HSET', pkey(x), 'mi', survivor)
    if merged_ttl > 0 then redis.call('EXPIRE', pkey(x), merged_ttl_s) end
  end
  redis.call('DEL', ak .. ':absorbed')
end

-- Retention (CXSTREAM_ANONYMOUS_RETENTION_DAYS): meta field 'an' is '1' while every identifier of
-- the profile is anonymous (anon_types), '0' once one is not. An anonymous-only profile's keys (meta,
-- sub-keys and the index key of each of its identifiers) get a TTL of anon_ttl + anon_margin when an
-- event resolves to it and their TTL has fallen below anon_ttl (or is above anon_ttl + anon_margin:
-- the retention was lowered since), so Redis removes the profile between anon_ttl and
-- anon_ttl + anon_margin after its last event, no scan needed; a visitor's burst of events
-- refreshes the keys once, not on every event (7 EXPIREs or more each). An event that may have
-- created a key (an identifier, a merge, a new trait field) refreshes them all. The event that
-- makes it known PERSISTs them all: known profiles are kept until erased.
-- an: the profile's 'an' as touch() read it. added: identifier types this event brought to pid (its
-- new ids and the absorbed profiles' members). grew: touch() wrote a new trait field.
-- A profile without 'an' (written before retention existed) is classified from its members; a new
-- profile is classified where it is created (resolve_one, expire_new).
local function retain(pid, an, added, grew)
  if anon_ttl <= 0 then return end
  if an == '0' then return end
  local k = pkey(pid)
  local members = nil
  local known = false
  if an == '1' then
    for _, t in ipairs(added) do
      if not anon_types[t] then known = true; break end
    end
  else
    members = redis.call('SMEMBERS', k .. ':ids')
    for _, m in ipairs(members) do
      if not anon_types[string.match(m, '^([^:]+):')] then known = true; break end
    end
  end
  if known then
    redis.call('HSET', k, 'an', '0')
    if redis.call('TTL', k) ~= -1 then
      redis.call('PERSIST', k)
      for _, sub in ipairs(SUBKEYS) do redis.call('PERSIST', k .. sub) end
      for _, m in ipairs(members or redis.call('SMEMBERS', k .. ':ids')) do
        local t, v = string.match(m, '^([^:]+):(.*)$')
        redis.call('PERSIST', ikey(t, v))
      end
    end
    return
  end
  if an == '1' and #added == 0 and not grew and anon_margin > 0 then
    local left = redis.call('PTTL', k)
    if left >= anon_ttl * 1000 and left <= (anon_ttl + anon_margin) * 1000 then
      return  -- refreshed within the margin (and not under a longer retention), nothing new to expire
    end
  end
  if an ~= '1' then redis.call('HSET', k, 'an', '1') end
  redis.call('EXPIRE', k, anon_expiry_s)
  for _, sub in ipairs(SUBKEYS) do redis.call('EXPIRE', k .. sub, anon_expiry_s) end
  for _, m in ipairs(members or redis.call('SMEMBERS', k .. ':ids')) do
    local t, v = string.match(m, '^([^:]+):(.*)$')
    redis.call('EXPIRE', ikey(t, v), anon_expiry_s)
  end
end

-- A new anonymous-only profile: the TTL of retain() on the keys its event created (no merge or
-- absorbed sets yet), without reading them back.
local function expire_new(pid, ev, ids)
  local k = pkey(pid)
  redis.call('EXPIRE', k, anon_expiry_s)
  redis.call('EXPIRE', k .. ':ids', anon_expiry_s)
  redis.call('EXPIRE', k .. ':ch', anon_expiry_s)
  if ev.tr then redis.call('EXPIRE', k .. ':traits', anon_expiry_s) end
  for _, i in ipairs(ids) do redis.call('EXPIRE', ikey(i[1], i[2]), anon_expiry_s) end
end

-- The longest prefix of ev.ids that breaks no rule is kept (a single identifier always is).
-- After k identifiers the state is what joining that prefix would give: per-type counts and total
-- over the matched profiles' identifiers plus the new ones, and the survivor's merge count. It only
-- grows with k, so the first prefix longer than one that breaks a rule ends the pass; the rest is
-- dropped, lowest priority first (as if dropped one at a time and matching retried).
local function resolve_one(ev)
  local ids = ev.ids
  local limits = limits
  if ev.al then
    -- an alias: its previousId (typed anonymous_id) is a known userId when only that is indexed;
    -- an explicit link, so the per-type limits do not refuse it (the caps still apply)
    limits = {}
    if redis.call('EXISTS', ikey('user_id', ev.al)) == 1 and redis.call('EXISTS', ikey('anonymous_id', ev.al)) == 0 then
      for _, i in ipairs(ids) do
        if i[1] == 'anonymous_id' and i[2] == ev.al then i[1] = 'user_id' end
      end
    end
  end
  local counts, total, nm, broken = {}, 0, 0, false
  local matched, info, new = {}, {}, {}  -- info[pid]: {c, members, at: positions in ids}
  -- stored pid -> {live pid, its created time, its merge count}, for this event (nothing is
  -- written while matching)
  local lives = {}
  local kept = 0
  for k, i in ipairs(ids) do
    local t = i[1]
    local pid = redis.call('GET', ikey(t, i[2]))
    local joins = false
    local l
    if pid then
      l = lives[pid]
      if not l then l = live(pid); lives[pid] = l end
      pid = l[1]
      joins = not info[pid]
    end
    local n_matched = #matched
    local prof  -- the profile this identifier joins, read once
    if not pid then
      local n = (counts[t] or 0) + 1
      counts[t] = n
      total = total + 1
      if limits[t] and n > limits[t] then broken = true end
    elseif joins and #ids == 1 then
      -- the event's only identifier, on one profile: nothing to count (a first identifier is
      -- always kept) and nothing to merge, so its members are not read
      prof = {c = l[2], at = {}, seen = l[4]}
      n_matched = n_matched + 1
    elseif joins then
      local members = redis.call('SMEMBERS', pkey(pid) .. ':ids')
      prof = {c = l[2], members = members, at = {}, seen = l[4]}
      for _, m in ipairs(members) do
        local mt = string.match(m, '^([^:]+):')
        local n = (counts[mt] or 0) + 1
        counts[mt] = n
        if limits[mt] and n > limits[mt] then broken = true end
      end
      total = total + #members
      nm = nm + l[3]
      n_matched = n_matched + 1
    end
    if total > rules.max_ids or (n_matched > 0 and nm + n_matched - 1 > rules.max_merges) then broken = true end
    if broken and k > 1 then break end
    kept = k
    if not pid then
      table.insert(new, i)
    else
      if joins then info[pid] = prof; table.insert(matched, pid) end
      table.insert(info[pid].at, k)
    end
  end
  local dropped = {}
  for k = #ids, kept + 1, -1 do table.insert(dropped, ids[k]) end

  if #matched == 0 then
    local pid = 'p_' .. string.sub(redis.sha1hex(ev.m .. '|' .. ids[1][1] .. ':' .. ids[1][2]), 1, 24)
    -- retain() for a profile whose members are the event's new ids: classified without reading
    -- them back ('an' is left unset while retention is off, as retain() leaves it)
    local an = nil
    if anon_ttl > 0 then
      an = '1'
      for _, i in ipairs(new) do
        if not anon_types[i[1]] then an = '0'; break end
      end
    end
    local meta = {'c', ev.tss, 'fs', ev.tss, 'ls', ev.tss, 'nm', '0'}
    if an then meta[#meta + 1] = 'an'; meta[#meta + 1] = an end
    redis.call('HSET', pkey(pid), unpack(meta))
    attach(pid, new)
    touch(pid, ev, true)
    if an == '1' then expire_new(pid, ev, new) end
    return {pid, 'new', 1, {}, dropped}
  end
  local survivor, sc = nil, nil
  for _, m in ipairs(matched) do
    local c = info[m].c
    if survivor == nil or c < sc or (c == sc and m < survivor) then survivor, sc = m, c end
  end
  local merges = {}
  local added = {}  -- identifier types this event brings to the survivor
  for _, i in ipairs(new) do table.insert(added, i[1]) end
  local sat = info[survivor].at
  for _, absorbed in ipairs(matched) do
    if absorbed ~= survivor then
      -- the identifiers of the absorbed profile or the survivor, in ids order: merge two sorted lists
      local aat, linking, x, y = info[absorbed].at, {}, 1, 1
      while x <= #aat or y <= #sat do
        if y > #sat or (x <= #aat and aat[x] < sat[y]) then
          table.insert(linking, ids[aat[x]]); x = x + 1
        else
          table.insert(linking, ids[sat[y]]); y = y + 1
        end
      end
      for _, m in ipairs(info[absorbed].members) do table.insert(added, string.match(m, '^([^:]+):')) end
      merge(survivor, absorbed, info[absorbed].members, linking, ev.ts)
      table.insert(merges, {survivor, absorbed, linking, ev.ts})
    end
  end
  attach(survivor, new)
  -- a merge wrote the survivor's first/last seen: read them again
  local an, grew = touch(survivor, ev, false, #merges == 0 and info[survivor].seen or nil)
  retain(survivor, an, added, grew)
  local outcome = 'matched'
  if #merges > 0 then outcome = 'merged' end
  return {survivor, outcome, 0, merges, dropped}
end

-- Memos: {G}:r:<m>|<src> holds an occurrence's result; {G}:p:<pid>:r (zset: occurrence -> expiry
-- ms) lists the memos of the events a profile resolved, so erasing the profile erases them too.
local now_ms, now_s, until_s
local function remember(ev, pid, encoded)
  local occ = ev.m .. '|' .. ev.src
  redis.call('SET', G .. ':r:' .. occ, encoded, 'EX', memo_ttl_s)
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    now_s, until_s = int(now_ms), int(now_ms + memo_ttl * 1000)
  end
  local idx = pkey(pid) .. ':r'
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now_s)
  redis.call('ZADD', idx, until_s, occ)
  redis.call('EXPIRE', idx, memo_ttl_s)
end

local out = {}
for n, ev in ipairs(batch) do
  local src = ev.src
  if src == '' then src = nil end
  local memo = src and redis.call('GET', G .. ':r:' .. ev.m .. '|' .. src)
  if memo then
    out[n] = memo  -- verbatim: nothing is applied again
  else
    ev.tss = int(ev.ts)
    local result = resolve_one(ev)
    out[n] = cjson.encode(result)
    if src and (result[2] ~= 'matched' or #result[5] > 0) then remember(ev, result[1], out[n]) end
  end
end
return '[' .. table.concat(out, ',') .. ']'
