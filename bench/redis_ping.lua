-- luaecho run bench/redis_ping.lua URL [CALLS [TASKS]]: the round trips of
-- r:call("PING") through luaecho.redis, for docs/redis.md. TASKS tasks
-- (default 1) each make CALLS/TASKS calls one after another; every call is
-- timed with luaecho.now(). Prints calls/s and the latency quantiles.
local redis = require "luaecho.redis"
local luaecho = require "luaecho"

local url, calls, tasks = ...
calls, tasks = tonumber(calls or "10000"), tonumber(tasks or "1")
local r = redis.connect(url or "redis://127.0.0.1:6379", { max_pending = math.max(tasks, 1) })
assert(r:call("PING") == "PONG", "no PONG from " .. tostring(url))

local times, left = {}, tasks
local started = luaecho.now()
local finished = luaecho.now()
for _ = 1, tasks do
  luaecho.spawn(function()
    for _ = 1, calls // tasks do
      local t0 = luaecho.now()
      local reply, err = r:call("PING")
      times[#times + 1] = luaecho.now() - t0
      assert(reply == "PONG", tostring(err))
    end
    left = left - 1
    if left == 0 then finished = luaecho.now() end
  end)
end
while left > 0 do luaecho.sleep(0.01) end

local n, total = #times, finished - started
table.sort(times)
local function quantile(p) return times[math.max(1, math.ceil(n * p))] * 1e6 end
print(("%d calls, %d task(s), %.3f s: %.0f calls/s; latency p50 %.1f us, p99 %.1f us, max %.1f us"):format(
  n, tasks, total, n / total, quantile(0.5), quantile(0.99), times[n] * 1e6))
r:close()
