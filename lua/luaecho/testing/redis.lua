--- luaecho.testing's fake Redis: core.redis_connect for luaecho.redis under
-- plain busted, over one in-memory store per world (emptied by
-- testing.reset()). It knows the commands a handler typically shares state
-- with — strings and counters, sets, hashes, lists, EXPIRE on the virtual
-- clock, PUBLISH with channel and pattern subscriptions — and answers any
-- other with an error reply saying so. Replies, messages and state changes
-- arrive on a later loop turn, as from the real one; outage() makes the
-- link go down and up again, so a spec can test what a handler does then.
-- Relies on luaecho.testing.world, .clock, .report and luaecho.errors.
-- @usage
--   local fake = require "luaecho.testing.redis"
--   core.redis_connect = fake.connect
--   fake.command("SET", "k", "v")        -- the store, synchronously
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local report = require "luaecho.testing.report"
local errors = require "luaecho.errors"
local concat, sort, unpack, pack = table.concat, table.sort, table.unpack, table.pack
local format, lower, upper, gsub, find, sub = string.format, string.lower, string.upper, string.gsub, string.find,
  string.sub
local math_type, tointeger, tonumber, tostring, type = math.type, math.tointeger, tonumber, tostring, type
local next, pairs, setmetatable = next, pairs, setmetatable

local W = world.W

local M = {}

local WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

-- The world's store: keys (values: strings, or tables with a 'type'),
-- their deadlines (virtual ms), the open fake links, and whether Redis is down.
local function store()
  local s = W.redis
  if not s then
    s = { keys = {}, expires = {}, links = {}, down = false }
    W.redis = s
  end
  return s
end

-- A reply that is an error: the C side's shape.
local function failure(message)
  local space = find(message, " ", 1, true)
  return { err = message, code = space and sub(message, 1, space - 1) or message }
end

-- The value at 'key' (nil once its deadline passed).
local function get(key)
  local s = store()
  local due = s.expires[key]
  if due and W.now >= due then
    s.keys[key], s.expires[key] = nil, nil
  end
  return s.keys[key]
end

-- The collection of 'kind' at 'key', made when 'create'; or nil, a failure.
local function collection(key, kind, create)
  local v = get(key)
  if v == nil then
    if not create then return nil end
    v = { type = kind, items = {}, order = {} }
    store().keys[key] = v
  end
  if type(v) ~= "table" or v.type ~= kind then return nil, failure(WRONGTYPE) end
  return v
end

local function integer_of(text)
  local n = tointeger(tonumber(text))
  return n
end

local C = {} -- command name (lower case) -> function(args) -> reply

function C.ping(a) return a[2] or "PONG" end
function C.echo(a) return a[2] end
function C.get(a)
  local v = get(a[2])
  if type(v) == "table" then return failure(WRONGTYPE) end
  return v
end
function C.set(a)
  if #a ~= 3 then return failure("ERR the fake Redis takes SET key value only") end
  store().keys[a[2]], store().expires[a[2]] = a[3], nil
  return "OK"
end
function C.del(a)
  local n = 0
  for i = 2, #a do
    if get(a[i]) ~= nil then n = n + 1 end
    store().keys[a[i]], store().expires[a[i]] = nil, nil
  end
  return n
end
function C.exists(a)
  local n = 0
  for i = 2, #a do if get(a[i]) ~= nil then n = n + 1 end end
  return n
end
function C.incrby(a)
  local v, by = get(a[2]), integer_of(a[3])
  if type(v) == "table" then return failure(WRONGTYPE) end
  local n = v == nil and 0 or integer_of(v)
  if n == nil or by == nil then return failure("ERR value is not an integer or out of range") end
  store().keys[a[2]] = tostring(n + by)
  return n + by
end
function C.incr(a) return C.incrby({ a[1], a[2], "1" }) end
function C.decr(a) return C.incrby({ a[1], a[2], "-1" }) end
function C.decrby(a) return C.incrby({ a[1], a[2], tostring(-(integer_of(a[3]) or 0)) }) end
function C.expire(a)
  local seconds = integer_of(a[3])
  if seconds == nil then return failure("ERR value is not an integer or out of range") end
  if get(a[2]) == nil then return 0 end
  store().expires[a[2]] = W.now + seconds * 1000
  return 1
end

-- Sets and hashes: 'items' by member or field.
local function add_items(kind, a, step)
  local c, bad = collection(a[2], kind, true)
  if not c then return bad end
  local n = 0
  for i = 3, #a, step do
    if c.items[a[i]] == nil then n = n + 1 end
    c.items[a[i]] = step == 2 and a[i + 1] or true
  end
  return n
end
local function remove_items(kind, a)
  local c, bad = collection(a[2], kind, false)
  if not c then return bad or 0 end
  local n = 0
  for i = 3, #a do
    if c.items[a[i]] ~= nil then n, c.items[a[i]] = n + 1, nil end
  end
  if next(c.items) == nil then store().keys[a[2]] = nil end
  return n
end
-- The sorted names of a set or hash (Redis has no order; sorted is stable for specs).
local function names(c)
  local list = {}
  for k in pairs(c and c.items or {}) do list[#list + 1] = k end
  sort(list)
  return list
end

function C.sadd(a) return add_items("set", a, 1) end
function C.srem(a) return remove_items("set", a) end
function C.smembers(a)
  local c, bad = collection(a[2], "set", false)
  if bad then return bad end
  local list = names(c)
  list.n = #list
  return list
end
function C.scard(a)
  local c, bad = collection(a[2], "set", false)
  return bad or #names(c)
end
function C.sismember(a)
  local c, bad = collection(a[2], "set", false)
  return bad or (c and c.items[a[3]] and 1 or 0)
end
function C.hset(a) return add_items("hash", a, 2) end
function C.hdel(a) return remove_items("hash", a) end
function C.hget(a)
  local c, bad = collection(a[2], "hash", false)
  if bad then return bad end
  return c and c.items[a[3]] or nil
end
function C.hgetall(a)
  local c, bad = collection(a[2], "hash", false)
  if bad then return bad end
  local list = {}
  for _, k in pairs(names(c)) do
    list[#list + 1] = k
    list[#list + 1] = c.items[k]
  end
  list.n = #list
  return list
end

-- Lists: 'order' holds the elements.
local function push(a, front)
  local c, bad = collection(a[2], "list", true)
  if not c then return bad end
  for i = 3, #a do
    if front then table.insert(c.order, 1, a[i]) else c.order[#c.order + 1] = a[i] end
  end
  return #c.order
end
function C.lpush(a) return push(a, true) end
function C.rpush(a) return push(a, false) end
function C.llen(a)
  local c, bad = collection(a[2], "list", false)
  return bad or (c and #c.order or 0)
end
function C.lrange(a)
  local c, bad = collection(a[2], "list", false)
  if bad then return bad end
  local items, n = c and c.order or {}, c and #c.order or 0
  local first, last = integer_of(a[3]) or 0, integer_of(a[4]) or -1
  if first < 0 then first = n + first end
  if last < 0 then last = n + last end
  local list = {}
  for i = math.max(first, 0) + 1, math.min(last, n - 1) + 1 do list[#list + 1] = items[i] end
  list.n = #list
  return list
end

-- A Redis glob as a Lua pattern: * ? and [...] (enough for channel names).
local function glob(pattern)
  local out = gsub(pattern, "[%^%$%(%)%%%.%+%-]", "%%%0")
  out = gsub(out, "%*", ".*")
  out = gsub(out, "%?", ".")
  return "^" .. out .. "$"
end

function C.publish(a)
  local channel, message, n = a[2], a[3], 0
  for link in pairs(store().links) do
    local subs = link.subscriptions
    local deliveries = {}
    if subs[channel .. "\0c"] then deliveries[#deliveries + 1] = false end
    for _, pattern in pairs(subs) do
      if pattern ~= true and find(channel, glob(pattern)) then deliveries[#deliveries + 1] = pattern end
    end
    for _, pattern in pairs(deliveries) do
      n = n + 1
      clock.post(function()
        if link.open and not store().down and link.on_message then
          report.callback(link.owner, "luaecho.redis subscriber", link.on_message, message, channel,
            pattern or nil)
        end
      end)
    end
  end
  return n
end

--- Run one command on the store now; returns the reply as luaecho.redis
-- gives it (an error reply: nil and an error table of kind "redis").
function M.command(...)
  local a = pack(...)
  for i = 1, a.n do a[i] = tostring(a[i]) end
  local fn = C[lower(a[1] or "")]
  local reply
  if fn then
    reply = fn(a)
  else
    reply = failure(format("ERR unknown command '%s' (luaecho.testing's fake Redis knows %s)", tostring(a[1]),
      M.known()))
  end
  if type(reply) == "table" and reply.err then
    return nil, errors.new("redis", reply.err, { code = reply.code })
  end
  return reply
end

--- The commands the fake knows, as one line.
function M.known()
  local list = {}
  for name in pairs(C) do list[#list + 1] = upper(name) end
  sort(list)
  return concat(list, " ")
end

local Link = {}
Link.__index = Link

local function refusal(kind, message)
  return nil, errors.new(kind, message)
end

function Link:call(fn, ...)
  if not self.open then return refusal("closed", "the client of the fake Redis is closed; the command was not sent") end
  if store().down then
    return refusal("disconnected", "not connected to the fake Redis (testing.redis_outage); the command was not sent")
  end
  if self.awaited >= self.max_pending then
    return refusal("busy", format("%d replies from the fake Redis already awaited (the pending bound); the command "
      .. "was not sent", self.awaited))
  end
  local args = pack(...)
  self.awaited = self.awaited + 1
  clock.post(function()
    self.awaited = self.awaited - 1
    if not self.open then
      return report.callback(self.owner, "luaecho.redis reply callback", fn, nil,
        errors.new("closed", "the client of the fake Redis was closed before the reply"))
    end
    if store().down then
      return report.callback(self.owner, "luaecho.redis reply callback", fn, nil,
        errors.new("disconnected", "the fake Redis went down before the reply (testing.redis_outage)"))
    end
    report.callback(self.owner, "luaecho.redis reply callback", fn, M.command(unpack(args, 1, args.n)))
  end)
  return true
end

function Link:subscribe(name, pattern)
  if not self.open then return refusal("closed", "the client of the fake Redis is closed") end
  if pattern then self.subscriptions[name] = name else self.subscriptions[name .. "\0c"] = true end
  return true
end

function Link:unsubscribe(name, pattern)
  if pattern then self.subscriptions[name] = nil else self.subscriptions[name .. "\0c"] = nil end
end

function Link:close()
  self.open = false
  store().links[self] = nil
end

function Link:is_up()
  return self.open and not store().down
end

function Link:pending() return self.awaited end

-- Tell the link's owner of a change of state, on a later turn.
local function tell(link, up, reason)
  clock.post(function()
    if link.open and link.on_state then
      report.callback(link.owner, "luaecho.redis on_state", link.on_state, up, reason)
    end
  end)
end

--- The fake core.redis_connect(url [, on_state [, on_message [, max_pending]]]):
-- checks only the URL's scheme; the link is up on the next loop turn.
function M.connect(url, on_state, on_message, max_pending)
  if type(url) ~= "string" then error("bad argument #1 to 'redis_connect' (string expected)", 2) end
  if not (find(url, "^redis://") or find(url, "^unix:") or find(url, "^redis%+unix://")) then
    return nil, "bad Redis URL: a Redis URL starts with redis://, unix: or redis+unix://"
  end
  local link = setmetatable({ url = url, on_state = on_state, on_message = on_message, owner = W.owner,
    max_pending = math_type(max_pending) == "integer" and max_pending or 1024, awaited = 0, open = true,
    subscriptions = {} }, Link)
  store().links[link] = true
  if not store().down then tell(link, true, nil) end
  return link
end

--- Take the fake Redis down (true) or bring it back (false): links report
-- the change; while down, commands fail at once with kind "disconnected".
function M.outage(down)
  local s = store()
  if s.down == (down and true or false) then return end
  s.down = down and true or false
  for link in pairs(s.links) do
    tell(link, not s.down, s.down and "the fake Redis is down (testing.redis_outage)" or nil)
  end
end

return M
