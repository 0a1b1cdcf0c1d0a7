"""The Redis Functions library behind the cluster: every write an actor's state sees.

All keys of one call share one hash tag (the actor's partition, see keys.py), every key
is declared, and every function checks everything before its first write (scripts have
no rollback).  Each write is safe to repeat: redis-py re-sends a command after a
connection error, so a repeated commit, send, acquire or journal entry is recognised
and answered as the first one was.

Key names per actor (T = the partition's hash tag):
  T:a:<id>  hash   e: epoch (fencing token), t: committed turns, p: pos (last applied stream ID),
                   i: imports name, g: gas policy, o: owner (worker ID of the last acquire, absent
                   once released), x: why it failed, f: "1" while T:c holds the spawned snapshot,
                   not a record, s: settling (JSON [[promise key, reply key]...]: calls whose async
                   export the record's promises will answer; set with each record),
                   k: code (hex SHA-256 of the snapshot given to spawn/upgrade), h: turns of history kept
                   (absent: 0), z: paused (JSON {reason, since, detail[, message_id]}), u: the last failed
                   turn (JSON {at, message_id, export, error, awaited}), q: extra gas for the next turn.
                   One-letter names, and no empty fields: every hibernated actor keeps this hash.
  T:c:<id>  string the last committed record (a plain string: no hash overhead on big values)
  T:l:<id>  string the lease, "<worker>:<epoch>" with a PX expiry
  T:m:<id>  stream the mailbox; entries after pos only (commits trim exactly)
  T:d:<id>  zset   message_id -> ms it was accepted, for idempotent sends (kept DEDUPE_WINDOW_MS)
  T:j:<id>  hash   token -> journaled host call result
  T:r:<id>:<message_id>  stream with the reply of one call (expires)
  T:h:<id>  list   the kept history, oldest first (msgpack entries, capped at h)
  T:hr:<id> list   the record after each kept turn (same order as T:h; fork and reset restore one)
  T:hb:<id> string the record before the oldest kept turn (replay starts there): "S" + the spawned
                   snapshot until K turns have run, then a stored record
  (with replica_acks >= 1 a commit does not write T:r keys: it stages its replies in T:a field
   y, a msgpack [reply key, payload, ...], and mva_publish writes them once WAIT says the
   commit is on enough replicas; see committer.py)
Per partition:
  T:work    zset   actor -> ms (server clock) when a worker should look: 0 for mail with no
                   owner, a timer's due time, or the owner's lease expiry (orphan check)
  T:ready   zset   "<owner>|<actor>" (score 0) for mail that arrived at an owned actor
  T:all     zset   every actor (score 0: pages by ZRANGE BYLEX), kept by spawn and delete
  T:failed  zset   failed actors (score 0), kept by fail, retry and delete
  T:paused  zset   paused actors (score 0), kept by pause, resume and delete
(The three inventory indexes let `actors(state="failed")` read a few members instead of scanning.)
  T:sync    string a counter mva_sync bumps: a write on the connection, so a WAIT after it covers
                   everything the master held for the partition when it ran
"""

from __future__ import annotations

VERSION = 14

LIBRARY = r"""#!lua name=mvactors
-- mvactors cluster functions
local VERSION = @VERSION@

local REPLY_TTL_MS = 3600000
local DEDUPE_WINDOW_MS = 86400000  -- default: a retry with the same message_id within a day is applied once

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function lease_holder(l)
  local lease = redis.call('GET', l)
  if not lease then return nil end
  return string.match(lease, '^(.*):%d+$')
end

local function after(id)  -- the smallest stream ID greater than id
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. tostring(tonumber(seq) + 1)
end

-- spawn(a, c, all; snapshot, imports, gas, code, history, actor)
local function spawn(keys, args)
  if redis.call('EXISTS', keys[1]) == 1 then return {'EXISTS'} end
  redis.call('SET', keys[2], args[1])
  redis.call('HSET', keys[1], 'f', '1', 'e', 0, 't', 0, 'p', '0-0')
  if args[2] ~= '' then redis.call('HSET', keys[1], 'i', args[2]) end
  if args[3] ~= '' then redis.call('HSET', keys[1], 'g', args[3]) end
  if args[4] and args[4] ~= '' then redis.call('HSET', keys[1], 'k', args[4]) end
  if args[5] and tonumber(args[5]) > 0 then redis.call('HSET', keys[1], 'h', args[5]) end
  if keys[3] then redis.call('ZADD', keys[3], 0, args[6]) end
  if keys[4] then redis.call('SET', keys[4], 'S' .. args[1]) end  -- history kept: replay starts here
  return {'OK'}
end

-- send(a, l, m, d, work, ready; actor, message_id, payload[, dedupe window ms]) -> {status, stream id, owner}
local function send(keys, args)
  local a, l, m, d, work, ready = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]
  local f = redis.call('HMGET', a, 'e', 'x')
  if not f[1] then return {'UNKNOWN'} end
  if f[2] then return {'FAILED', f[2]} end
  local owner = lease_holder(l)
  if redis.call('ZSCORE', d, args[2]) then return {'DUP', '', owner or ''} end
  local id = redis.call('XADD', m, '*', 'i', args[2], 'b', args[3])
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', d, '-inf', now - (tonumber(args[4]) or DEDUPE_WINDOW_MS))
  redis.call('ZADD', d, now, args[2])
  if owner then
    redis.call('ZADD', ready, 0, owner .. '|' .. args[1])
  else
    redis.call('ZADD', work, 'LT', 0, args[1])
  end
  return {'OK', id, owner or ''}
end

-- acquire(a, l, j, work, ready, c[, paused index]; actor, worker, ttl_ms)
--   -> {'OK', epoch, record or snapshot, fresh, turns, pos, imports, gas, settling, previous owner,
--       extra gas, history, journal...} | {'BUSY', holder} | {'PAUSED'} | ...
-- previous owner: the worker whose lease lapsed without a release ('' when released: not a takeover).
local function acquire(keys, args)
  local a, l, j, work, ready, c = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]
  local actor, worker, ttl = args[1], args[2], tonumber(args[3])
  local f = redis.call('HMGET', a, 'e', 'x', 'o', 'z')
  if not f[1] then
    redis.call('ZREM', work, actor)
    return {'UNKNOWN'}
  end
  if f[2] then
    redis.call('ZREM', work, actor)
    return {'FAILED', f[2]}
  end
  local now = now_ms()
  if f[4] then  -- paused: no turns until resumed (resume puts it back in the work index)
    local z = cjson.decode(f[4])
    if keys[7] and z['until'] and now >= z['until'] then
      -- A quota with refill_per_second is full again: it resumes by itself (Redis's clock), and the
      -- worker that adopts it fills the bucket ('q').
      redis.call('HDEL', a, 'z')
      redis.call('HSET', a, 'q', 'refill:')
      redis.call('ZREM', keys[7], actor)
    elseif not lease_holder(l) or lease_holder(l) == worker then
      -- (a refilling quota stays in the work index for the moment it is full)
      if z['until'] then redis.call('ZADD', work, z['until'], actor) else redis.call('ZREM', work, actor) end
      if f[3] then redis.call('ZREM', ready, f[3] .. '|' .. actor) end
      return {'PAUSED'}
    end
  end
  local holder = lease_holder(l)
  if holder and holder ~= worker then
    redis.call('ZADD', work, now + math.max(redis.call('PTTL', l), 0), actor)
    return {'BUSY', holder}
  end
  local prev = ''
  if not holder then  -- (a held lease of our own is this same acquire, re-sent by a retry)
    if f[3] then
      redis.call('ZREM', ready, f[3] .. '|' .. actor)
      prev = f[3]
    end
    local epoch = redis.call('HINCRBY', a, 'e', 1)
    redis.call('SET', l, worker .. ':' .. epoch, 'PX', ttl)
    redis.call('HSET', a, 'o', worker)
  end
  redis.call('ZADD', work, now + ttl, actor)
  redis.call('ZREM', ready, worker .. '|' .. actor)
  local r = redis.call('HMGET', a, 'e', 'f', 't', 'p', 'i', 'g', 's', 'q', 'h')
  local out = {'OK', r[1], redis.call('GET', c) or '', r[2] or '0', r[3], r[4], r[5] or '', r[6] or '', r[7] or '',
               prev, r[8] or '', r[9] or '0'}
  local journal = redis.call('HGETALL', j)
  for i = 1, #journal do out[#out + 1] = journal[i] end
  return out
end

-- renew(work, leases...; worker, ttl_ms, then per lease: actor, epoch) -> 1 (renewed) | 0 (lost) per lease
-- (the leases of one partition renew in one call)
local function renew(keys, args)
  local worker, ttl = args[1], tonumber(args[2])
  local expiry = now_ms() + ttl
  local out = {}
  for i = 2, #keys do
    local actor, epoch = args[2 * i - 1], args[2 * i]
    if redis.call('GET', keys[i]) == worker .. ':' .. epoch then
      redis.call('PEXPIRE', keys[i], ttl)
      redis.call('ZADD', keys[1], expiry, actor)
      out[i - 1] = 1
    else
      out[i - 1] = 0
    end
  end
  return out
end

local function release(a, l, m, work, ready, actor, worker, due)
  redis.call('DEL', l)
  redis.call('HDEL', a, 'o')
  redis.call('ZREM', ready, worker .. '|' .. actor)
  if redis.call('XLEN', m) > 0 then
    redis.call('ZADD', work, 0, actor)
  elseif due ~= '' then
    redis.call('ZADD', work, tonumber(due), actor)
  else
    redis.call('ZREM', work, actor)
  end
end

-- A gas pause, written by the releasing commit of the turns before it: the rolled-back turn's message
-- stays at the head of the mailbox; a refilling quota is looked at again when it is full ('until').
local function gas_pause(a, work, paused, actor, z)
  redis.call('HSET', a, 'z', z)
  redis.call('ZADD', paused, 0, actor)
  local due = cjson.decode(z)['until']
  if due then redis.call('ZADD', work, due, actor) else redis.call('ZREM', work, actor) end
end

-- history (issue 16): the commit of turns of an actor that keeps history appends each turn's entry and the
-- record after it, and drops the oldest beyond cap K; the record after the last dropped turn becomes
-- the base replay starts from.  Only in the first attempt of a commit (a repeat is answered DUP first).
-- hk: {T:h, T:hr, T:hb}; items: [[entry, record], ...]
local function keep_history(hk, items, cap)
  for _, item in ipairs(items) do
    redis.call('RPUSH', hk[1], item[1])
    redis.call('RPUSH', hk[2], item[2])
  end
  local over = redis.call('LLEN', hk[1]) - tonumber(cap)
  for _ = 1, over do
    redis.call('LPOP', hk[1])
    redis.call('SET', hk[3], redis.call('LPOP', hk[2]))
  end
end

-- One actor's commit; every check comes before its first write.
-- e: [actor, epoch, prev_turns, turns, pos, release, due ms or '', next_token, pending tokens, settling,
--     record, reply payloads, last failure JSON or '', gas pause JSON or ''[, history items, history cap]]
-- Replies held back until their commit is on enough replicas (replica_acks >= 1); mva_publish
-- makes them readable.  Appended: a commit repeated before the last publish keeps both.
local function stage_replies(a, reply_keys, payloads)
  local staged = redis.call('HGET', a, 'y')
  local list = staged and cmsgpack.unpack(staged) or {}
  for i = 1, #reply_keys do
    list[#list + 1] = reply_keys[i]
    list[#list + 1] = payloads[i]
  end
  redis.call('HSET', a, 'y', cmsgpack.pack(list))
end

local function commit_one(a, l, m, j, c, work, ready, paused, worker, e, reply_keys, stage, hk)
  local actor, epoch, prev, turns, pos = e[1], e[2], e[3], e[4], e[5]
  local rel, due, next_token, pending_tokens, settling = e[6], e[7], e[8], e[9], e[10]
  local f = redis.call('HMGET', a, 'e', 't', 'p', 'f', 's', 'q')
  if not f[1] then return 'UNKNOWN' end
  if f[1] ~= epoch then return 'FENCED ' .. f[1] end
  local ours = redis.call('GET', l) == worker .. ':' .. epoch
  -- Already applied (a retry), or nothing new: a release still stores its record, the same state
  -- with its garbage collected (hibernated actors keep the smaller one).
  local dup = tonumber(f[2]) == turns and f[3] == pos
  if dup and not (rel and ours) then return 'DUP' end
  if not ours then return 'FENCED ' .. f[1] end
  if not dup and tonumber(f[2]) ~= prev then return 'CONFLICT ' .. f[2] end
  redis.call('SET', c, e[11])
  if settling ~= '' then
    redis.call('HSET', a, 't', turns, 'p', pos, 's', settling)
  else
    redis.call('HSET', a, 't', turns, 'p', pos)
    if f[5] then redis.call('HDEL', a, 's') end
  end
  if f[4] then redis.call('HDEL', a, 'f') end  -- (each write costs Redis an AOF entry: only those needed)
  if e[13] ~= '' then redis.call('HSET', a, 'u', e[13]) end  -- a failed turn (rare: one compare per turn)
  if f[6] and not dup then redis.call('HDEL', a, 'q') end  -- resume(extra_gas=) was for the turn that ran
  if pos ~= '0-0' then redis.call('XTRIM', m, 'MINID', after(pos)) end
  if redis.call('EXISTS', j) == 1 then
    local pending = {}
    for _, token in ipairs(pending_tokens) do pending[tostring(token)] = true end
    for _, token in ipairs(redis.call('HKEYS', j)) do
      if tonumber(token) < next_token and not pending[token] then redis.call('HDEL', j, token) end
    end
  end
  if dup then  -- its replies went out with the first attempt
    release(a, l, m, work, ready, actor, worker, due)
    if e[14] ~= '' then gas_pause(a, work, paused, actor, e[14]) end
    return 'DUP'
  end
  if hk then keep_history(hk, e[15], e[16]) end
  local payloads = e[12]
  if stage and #reply_keys > 0 then
    stage_replies(a, reply_keys, payloads)
  else
    for i = 1, #reply_keys do
      redis.call('XADD', reply_keys[i], 'MAXLEN', 1, '*', 'v', payloads[i])
      redis.call('PEXPIRE', reply_keys[i], REPLY_TTL_MS)
    end
  end
  if rel then release(a, l, m, work, ready, actor, worker, due) end
  if e[14] ~= '' then gas_pause(a, work, paused, actor, e[14]) end
  return 'OK'
end

-- commit(work, ready, paused index, then per actor: a, l, m, j, c[, h, hr, hb], its reply keys...; worker, actors
--   [, stage]) -> a status per actor (stage '1': replies are staged, not written; see stage_replies)
-- actors: one msgpack array of commit_one's entries (one argument, not dozens: cheaper to send and parse).
-- Actors of one partition commit in one call (group commit); each actor's outcome is its own.
local function commit(keys, args)
  local work, ready, paused, worker, stage = keys[1], keys[2], keys[3], args[1], args[3] == '1'
  local k, out = 4, {}
  for n, e in ipairs(cmsgpack.unpack(args[2])) do
    local reply_keys, hk, nh = {}, nil, 0
    if e[15] then  -- (history kept: its three keys come after c)
      hk, nh = {keys[k + 5], keys[k + 6], keys[k + 7]}, 3
    end
    for i = 1, #e[12] do reply_keys[i] = keys[k + 4 + nh + i] end
    out[n] = commit_one(keys[k], keys[k + 1], keys[k + 2], keys[k + 3], keys[k + 4], work, ready, paused, worker, e,
                        reply_keys, stage, hk)
    k = k + 5 + nh + #e[12]
  end
  return out
end

-- fetch(mailboxes...; count, then per mailbox: the last stream ID read) -> msgpack array, per mailbox:
--   [stream ID, message_id, payload, stream ID, ...] of up to count entries after that ID
-- (one blob for a partition's mail: nested stream replies cost the client more to parse than the read itself)
local function fetch(keys, args)
  local count, out = tonumber(args[1]), {}
  for i = 1, #keys do
    local flat = {}
    for _, entry in ipairs(redis.call('XRANGE', keys[i], '(' .. args[i + 1], '+', 'COUNT', count)) do
      local fields, message_id, payload = entry[2], '', ''
      for f = 1, #fields, 2 do
        if fields[f] == 'i' then message_id = fields[f + 1] elseif fields[f] == 'b' then payload = fields[f + 1] end
      end
      flat[#flat + 1] = entry[1]
      flat[#flat + 1] = message_id
      flat[#flat + 1] = payload
    end
    out[i] = flat
  end
  return cmsgpack.pack(out)
end

-- journal(a, l, j; worker, epoch, token, entry) -> {'OK'} | {'DUP', entry} | {'FENCED'}
local function journal(keys, args)
  local epoch = redis.call('HGET', keys[1], 'e')
  if not epoch then return {'UNKNOWN'} end
  if epoch ~= args[2] or redis.call('GET', keys[2]) ~= args[1] .. ':' .. args[2] then return {'FENCED'} end
  local seen = redis.call('HGET', keys[3], args[3])
  if seen then return {'DUP', seen} end
  redis.call('HSET', keys[3], args[3], args[4])
  return {'OK'}
end

-- fail(a, l, m, work, ready, failed index, reply keys...; actor, worker, epoch, reason, read pos, reply payload
--   [, stage '1'])
--   -> {'OK'} | {'MORE'} (mail after read pos: read it, and name its callers too) | {'FENCED'} | {'UNKNOWN'}
-- Every waiting caller gets the failure in the same write that marks the actor failed (staged, like a
-- commit's replies, when the worker waits for replicas).
local function fail(keys, args)
  local a, l, m, work, ready = keys[1], keys[2], keys[3], keys[4], keys[5]
  local epoch = redis.call('HGET', a, 'e')
  if not epoch then return {'UNKNOWN'} end
  -- A lease that lapsed while the fatal turn ran (the hard stop is 5 s, a lease 2 s) still lets
  -- its holder fail the actor: the epoch is unchanged, so nobody acquired it since.
  local lease = redis.call('GET', l)
  if epoch ~= args[3] or (lease and lease ~= args[2] .. ':' .. args[3]) then return {'FENCED'} end
  if args[5] ~= '' and #redis.call('XRANGE', m, '(' .. args[5], '+', 'COUNT', 1) > 0 then return {'MORE'} end
  redis.call('HSET', a, 'x', args[4])
  redis.call('HDEL', a, 'o')
  redis.call('DEL', l)
  redis.call('ZREM', work, args[1])
  redis.call('ZREM', ready, args[2] .. '|' .. args[1])
  redis.call('ZADD', keys[6], 0, args[1])
  if args[7] == '1' then  -- replica_acks: readable once the replicas hold the failure (mva_publish)
    local reply_keys, payloads = {}, {}
    for i = 7, #keys do
      reply_keys[#reply_keys + 1] = keys[i]
      payloads[#payloads + 1] = args[6]
    end
    if #reply_keys > 0 then stage_replies(a, reply_keys, payloads) end
  else
    for i = 7, #keys do
      redis.call('XADD', keys[i], 'MAXLEN', 1, '*', 'v', args[6])
      redis.call('PEXPIRE', keys[i], REPLY_TTL_MS)
    end
  end
  return {'OK'}
end

-- take_ready(ready; worker, limit) -> actor IDs with new mail for this owner (removed from the set)
local function take_ready(keys, args)
  local prefix = args[1] .. '|'
  local found = redis.call('ZRANGEBYLEX', keys[1], '[' .. prefix, '[' .. prefix .. '\255', 'LIMIT', 0,
                           tonumber(args[2]))
  local out = {}
  for i, member in ipairs(found) do
    redis.call('ZREM', keys[1], member)
    out[i] = string.sub(member, #prefix + 1)
  end
  return out
end

-- One actor as describe and inventory report it: {turns, failed, imports, owner, mailbox, epoch, code,
-- history, paused, last failure} (strings, '' for none), or nil for an actor that is not stored.
local function describe_one(a, l, m)
  local f = redis.call('HMGET', a, 't', 'x', 'i', 'e', 'k', 'h', 'z', 'u')
  if not f[1] then return nil end
  return {f[1], f[2] or '', f[3] or '', lease_holder(l) or '', redis.call('XLEN', m), f[4], f[5] or '',
          f[6] or '0', f[7] or '', f[8] or ''}
end

-- describe(a, l, m) -> describe_one's fields | {}
local function describe(keys, args)
  return describe_one(keys[1], keys[2], keys[3]) or {}
end

-- delete(a, l, m, d, j, work, ready, c[, all, failed, paused, h, hr, hb]; actor) -> 1 | 0 (unknown)
local function delete(keys, args)
  local f = redis.call('HMGET', keys[1], 'e', 'o')
  if not f[1] then return 0 end
  redis.call('DEL', keys[1], keys[2], keys[3], keys[4], keys[5], keys[8])
  redis.call('ZREM', keys[6], args[1])
  if f[2] then redis.call('ZREM', keys[7], f[2] .. '|' .. args[1]) end
  for i = 9, 11 do
    if keys[i] then redis.call('ZREM', keys[i], args[1]) end
  end
  for i = 12, 14 do
    if keys[i] then redis.call('DEL', keys[i]) end
  end
  return 1
end

-- ---- operating actors (issue 16): inventory ----

-- inventory(a, l, m per actor; actor IDs) -> msgpack array of [actor, describe_one's fields...]
-- (actors of one partition, one page of an index; members whose actor is gone are skipped)
local function inventory(keys, args)
  local out = {}
  for n = 1, #args do
    local one = describe_one(keys[3 * n - 2], keys[3 * n - 1], keys[3 * n])
    if one then
      table.insert(one, 1, args[n])
      out[#out + 1] = one
    end
  end
  return cmsgpack.pack(out)
end

-- ---- operating actors (issue 16): pause, resume, retry, cancel ----
-- Each checks before its first write, and answers a repeat (redis-py re-sends after a connection
-- error) as it answered the first: pause is idempotent, resume and retry remember the request ID
-- that applied them ('r'), cancel finds the reply it wrote.

-- Take the actor from its owner, if any: the epoch moves on, so the owner's next commit, renewal
-- or journal write is refused and it drops the actor; turns it did not commit run again later
-- from the mailbox (as after a takeover).
local function fence_out(a, l, ready, actor)
  local o = redis.call('HGET', a, 'o')
  if o or redis.call('EXISTS', l) == 1 then
    redis.call('HINCRBY', a, 'e', 1)
    redis.call('DEL', l)
    redis.call('HDEL', a, 'o')
    if o then redis.call('ZREM', ready, o .. '|' .. actor) end
  end
end

-- pause(a, l, work, ready, paused index; actor, detail) -> {'OK', pause} | {'ALREADY', pause} | {'FAILED', why}
--   | {'UNKNOWN'}
local function pause(keys, args)
  local a, l, work, ready, paused = keys[1], keys[2], keys[3], keys[4], keys[5]
  local f = redis.call('HMGET', a, 'e', 'x', 'z')
  if not f[1] then return {'UNKNOWN'} end
  if f[2] then return {'FAILED', f[2]} end
  if f[3] then return {'ALREADY', f[3]} end
  fence_out(a, l, ready, args[1])
  local z = cjson.encode({reason = 'operator', since = now_ms() / 1000, detail = args[2]})
  redis.call('HSET', a, 'z', z)
  redis.call('ZADD', paused, 0, args[1])
  redis.call('ZREM', work, args[1])
  return {'OK', z}
end

-- resume(a, work, paused index; actor, request ID, extra gas or '') -> {'OK', pause} | {'NOT_PAUSED'} | {'UNKNOWN'}
local function resume(keys, args)
  local a, work, paused = keys[1], keys[2], keys[3]
  local f = redis.call('HMGET', a, 'e', 'z', 'r')
  if not f[1] then return {'UNKNOWN'} end
  if not f[2] then
    if f[3] == args[2] then return {'OK', ''} end
    return {'NOT_PAUSED'}
  end
  local z = cjson.decode(f[2])
  redis.call('HDEL', a, 'z')
  redis.call('HSET', a, 'r', args[2])
  if args[3] ~= '' then redis.call('HSET', a, 'q', (z.gas or 'per_turn') .. ':' .. args[3]) end
  redis.call('ZREM', paused, args[1])
  redis.call('ZADD', work, 0, args[1])  -- a worker looks at once (mail, a timer, or nothing: it releases)
  return {'OK', f[2]}
end

-- retry(a, l, work, ready, failed index; actor, request ID) -> {'OK'} | {'NOT_FAILED'} | {'UNKNOWN'}
-- The failure is cleared; the next owner starts from the last committed record, and the mail after
-- it (the turn that failed first) runs again.
local function retry(keys, args)
  local a, l, work, ready, failed = keys[1], keys[2], keys[3], keys[4], keys[5]
  local f = redis.call('HMGET', a, 'e', 'x', 'r')
  if not f[1] then return {'UNKNOWN'} end
  if not f[2] then
    if f[3] == args[2] then return {'OK'} end
    return {'NOT_FAILED'}
  end
  fence_out(a, l, ready, args[1])
  redis.call('HDEL', a, 'x')
  redis.call('HSET', a, 'r', args[2])
  redis.call('ZREM', failed, args[1])
  redis.call('ZADD', work, 0, args[1])
  return {'OK'}
end

-- cancel(a, l, m, d, work, ready, paused index, reply key; actor, message_id, cancelled payload)
--   -> {'OK'} (dropped before it ran) | {'APPLIED'} | {'NOT_SENT'} | {'UNKNOWN'}
-- The owner (it may have read the message, or run it without committing) is fenced out first.
local function cancel(keys, args)
  local a, l, m, d, work, ready, paused, reply = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6], keys[7], keys[8]
  local f = redis.call('HMGET', a, 'e', 'z')
  if not f[1] then return {'UNKNOWN'} end
  local found, head = nil, nil
  for n, entry in ipairs(redis.call('XRANGE', m, '-', '+')) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'i' and fields[i + 1] == args[2] then found, head = entry[1], n == 1 end
    end
    if found then break end
  end
  if not found then
    if redis.call('EXISTS', reply) == 1 then
      local last = redis.call('XREVRANGE', reply, '+', '-', 'COUNT', 1)
      if last[1] and last[1][2][2] == args[3] then return {'OK'} end  -- this cancel, re-sent
    end
    if redis.call('ZSCORE', d, args[2]) then return {'APPLIED'} end
    return {'NOT_SENT'}
  end
  fence_out(a, l, ready, args[1])
  redis.call('XDEL', m, found)
  redis.call('XADD', reply, 'MAXLEN', 1, '*', 'v', args[3])
  redis.call('PEXPIRE', reply, REPLY_TTL_MS)
  local still_paused = f[2] ~= nil
  if f[2] and head then
    local z = cjson.decode(f[2])
    if z.reason == 'gas' then  -- the paused turn's own message is gone: go on with the next
      redis.call('HDEL', a, 'z')
      redis.call('ZREM', paused, args[1])
      still_paused = false
    end
  end
  if not still_paused then redis.call('ZADD', work, 0, args[1]) end
  return {'OK'}
end

-- ---- operating actors (issue 16): fork and reset, from the record kept after a turn ----
-- The kept turns are t-n+1 .. t (n entries in T:h); "after turn t-n" is the base (T:hb).

-- The stored record after turn N, its index in T:h (0: the base), and the kept range; nil when N is outside.
local function after_turn(a, h, hr, hb, n_turn)
  local t = tonumber(redis.call('HGET', a, 't'))
  local n = redis.call('LLEN', h)
  local lo = t - n
  if redis.call('EXISTS', hb) == 0 or n_turn < lo or n_turn > t then return nil, lo, t end
  if n_turn == lo then return redis.call('GET', hb), 0, t end
  return redis.call('LINDEX', hr, n_turn - lo - 1), n_turn - lo, t
end

-- A kept record as T:c holds it ('S' + snapshot: the spawned snapshot, which T:c holds with f = 1).
local function put_record(a, c, r)
  if string.sub(r, 1, 1) == 'S' then
    redis.call('SET', c, string.sub(r, 2))
    redis.call('HSET', a, 'f', '1')
  else
    redis.call('SET', c, r)
    redis.call('HDEL', a, 'f')
  end
end

-- fork_into(a, c, h, hr, hb, all; actor, turn, request ID, record, base, imports, gas, code, cap, n,
--   n entries, n records) -> {'OK'} | {'EXISTS'}
-- The new actor of a fork, written in its own slot (it may hash to another partition than the actor it
-- copies, so the client reads that one's kept window and passes the part up to the turn).  A repeat
-- (same request ID) finds the actor it made and answers OK.
local function fork_into(keys, args)
  local a, c, h, hr, hb = keys[1], keys[2], keys[3], keys[4], keys[5]
  if redis.call('EXISTS', a) == 1 then
    if redis.call('HGET', a, 'fk') == args[3] then return {'OK'} end
    return {'EXISTS'}
  end
  redis.call('HSET', a, 'e', 0, 't', args[2], 'p', '0-0', 'fk', args[3], 'h', args[9])
  put_record(a, c, args[4])
  if args[6] ~= '' then redis.call('HSET', a, 'i', args[6]) end
  if args[7] ~= '' then redis.call('HSET', a, 'g', args[7]) end
  if args[8] ~= '' then redis.call('HSET', a, 'k', args[8]) end
  redis.call('SET', hb, args[5])
  local n = tonumber(args[10])
  for i = 1, n do
    redis.call('RPUSH', h, args[10 + i])
    redis.call('RPUSH', hr, args[10 + n + i])
  end
  redis.call('ZADD', keys[6], 0, args[1])
  return {'OK'}
end

-- reset(a, l, m, c, j, h, hr, hb, work, ready, dropped reply keys...; actor, turn, turns seen, request ID,
--   settling seen, dropped payload, reapplied (message ID, payload)...)
--   -> {'OK'} | {'RANGE', lo, hi} | {'MOVED', turns} | {'UNKNOWN'}
-- Back to the state after turn N: the owner is fenced out, the history after N is dropped, the journal
-- (tokens of the dropped turns) cleared.  The client read the history at "turns seen" and passes the
-- mailbox payloads of the messages applied after N to re-queue (reapply), ahead of the mail waiting:
-- MOVED when turns ran since, or the settling list (field s) changed (the client reads again).  The
-- callers of async exports in that list whose message is not re-queued with its reply wanted get the
-- dropped payload.  A repeat (same request ID) answers OK.
local function reset(keys, args)
  local a, l, m, c, j, h, hr, hb, work, ready = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6], keys[7],
    keys[8], keys[9], keys[10]
  local f = redis.call('HMGET', a, 'e', 't', 'r', 's')
  if not f[1] then return {'UNKNOWN'} end
  if f[3] == args[4] then return {'OK'} end
  local r, idx, hi = after_turn(a, h, hr, hb, tonumber(args[2]))
  if not r then return {'RANGE', idx, hi} end
  if f[2] ~= args[3] or (f[4] or '') ~= args[5] then return {'MOVED', f[2]} end
  for i = 11, #keys do  -- callers of async exports whose promise the reset drops
    redis.call('XADD', keys[i], 'MAXLEN', 1, '*', 'v', args[6])
    redis.call('PEXPIRE', keys[i], REPLY_TTL_MS)
  end
  fence_out(a, l, ready, args[1])
  put_record(a, c, r)
  redis.call('HSET', a, 't', args[2], 'r', args[4])
  redis.call('HDEL', a, 's')
  redis.call('DEL', j)
  if idx == 0 then
    redis.call('DEL', h, hr)
  else
    redis.call('LTRIM', h, 0, idx - 1)
    redis.call('LTRIM', hr, 0, idx - 1)
  end
  if #args > 6 then  -- the re-queued messages go first: the mailbox is written again in that order
    local waiting = redis.call('XRANGE', m, '-', '+')
    redis.call('DEL', m)
    for i = 7, #args, 2 do redis.call('XADD', m, '*', 'i', args[i], 'b', args[i + 1]) end
    for _, entry in ipairs(waiting) do redis.call('XADD', m, '*', unpack(entry[2])) end
  end
  redis.call('ZADD', work, 0, args[1])
  return {'OK'}
end

-- ---- operating actors (issue 16): upgrade ----
-- Client.upgrade sends a barrier (export -1) through the mailbox; the worker that reaches it with every
-- earlier turn committed and no host call or timer pending releases the actor paused ('upgrade', with
-- the barrier's message_id).  Then this applies the new record, fenced by the epoch the client saw.

-- upgrade(a, l, m, c, j, h, hr, hb, work, ready, paused; actor, epoch, message_id, request ID, outcome, record,
--   code, history entry) -> {'OK'} | {'NOT_AT_BARRIER'} | {'FENCED', epoch} | {'UNKNOWN'}
-- outcome 'OK': the new record ('S' + snapshot: a fresh one) and code replace the old, one more turn,
-- history entry kept (if any); 'FAIL' or 'ABORT': the barrier is dropped and the actor goes on with
-- its old code (ABORT: it may not have been reached; its holder, if any, is fenced out).
local function upgrade(keys, args)
  local a, l, m, c, j, h, hr, hb = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6], keys[7], keys[8]
  local work, ready, paused = keys[9], keys[10], keys[11]
  local f = redis.call('HMGET', a, 'e', 'z', 'r', 'h')
  if not f[1] then return {'UNKNOWN'} end
  if f[3] == args[4] then return {'OK'} end  -- this request, re-sent
  local at_barrier = false
  if f[2] then
    local z = cjson.decode(f[2])
    at_barrier = z.reason == 'upgrade' and z.message_id == args[3]
  end
  if args[5] ~= 'ABORT' then
    if not at_barrier then return {'NOT_AT_BARRIER'} end
    if f[1] ~= args[2] then return {'FENCED', f[1]} end
  elseif not at_barrier then
    fence_out(a, l, ready, args[1])
  end
  for _, entry in ipairs(redis.call('XRANGE', m, '-', '+')) do
    if entry[2][2] == args[3] then
      redis.call('XDEL', m, entry[1])
      if at_barrier then redis.call('HSET', a, 'p', entry[1]) end  -- (it was the head: the next to apply)
      break
    end
  end
  if args[5] == 'OK' then
    put_record(a, c, args[6])
    redis.call('HSET', a, 'k', args[7])
    redis.call('HINCRBY', a, 't', 1)
    redis.call('HDEL', a, 's')
    redis.call('DEL', j)  -- (no call was pending; the new code numbers its calls from its own record)
    if f[4] and args[8] ~= '' then keep_history({h, hr, hb}, {{args[8], args[6]}}, f[4]) end
  end
  if at_barrier then
    redis.call('HDEL', a, 'z')
    redis.call('ZREM', paused, args[1])
  end
  redis.call('HSET', a, 'r', args[4])
  redis.call('ZADD', work, 0, args[1])
  return {'OK'}
end

local function version(keys, args) return VERSION end

-- ---- replica_acks (issue 15): the writes that make WAIT cover what a caller is about to trust ----

-- sync(T:sync) -> n: one write that always replicates, so a WAIT after it on the same connection
-- returns only once the replicas hold everything this master had for the slot (a DUP send or
-- commit writes nothing itself, yet what it found may not be replicated).
local function sync(keys, args)
  return redis.call('INCR', keys[1])
end

-- publish(a, reply keys...) -> replies made readable.  Sent only after a WAIT said the commits
-- that staged them are on enough replicas.  Only the declared keys are published: others may be
-- a later commit's, not yet replicated.  No epoch check: a staged reply belongs to a commit that
-- passed its own fencing check, and the entry leaves the stage in the same write, so a publish
-- repeated (by a retry, or by the worker that adopted the actor) makes nothing readable twice.
local function publish(keys, args)
  local staged = redis.call('HGET', keys[1], 'y')
  if not staged then return 0 end
  local wanted = {}
  for i = 2, #keys do wanted[keys[i]] = true end
  local list, keep, n = cmsgpack.unpack(staged), {}, 0
  for i = 1, #list, 2 do
    if wanted[list[i]] then
      redis.call('XADD', list[i], 'MAXLEN', 1, '*', 'v', list[i + 1])
      redis.call('PEXPIRE', list[i], REPLY_TTL_MS)
      n = n + 1
    else
      keep[#keep + 1] = list[i]
      keep[#keep + 1] = list[i + 1]
    end
  end
  if #keep > 0 then redis.call('HSET', keys[1], 'y', cmsgpack.pack(keep)) else redis.call('HDEL', keys[1], 'y') end
  return n
end

redis.register_function('mva_spawn', spawn)
redis.register_function('mva_send', send)
redis.register_function('mva_acquire', acquire)
-- allow-oom: a full Redis (noeviction at maxmemory) must not take leases away from the workers
-- that hold them (they would drop their actors); a renewal grows nothing.
redis.register_function{function_name='mva_renew', callback=renew, flags={'allow-oom'}}
redis.register_function('mva_commit', commit)
redis.register_function{function_name='mva_fetch', callback=fetch, flags={'no-writes'}}
redis.register_function('mva_journal', journal)
redis.register_function('mva_fail', fail)
redis.register_function{function_name='mva_take_ready', callback=take_ready, flags={'allow-oom'}}  -- only removes
redis.register_function{function_name='mva_describe', callback=describe, flags={'no-writes'}}
redis.register_function('mva_delete', delete)
redis.register_function{function_name='mva_inventory', callback=inventory, flags={'no-writes'}}
redis.register_function('mva_pause', pause)
redis.register_function('mva_resume', resume)
redis.register_function('mva_retry', retry)
redis.register_function('mva_cancel', cancel)
redis.register_function('mva_fork_into', fork_into)
redis.register_function('mva_reset', reset)
redis.register_function('mva_upgrade', upgrade)
redis.register_function{function_name='mva_version', callback=version, flags={'no-writes'}}
redis.register_function{function_name='mva_sync', callback=sync, flags={'allow-oom'}}  -- one counter
-- allow-oom: it moves a staged reply from the record's hash to its stream (no net growth), and a
-- reply whose commit is durable should not wait for memory.
redis.register_function{function_name='mva_publish', callback=publish, flags={'allow-oom'}}
""".replace("@VERSION@", str(VERSION))
