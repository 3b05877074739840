-- lua/examples/keystroke_echo.lua: character mode ("keys"), each keystroke
-- answered as it is typed, as in the article's telnet transcript.
local testing = require "luaecho.testing"

local SCRIPT = "lua/examples/keystroke_echo.lua"
local char = string.char
local IAC, DO, WILL = 255, 253, 251
local ECHO, SGA, TTYPE, NAWS = 1, 3, 24, 31
local GREETING = "Type keys; Ctrl-C or Ctrl-D quits.\r\n"

local function neg(verb, option) return char(IAC, verb, option) end

describe("examples/keystroke_echo.lua #unit", function()
  local conn

  before_each(function()
    testing.reset()
    conn = testing.connect(SCRIPT)
  end)

  it("asks the client for character mode, then greets", function()
    assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE) .. neg(WILL, ECHO) .. neg(WILL, SGA) .. neg(DO, SGA)
      .. GREETING, conn:output())
  end)

  it("answers abc typed key by key with echo:a, echo:b, echo:c", function()
    conn:send(neg(DO, ECHO) .. neg(DO, SGA) .. neg(WILL, SGA))
    conn:output()
    for _, key in ipairs({ "a", "b", "c" }) do
      conn:send(key)
      assert.are.equal("echo:" .. key .. "\r\n", conn:output())
    end
  end)

  it("shows Enter once, whether telnet sends \\r\\0 or \\r\\n, or nc a bare \\n", function()
    conn:output()
    conn:send("\r\0")
    conn:send("\r\n")
    conn:send("x\n")
    assert.are.equal("echo:Enter\r\necho:Enter\r\necho:x\r\necho:Enter\r\n", conn:output())
  end)

  it("names arrows and control keys", function()
    conn:output()
    conn:send("\27[A")
    conn:send("\1")
    assert.are.equal("echo:Up\r\necho:^A\r\n", conn:output())
  end)

  it("tells the Escape key alone from an arrow once 50 ms pass with nothing more", function()
    conn:output()
    conn:send("\27")
    assert.are.equal("", conn:output())
    testing.advance(0.05)
    assert.are.equal("echo:Esc\r\n", conn:output())
    conn:send("\27")
    conn:send("[B")            -- the rest of an arrow, in time
    testing.advance(1)
    assert.are.equal("echo:Down\r\n", conn:output())
  end)

  it("says bye and closes at Ctrl-C, and at Ctrl-D", function()
    conn:send("\3")
    assert.matches("Bye%.\r\n$", conn:output())
    assert.is_true(conn:closed())
    conn = testing.connect(SCRIPT)
    conn:send("\4")
    assert.matches("Bye%.\r\n$", conn:output())
    assert.is_true(conn:closed())
  end)
end)
