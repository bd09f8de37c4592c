-- Releases the writer lease only if the caller still holds it, so a writer
-- whose lease expired never frees the next holder's.
-- KEYS[1] lease; ARGV[1] token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
