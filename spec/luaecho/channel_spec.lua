-- luaecho.channel on luaecho.testing's fake: delivery on the next loop
-- turn (never inside publish), every subscriber of the topic once, in
-- subscription order, a failing subscriber logged while the others still
-- get the message, close() and __close, testing.published/publish, and
-- the argument errors, each blaming the caller's line. The same fixture
-- runs on the real host in spec/integration/channel_spec.lua.
local testing = require "luaecho.testing"
local channel = require "luaecho.channel"

local ROOM = "spec/fixtures/channel/room.lua"

-- The message of the error fn() raises, which must blame this file.
local function error_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error")
  err = tostring(err)
  local here, message = err:match("^(spec/luaecho/channel_spec%.lua:%d+): (.*)$")
  assert.is_truthy(here, "the error does not blame the caller: " .. err)
  return message
end

describe("luaecho.channel #unit", function()
  before_each(testing.reset)

  it("delivers on a later loop turn, after publish has returned", function()
    local got = {}
    channel.subscribe("t", function(message, topic) got[#got + 1] = topic .. "=" .. message end)
    channel.publish("t", "one")
    assert.are.same({}, got) -- nothing inside publish
    assert.are.same({ "one" }, testing.published("t")) -- testing.published settles the loop
    assert.are.same({ "t=one" }, got)
  end)

  it("reaches every subscriber of the topic once, in order, and no other topic's", function()
    local got = {}
    channel.subscribe("a", function(m) got[#got + 1] = "1:" .. m end)
    channel.subscribe("b", function(m) got[#got + 1] = "b:" .. m end)
    channel.subscribe("a", function(m) got[#got + 1] = "2:" .. m end)
    channel.publish("a", "x")
    channel.publish("a", "y")
    testing.published()
    assert.are.same({ "1:x", "2:x", "1:y", "2:y" }, got)
  end)

  it("stops calling a closed subscription; close() twice is fine", function()
    local got = {}
    local sub = channel.subscribe("a", function(m) got[#got + 1] = m end)
    channel.publish("a", "before")
    testing.published()
    sub:close()
    sub:close()
    assert.is_true(sub:closed())
    channel.publish("a", "after")
    testing.published()
    assert.are.same({ "before" }, got)
  end)

  it("closes a <close> subscription at the end of its scope", function()
    local got = {}
    do
      local sub <close> = channel.subscribe("a", function(m) got[#got + 1] = m end)
      assert.is_false(sub:closed())
    end
    channel.publish("a", "late")
    testing.published()
    assert.are.same({}, got)
  end)

  it("serves a script: the publisher's own answer comes before the delivery", function()
    local srv = testing.serve(ROOM)
    local a, b = srv:connect(), srv:connect()
    assert.are.equal("001\n", a:output())
    assert.are.equal("001\n", b:output())
    a:send("pub room hello\n")
    assert.are.equal("published hello\ngot v1 hello\n", a:output())
    assert.are.equal("got v1 hello\n", b:output())
  end)

  it("logs a failing subscriber and still delivers to the others", function()
    testing.expect_errors()
    local srv = testing.serve(ROOM)
    local a = srv:connect()
    a:send("bad t\nsub t\n")
    a:output()
    a:send("pub t m1\n")
    assert.are.equal("published m1\nsub t m1\n", a:output())
    local errors = testing.logs("error")
    assert.are.equal(1, #errors)
    assert.matches("channel subscriber failed: .*room%.lua:%d+: boom in subscriber", errors[1])
    assert.is_false(a:closed())
  end)

  it("plays other workers with testing.publish, and the URL with testing.channel_redis", function()
    local srv = testing.serve(ROOM)
    local a = srv:connect()
    a:output()
    testing.publish("room", "from elsewhere")
    assert.are.equal("got v1 from elsewhere\n", a:output())
    assert.are.same({}, testing.published("room"))
    a:send("url\n")
    assert.are.equal("url nil\n", a:output())
    testing.channel_redis("redis://127.0.0.1:6379")
    a:send("url\n")
    assert.are.equal("url redis://127.0.0.1:6379\n", a:output())
  end)

  it("refuses bad arguments, blaming the caller", function()
    assert.are.equal("channel.publish(): the topic must be a string, not a number",
      error_of(function() channel.publish(1, "m") end))
    assert.are.equal("channel.publish(): a topic is 1 to 1024 bytes, not 0",
      error_of(function() channel.publish("", "m") end))
    assert.are.equal("channel.subscribe(): a topic is 1 to 1024 bytes, not 1025",
      error_of(function() channel.subscribe(("t"):rep(1025), print) end))
    assert.are.equal("channel.publish(): the message must be a string, not a table",
      error_of(function() channel.publish("t", {}) end))
    assert.are.equal("channel.subscribe(): the subscriber must be a function, not a nil",
      error_of(function() channel.subscribe("t") end))
  end)
end)
