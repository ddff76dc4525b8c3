// Lua scripts for rate limits kept in Redis (limit_req's cluster mode), run with
// RedisClient::eval(). Each is atomic on the server, takes ONE key (so it also works on a Redis
// Cluster) and reads the clock from the caller, or from the server's TIME when `now` is 0, so
// that every gateway machine sharing the limit uses one clock.
//
// Both return an array of integers {admitted, value, wait_ms, ...}:
//   admitted  1 if the request passes (and, with commit = 1, was counted), 0 if it is over
//   value     leaky bucket: the excess with this request counted (for a rejected one, what it
//             would have been), in thousandths of a request (nginx's unit: delay a passing
//             request by (excess - delay*1000) * 1000 / rate ms);
//             sliding window: the requests counted in the window, this one included if admitted
//   wait_ms   when rejected: milliseconds until a request would pass (Retry-After); else 0
// Keys expire on their own once idle long enough to have drained, so Redis memory stays bounded.
#pragma once

#include "core/redis.hpp"

namespace tollgate {

// nginx's limit_req leaky bucket (ngx_http_limit_req_lookup), on a hash {e: excess, t: last ms}.
// ARGV: rate (thousandths of a request per second: 10r/s -> 10000, 30r/m -> 500),
//       burst (thousandths: burst=5 -> 5000), now (ms; 0: the server's clock),
//       commit (1: count an admitted request; 0: only check).
// As in nginx (and limit_req_algo's leaky_*), a key's first request starts with excess 0, a
// rejected request changes nothing, the time is kept only when it moved ("if (ms) lr->last =
// now") and a clock that went back more than 60 s counts as 1 ms elapsed.
inline constexpr RedisScript kRedisLeakyBucket{R"lua(
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3]) or 0
if now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local state = redis.call('HMGET', KEYS[1], 'e', 't')
local excess = 0
local moved = true
if state[1] then
  local ms = now - tonumber(state[2])
  if ms < -60000 then ms = 1 elseif ms < 0 then ms = 0 end
  moved = ms ~= 0
  excess = tonumber(state[1]) - math.floor(rate * ms / 1000) + 1000
  if excess < 0 then excess = 0 end
end
if excess > burst then
  return {0, excess, math.ceil((excess - burst) * 1000 / rate)}
end
if ARGV[4] ~= '0' then
  redis.call('HSET', KEYS[1], 'e', excess)
  if moved then redis.call('HSET', KEYS[1], 't', now) end
  redis.call('PEXPIRE', KEYS[1], math.ceil(excess * 1000 / rate) + 1000)
end
return {1, excess, 0}
)lua"};

// limit_req's sliding window (modules/limit_req/limit_req_algo.hpp, window_update) on a hash
// {w: window ms, SLOT: count}: the window is cut into 10 sub-windows of window/10 ms; a request
// passes when the sub-windows overlapping (now - window, now] plus it stay within `limit`.
// Counting the oldest, partly overlapping sub-window whole may under-admit, never over-admit:
// no window of `window` ms, wherever it falls, holds more than `limit`. A changed window
// (a tiered rate) starts the key anew. Returns a 4th element: ms until the oldest counted
// sub-window leaves (X-RateLimit-Reset; 0 when nothing is counted). value = requests counted.
// ARGV: limit (requests per window), window (ms), now (ms; 0: the server's clock), commit.
inline constexpr RedisScript kRedisSlidingWindow{R"lua(
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[3]) or 0
if now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local commit = ARGV[4] ~= '0'
local slot_ms = math.floor(window / 10)
if slot_ms <= 0 then slot_ms = 1 end
local cur = math.floor(now / slot_ms)
local flat = redis.call('HGETALL', KEYS[1])
local counts = {}
local stored_window = nil
for i = 1, #flat, 2 do
  if flat[i] == 'w' then
    stored_window = tonumber(flat[i + 1])
  else
    counts[tonumber(flat[i])] = tonumber(flat[i + 1])
  end
end
if stored_window ~= window then
  counts = {}
  if commit then
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'w', window)
  end
end
local newest = cur
for j, _ in pairs(counts) do
  if j > newest then newest = j end
end
local sum = 0
local oldest = nil
for j, c in pairs(counts) do
  if j < newest - 10 then
    if commit then redis.call('HDEL', KEYS[1], string.format('%d', j)) end
  else
    sum = sum + c
    if c > 0 and (oldest == nil or j < oldest) then oldest = j end
  end
end
local function leaves_in(o)
  if o == nil then return 0 end
  local l = (o + 11) * slot_ms - now
  if l < 0 then l = 0 end
  return l
end
if sum + 1 > limit then
  local wait = leaves_in(oldest)
  if wait == 0 then wait = slot_ms end
  return {0, sum, wait, wait}
end
if commit then
  redis.call('HINCRBY', KEYS[1], string.format('%d', newest), 1)
  redis.call('PEXPIRE', KEYS[1], window + 2 * slot_ms)
  if oldest == nil then oldest = newest end
end
return {1, sum + 1, 0, leaves_in(oldest)}
)lua"};

}  // namespace tollgate
