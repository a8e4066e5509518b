-- GCRA, the same arithmetic as the in-process limiter (gcra.rs), run atomically on the Redis
-- server and on its clock, so every instance agrees on "now" and no two checks interleave.
--
-- KEYS[1]  the key's theoretical arrival time (TAT), in microseconds since the epoch
-- ARGV[1]  microseconds between two tokens
-- ARGV[2]  the tolerance: how far past now the TAT may run (interval x burst)
--
-- Returns {1, ahead} when the request is admitted (ahead: how far the new TAT is past now),
-- {0, reset, retry} when it is refused (reset: until the bucket is full again; retry: until
-- one request fits), all in microseconds. Microseconds since the epoch stay exact in Lua's
-- doubles (2^53 us is 285 years).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
local start = math.max(tat, now)
local ahead = start + interval - now
if ahead > tolerance then
  return {0, start - now, ahead - tolerance}
end
-- The key lives exactly as long as its bucket is not full: a full bucket is a fresh key.
redis.call('SET', KEYS[1], string.format('%d', start + interval), 'PX', math.ceil(ahead / 1000))
return {1, ahead}
