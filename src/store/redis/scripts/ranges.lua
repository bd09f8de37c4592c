-- Edits one per-user field's membership ranges, for in-place changes to a
-- per-user audience. The value lists the audience versions that hold the
-- user, as comma-separated ranges: "3-" (from version 3 on) or "3-7"
-- (versions 3 to 6). A reader at version V counts the user when a range
-- holds V, so a change written ahead of its commit is invisible until the
-- version moves, and one that never commits can be undone exactly.
--
-- KEYS[1] the user's hash. ARGV[1] field, ARGV[2] operation, ARGV[3]
-- version, ARGV[4] expire_at (for 'open').
--   open V        the user is a member from V on
--   close V       the user stops being a member at V
--   undo-open V   forget an 'open V' that never committed
--   undo-close V  forget a 'close V' that never committed
--   prune V       drop ranges that ended at or before V
local key, field, op, v = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local ranges = {}
local value = redis.call('HGET', key, field)
if value then
  for r in string.gmatch(value, '[^,]+') do ranges[#ranges + 1] = r end
end
local last = ranges[#ranges]
local from, to
if last then
  from, to = string.match(last, '^(%d+)-(%d*)$')
end
if op == 'open' then
  if not last or to ~= '' then ranges[#ranges + 1] = v .. '-' end
elseif op == 'close' then
  if last and to == '' then ranges[#ranges] = from .. '-' .. v end
elseif op == 'undo-open' then
  if last and to == '' and tonumber(from) == v then ranges[#ranges] = nil end
elseif op == 'undo-close' then
  if last and to ~= '' and tonumber(to) == v then ranges[#ranges] = from .. '-' end
elseif op == 'prune' then
  local kept = {}
  for _, r in ipairs(ranges) do
    local e = string.match(r, '^%d+-(%d*)$')
    if e == '' or tonumber(e) > v then kept[#kept + 1] = r end
  end
  ranges = kept
end
if #ranges == 0 then
  if value then redis.call('HDEL', key, field) end
  return 0
end
redis.call('HSET', key, field, table.concat(ranges, ','))
if op == 'open' then
  redis.call('EXPIREAT', key, ARGV[4], 'NX')
  redis.call('EXPIREAT', key, ARGV[4], 'GT')
end
return 1
