-- A fenced commit: applies a list of commands to one campaign's keys (one
-- hash slot) only if the caller still holds the writer lease and the
-- campaign is still the incarnation and revision the caller read. Checked
-- and applied in one script, so a writer that stalled past its lease, or
-- whose campaign was deleted and re-created meanwhile, changes nothing.
--
-- KEYS[1] meta hash, KEYS[2] lease, KEYS[3..] keys the commands use.
-- ARGV[1] lease token, ARGV[2] incarnation, ARGV[3] revision, then per
-- command: name, key count, argument count, key indexes, arguments.
-- The command SWAP (live, staging, trash, expire_at) replaces a live key by
-- a staged one without RENAME ever overwriting a big key: the live key goes
-- to a fresh trash name first (O(1)) and is UNLINKed, freed off the main
-- thread. A missing staging key means an empty audience.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('FENCED the writer lease is no longer held')
end
local seen = redis.call('HMGET', KEYS[1], 'incarnation', 'revision')
if seen[1] ~= ARGV[2] or seen[2] ~= ARGV[3] then
  return redis.error_reply('FENCED the campaign changed since it was read')
end
local i = 4
while i <= #ARGV do
  local name, nkeys, nargs = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  i = i + 3
  local args = {}
  for _ = 1, nkeys do
    args[#args + 1] = KEYS[tonumber(ARGV[i])]
    i = i + 1
  end
  for _ = 1, nargs do
    args[#args + 1] = ARGV[i]
    i = i + 1
  end
  if name == 'SWAP' then
    if redis.call('EXISTS', args[1]) == 1 then
      redis.call('RENAME', args[1], args[3])
      redis.call('UNLINK', args[3])
    end
    if redis.call('EXISTS', args[2]) == 1 then
      redis.call('RENAME', args[2], args[1])
      redis.call('EXPIREAT', args[1], args[4])
    end
  else
    redis.call(name, unpack(args))
  end
end
return 1
