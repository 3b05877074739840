--- luaecho.testing's fake channel: what src/channel_script.c and
-- src/channel_hub.c give luaecho.channel (core.channel_publish,
-- channel_subscribe, channel_redis_url), inside the fake world: one worker,
-- no Redis. A message is delivered on a later turn of the fake loop, never
-- inside publish, to the subscribers of its topic then open, in the order
-- they subscribed, each call on its own (a failing subscriber is logged as
-- the host logs it, "channel subscriber failed: ...", and the others still
-- get the message). There are no reloads in the fake world, so no
-- generations and no inbox bound.
-- The state is the world's (W.channel), emptied by testing.reset().
-- Relies on luaecho.testing.world, .clock, .report and .args.
-- @usage
--   local channel = require "luaecho.testing.channel"
--   core.channel_publish = channel.publish          -- and the other primitives
--   channel.published("room")                      --> { "hello" }
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local report = require "luaecho.testing.report"
local args = require "luaecho.testing.args"
local ipairs, setmetatable = ipairs, setmetatable

local W = world.W

local M = {}

local TOPIC_MAX = 1024 -- as in src/channel_script.c

local Subscription = {}
local SubscriptionMeta = { __index = Subscription, __name = "luaecho.channel_subscription" }
local records = setmetatable({}, { __mode = "k" })

local function check(self, method)
  local s = records[self]
  if s == nil then args.expected(1, method, "luaecho.channel_subscription", self, 3) end
  return s
end

function Subscription.close(self)
  check(self, "close").closed = true
end

function Subscription.closed(self)
  return check(self, "closed").closed
end

SubscriptionMeta.__close = Subscription.close

local function topic_arg(topic, fname)
  topic = args.string(topic, 1, fname, 3)
  if #topic == 0 or #topic > TOPIC_MAX then
    args.bad(1, fname, fname .. ": a topic is 1 to " .. TOPIC_MAX .. " bytes", 3)
  end
  return topic
end

-- Deliver on a later turn to the subscribers open then.
local function post(topic, message)
  clock.post(function()
    local list = W.channel.topics[topic]
    if list == nil then return end
    local n = #list -- those who subscribe meanwhile wait for the next message
    for i = 1, n do
      local s = list[i]
      if not s.closed then report.callback(s.owner, "channel subscriber", s.fn, message, topic) end
    end
    local open = {}
    for _, s in ipairs(list) do
      if not s.closed then open[#open + 1] = s end
    end
    W.channel.topics[topic] = #open > 0 and open or nil
  end)
end

function M.publish(topic, message)
  topic = topic_arg(topic, "channel_publish")
  message = args.string(message, 2, "channel_publish", 2)
  local log = W.channel.published
  log[#log + 1] = { topic = topic, message = message }
  post(topic, message)
end

function M.subscribe(topic, fn)
  topic = topic_arg(topic, "channel_subscribe")
  args.fn(fn, 2, "channel_subscribe", 2)
  local list = W.channel.topics[topic]
  if list == nil then
    list = {}
    W.channel.topics[topic] = list
  end
  local s = { fn = fn, owner = W.owner, closed = false }
  list[#list + 1] = s
  local handle = setmetatable({}, SubscriptionMeta)
  records[handle] = s
  return handle
end

function M.redis_url()
  return W.channel.redis_url
end

--- A message published elsewhere (another worker or instance): delivered
-- to this world's subscribers on a later turn, not recorded as published.
function M.inject(topic, message)
  post(topic_arg(topic, "publish"), args.string(message, 2, "publish", 2))
end

--- The messages published on 'topic' so far (every topic: nil), in order.
function M.published(topic)
  local out = {}
  for _, m in ipairs(W.channel.published) do
    if topic == nil or m.topic == topic then out[#out + 1] = topic == nil and { m.topic, m.message } or m.message end
  end
  return out
end

return M
