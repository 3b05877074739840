--- luaecho.channel: publish and subscribe between the connections of every
-- worker of the process, and with `--channel-redis URL` of every instance
-- sharing that Redis. A message reaches every subscriber of its topic
-- exactly once, in publish order per publisher, and never inside the
-- publish call (the publisher's own worker too gets it on a later loop
-- turn). Each worker's inbox is bounded (`--channel-buffer`): what does
-- not fit is dropped and counted, the publisher never waits.
-- A subscription belongs to the script generation that made it: after a
-- reload it is closed once no connection runs that generation's code.
-- This file checks the arguments and blames the caller; the host's
-- primitives (core.channel_publish, channel_subscribe, channel_redis_url,
-- src/channel_script.c) do the work, and luaecho.testing's fake core has
-- the same ones, so a handler's channel works under plain busted.
-- Relies on luaecho.core, looked up at the first call.
-- @usage
--   local channel = require "luaecho.channel"
--   local sub = channel.subscribe("room", function(message, topic) print(topic, message) end)
--   channel.publish("room", "hello")   -- printed on a later loop turn
--   sub:close()
local package, require = package, require
local error, type = error, type

local M = {}

local TOPIC_MAX = 1024 -- as in src/channel_script.c

-- luaecho.core: the host's, or luaecho.testing's fake; raises without either.
local function core()
  local c = package.loaded["luaecho.core"]
  if c == nil and package.preload["luaecho.core"] then c = require("luaecho.core") end
  if c == nil or c.channel_publish == nil then
    error("luaecho.channel needs the luaecho host (or luaecho.testing, in a spec)", 3)
  end
  return c
end

local function check_topic(fname, topic)
  if type(topic) ~= "string" then
    error("channel." .. fname .. "(): the topic must be a string, not a " .. type(topic), 3)
  end
  if #topic == 0 or #topic > TOPIC_MAX then
    error("channel." .. fname .. "(): a topic is 1 to " .. TOPIC_MAX .. " bytes, not " .. #topic, 3)
  end
end

--- Queue 'message' (a string) for every subscriber of 'topic'.
function M.publish(topic, message)
  check_topic("publish", topic)
  if type(message) ~= "string" then
    error("channel.publish(): the message must be a string, not a " .. type(message), 2)
  end
  core().channel_publish(topic, message)
end

--- Call fn(message, topic) for every message published on 'topic' from
-- now on. Returns the subscription: sub:close() (idempotent; also its
-- __close, so `local sub <close> = ...` works), sub:closed().
function M.subscribe(topic, fn)
  check_topic("subscribe", topic)
  if type(fn) ~= "function" then
    error("channel.subscribe(): the subscriber must be a function, not a " .. type(fn), 2)
  end
  return core().channel_subscribe(topic, fn)
end

--- The `--channel-redis` URL as given, or nil (the channel spans this
-- process only).
function M.redis_url()
  return core().channel_redis_url()
end

return M
