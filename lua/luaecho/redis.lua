--- luaecho.redis: a Redis client for handler scripts and `luaecho run`
-- programs, non-blocking, on hiredis (the C side is src/redis_script.c).
-- One client is two links at most: one for commands, opened by connect(),
-- and one for subscriptions, opened by the first subscribe() (Redis takes
-- no commands on a subscribed link). Both reconnect by themselves with a
-- capped backoff; subscriptions are made again after a reconnect.
-- @usage
--   local redis = require "luaecho.redis"
--   local r = redis.connect("redis://127.0.0.1:6379/0")
--   local n, err = r:call("INCR", "hits")            -- in a task: suspends
--   r:call("GET", "k", function(v, err) ... end)      -- anywhere: a callback
--   local sub = r:subscribe("news", function(message, channel) ... end)
local core = require "luaecho.core"
local task = require "luaecho.task"
local errors = require "luaecho.errors"
local log = require "luaecho.log"
local error, type, select, setmetatable = error, type, select, setmetatable
local pack, unpack, traceback, xpcall = table.pack, table.unpack, debug.traceback, xpcall
local math_type, tostring = math.type, tostring

local M = {}

local Client = {}
Client.__index = Client
Client.__name = "luaecho.redis client"

local Subscription = {}
Subscription.__index = Subscription

local DEFAULT_MAX_PENDING = 1024

--- Open a client for 'url' (redis://[user:password@]host[:port][/db],
-- unix:/path[?db=N] or redis+unix://[user:password@]/path[?db=N]). Returns
-- at once: the client connects in the background, and commands sent before
-- the first attempt ends wait for it. opts.max_pending: how many replies
-- may be awaited at once (default 1024); past it a command fails with
-- kind "busy". A bad URL raises an error naming the wrong part.
function M.connect(url, opts)
  if type(url) ~= "string" then error("luaecho.redis.connect(): url must be a string, not " .. type(url), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("luaecho.redis.connect(): opts must be a table", 2) end
  local max_pending = DEFAULT_MAX_PENDING
  for key, value in pairs(opts or {}) do
    if key ~= "max_pending" then
      error("luaecho.redis.connect(): unknown option " .. tostring(key) .. " (max_pending)", 2)
    end
    if math_type(value) ~= "integer" or value < 1 or value > 1000000 then
      error("luaecho.redis.connect(): opts.max_pending must be an integer from 1 to 1000000", 2)
    end
    max_pending = value
  end
  local self = setmetatable({ url = url, max_pending = max_pending, channels = {}, patterns = {} }, Client)
  local conn, message = core.redis_connect(url, function(up, reason)
    local fn = self.state_fn
    if fn then fn(up, reason) end
  end, nil, max_pending)
  if not conn then error("luaecho.redis.connect(): " .. message, 2) end
  self.conn = conn
  return self
end

-- Check the command's arguments: strings or numbers, at least a name.
local function check_args(n, ...)
  if n == 0 then error("luaecho.redis: r:call() needs a command name, as in r:call(\"PING\")", 3) end
  for i = 1, n do
    local t = type((select(i, ...)))
    if t ~= "string" and t ~= "number" then
      error(("luaecho.redis: r:call(): argument %d is a %s; Redis arguments are strings or numbers"):format(i, t), 3)
    end
  end
end

--- Send a command. In a task (a streams handler, a `luaecho run` script,
-- luaecho.spawn) r:call(name, args...) suspends the task and returns the
-- reply as Lua values, or nil, err: err is an error table (luaecho.errors)
-- of kind "redis" for an error reply (err.code is its first word, such as
-- "WRONGTYPE"), "disconnected" (not connected, or the link went down before
-- the reply), "busy" (max_pending replies awaited already) or "closed".
-- With a function as the last argument (a Protocol's callbacks, anywhere)
-- the call returns nothing and the function gets (reply) or (nil, err)
-- exactly once, later: never inside r:call itself, even when the command
-- was refused at once.
function Client:call(...)
  local n = select("#", ...)
  local fn = n > 0 and select(n, ...)
  if type(fn) == "function" then
    local args = pack(...)
    check_args(n - 1, unpack(args, 1, n - 1))
    local ok, err = self.conn:call(fn, unpack(args, 1, n - 1))
    if not ok then core.timer(0, function() fn(nil, err) end) end
    return
  end
  check_args(n, ...)
  local current = task.check("luaecho.redis: r:call()", 2)
  local ok, err = self.conn:call(function(reply, e) task.wake(current, reply, e) end, ...)
  if not ok then return nil, err end
  return task.suspend("luaecho.redis: r:call()")
end

-- Hand a message to every subscription in 'list', each protected: one
-- failing function is logged and the others still get the message.
local function deliver(list, message, channel, pattern)
  for i = 1, #list do
    local sub = list[i]
    if not sub.closed then
      local ok, err = xpcall(sub.fn, traceback, message, channel, pattern)
      if not ok then
        log.error(("luaecho.redis: the subscriber of %s '%s' failed: %s"):format(
          pattern and "pattern" or "channel", sub.name, errors.tostring(err)))
      end
    end
  end
end

-- The subscription link, opened on first use.
local function subscriber_conn(self)
  if self.sub_conn then return self.sub_conn end
  local channels, patterns = self.channels, self.patterns
  local conn = core.redis_connect(self.url, nil, function(message, channel, pattern)
    local list = pattern and patterns[pattern] or channels[channel]
    if list then deliver(list, message, channel, pattern) end
  end, self.max_pending)
  self.sub_conn = conn
  return conn
end

local function subscribe(self, what, name, fn, pattern)
  if type(name) ~= "string" then error(("luaecho.redis: r:%s(): the name must be a string"):format(what), 3) end
  if type(fn) ~= "function" then error(("luaecho.redis: r:%s(): fn must be a function"):format(what), 3) end
  if self.closed then error(("luaecho.redis: r:%s(): the client is closed"):format(what), 3) end
  local set = pattern and self.patterns or self.channels
  local old = set[name]
  if not old then
    local ok, err = subscriber_conn(self):subscribe(name, pattern)
    if not ok then error(err, 3) end
  end
  local sub = setmetatable({ client = self, name = name, fn = fn, pattern = pattern }, Subscription)
  -- copied on every change, so a delivery in progress keeps its own list
  local list = { sub }
  for i = 1, old and #old or 0 do list[i + 1] = old[i] end
  set[name] = list
  return sub
end

--- Subscribe to 'channel': fn(message, channel) for each message, also
-- after a reconnect (messages published while the link was down are
-- lost: that is Redis pub/sub). Returns a subscription with close().
function Client:subscribe(channel, fn)
  return subscribe(self, "subscribe", channel, fn, false)
end

--- Subscribe to the channels matching 'pattern' (Redis glob style):
-- fn(message, channel, pattern).
function Client:psubscribe(pattern, fn)
  return subscribe(self, "psubscribe", pattern, fn, true)
end

--- Stop this subscription; the last one of a name unsubscribes the link.
-- Idempotent.
function Subscription:close()
  if self.closed then return end
  self.closed = true
  local client = self.client
  local set = self.pattern and client.patterns or client.channels
  local old, list = set[self.name] or {}, {}
  for i = 1, #old do
    if old[i] ~= self then list[#list + 1] = old[i] end
  end
  if list[1] then
    set[self.name] = list
  else
    set[self.name] = nil
    if client.sub_conn then client.sub_conn:unsubscribe(self.name, self.pattern) end
  end
end

--- fn(up, reason) when the command link goes up (reason nil) or down
-- (reason says why), once per change; nil to stop.
function Client:on_state(fn)
  if fn ~= nil and type(fn) ~= "function" then error("luaecho.redis: r:on_state(): fn must be a function or nil", 2) end
  self.state_fn = fn
end

--- Whether the command link is up now.
function Client:is_up()
  return self.conn:is_up()
end

--- Close both links: replies still awaited get an error of kind "closed"
-- (on the next loop turn), later calls too. Idempotent. A client nobody
-- references any more is closed by the garbage collector.
function Client:close()
  self.closed = true
  self.conn:close()
  if self.sub_conn then self.sub_conn:close() end
end

return M
