-- Creates a campaign's meta hash only if it does not exist.
-- KEYS[1] meta; ARGV[1] expire_at; ARGV[2..] field, value pairs.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
