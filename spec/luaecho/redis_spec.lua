-- luaecho.redis on luaecho.testing's fake Redis: the task form in a
-- streams handler, the callback form in a Protocol, reply shapes, error
-- tables, the pending bound, pub/sub and an outage, all on the virtual
-- clock. The real client is spec/integration/redis_spec.lua's.
local testing = require "luaecho.testing"
local redis = require "luaecho.redis"
local errors = require "luaecho.errors"

-- A streams handler that runs each line as a command and writes the reply.
local function relay(r)
  return function(reader, writer)
    while true do
      local line = reader:readline()
      if line == "" then return end
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      local reply, err = r:call(table.unpack(words))
      if err then
        writer:write(("%s %s\n"):format(err.kind, err.message))
      elseif type(reply) == "table" then
        writer:write(table.concat(reply, ",") .. " n=" .. reply.n .. "\n")
      else
        writer:write(tostring(reply) .. "\n")
      end
    end
  end
end

describe("luaecho.redis under luaecho.testing #unit", function()
  before_each(testing.reset)

  it("suspends a streams handler's task until the reply", function()
    local conn = testing.connect(relay(redis.connect("redis://127.0.0.1")))
    conn:send("SET k v\nGET k\nGET absent\nINCR hits\nINCR hits\nSADD who bo al\nSMEMBERS who\n")
    assert.are.equal("OK\nv\nnil\n1\n2\n2\nal,bo n=2\n", conn:output())
    assert.are.equal("2", testing.redis("GET", "hits"))
  end)

  it("returns an error reply as an error table of kind redis", function()
    testing.redis("SET", "k", "v")
    local conn = testing.connect(relay(redis.connect("redis://127.0.0.1")))
    conn:send("LPUSH k x\nNOSUCH\n")
    local out = conn:output()
    assert.matches("^redis WRONGTYPE Operation against a key holding the wrong kind of value\n", out)
    assert.matches("\nredis ERR unknown command 'NOSUCH' %(luaecho.testing's fake Redis knows [A-Z ]+%)\n$", out)
    local _, err = testing.redis("LPUSH", "k", "x")
    assert.is_true(errors.is(err, "redis"))
    assert.are.equal("WRONGTYPE", err.code)
  end)

  it("calls a Protocol's callback on a later turn, also for a refusal", function()
    local r = redis.connect("redis://127.0.0.1", { max_pending = 1 })
    local Protocol = {}
    function Protocol:connection_made(transport) self.transport = transport end
    function Protocol:data_received()
      local inside = true
      for _ = 1, 2 do
        r:call("INCR", "n", function(n, err)
          self.transport:write(("%s%s\n"):format(inside and "inside! " or "", n or err.kind))
        end)
      end
      inside = false
    end
    local conn = testing.connect(Protocol)
    conn:send("go")
    assert.are.equal("1\nbusy\n", conn:output())
  end)

  it("delivers published messages to channel and pattern subscribers", function()
    local r = redis.connect("redis://127.0.0.1")
    local got = {}
    local sub = r:subscribe("room", function(message, channel) got[#got + 1] = channel .. ":" .. message end)
    r:psubscribe("ro?m", function(message, channel, pattern)
      got[#got + 1] = pattern .. ">" .. channel .. ":" .. message
    end)
    assert.are.equal(2, testing.redis("PUBLISH", "room", "hi"))
    assert.are.same({}, got) -- never inside the publish
    testing.advance()
    table.sort(got)
    assert.are.same({ "ro?m>room:hi", "room:hi" }, got)
    sub:close()
    sub:close()
    assert.are.equal(1, testing.redis("PUBLISH", "room", "again"))
  end)

  it("logs a subscriber that raises, and still delivers to the others", function()
    testing.expect_errors()
    local r = redis.connect("redis://127.0.0.1")
    local got = {}
    r:subscribe("room", function() error("boom in a subscriber") end)
    r:subscribe("room", function(message) got[#got + 1] = message end)
    assert.are.equal(1, testing.redis("PUBLISH", "room", "hi")) -- one Redis subscription for both
    testing.advance()
    assert.are.same({ "hi" }, got)
    local logs = testing.logs("error")
    assert.are.equal(1, #logs)
    assert.matches("^luaecho%.redis: the subscriber of channel 'room' failed: [^\n]*boom in a subscriber", logs[1])
  end)

  it("fails commands at once during an outage and tells on_state", function()
    local r = redis.connect("redis://127.0.0.1")
    local states = {}
    r:on_state(function(up, reason) states[#states + 1] = tostring(up) .. " " .. tostring(reason) end)
    local conn = testing.connect(relay(r))
    conn:send("PING\n")
    testing.redis_outage(true)
    conn:send("PING\n")
    testing.redis_outage(false)
    conn:send("PING\n")
    assert.are.equal("PONG\ndisconnected not connected to the fake Redis (testing.redis_outage); the command was "
      .. "not sent\nPONG\n", conn:output())
    assert.are.same({ "true nil", "false the fake Redis is down (testing.redis_outage)", "true nil" }, states)
  end)

  it("expires keys on the virtual clock", function()
    testing.redis("SET", "session", "x")
    assert.are.equal(1, testing.redis("EXPIRE", "session", 10))
    testing.advance(9.9)
    assert.are.equal("x", testing.redis("GET", "session"))
    testing.advance(0.1)
    assert.is_nil(testing.redis("GET", "session"))
  end)

  it("raises for a bad URL at the caller's line", function()
    local ok, err = pcall(function() redis.connect("http://x") end)
    assert.is_false(ok)
    assert.matches("^spec/luaecho/redis_spec%.lua:%d+: luaecho%.redis%.connect%(%): bad Redis URL", err)
  end)
end)
