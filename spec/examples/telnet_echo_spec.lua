-- lua/examples/telnet_echo.lua: line echo with the server doing the
-- editing (character mode) and a "> " prompt.
local testing = require "luaecho.testing"

local SCRIPT = "lua/examples/telnet_echo.lua"
local char = string.char
local IAC, DO, WILL = 255, 253, 251
local ECHO, SGA, TTYPE, NAWS = 1, 3, 24, 31
local GREETING = "Type a line; Ctrl-D on an empty line quits.\r\n> "

local function neg(verb, option) return char(IAC, verb, option) end

describe("examples/telnet_echo.lua #unit", function()
  local conn

  before_each(function()
    testing.reset()
    conn = testing.connect(SCRIPT)
  end)

  -- A telnet client agrees to character mode, as Linux telnet does.
  local function agree()
    conn:send(neg(DO, ECHO) .. neg(DO, SGA) .. neg(WILL, SGA))
    conn:output()
  end

  it("asks for character mode, greets and prompts", function()
    assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE) .. neg(WILL, ECHO) .. neg(WILL, SGA) .. neg(DO, SGA)
      .. GREETING, conn:output())
  end)

  it("edits: helo, Backspace, lo, Enter answers echo:hello", function()
    agree()
    for key in ("helo\127lo"):gmatch(".") do conn:send(key) end
    assert.are.equal("helo\b \blo", conn:output())   -- the echo, with the erasure
    conn:send("\r\0")
    assert.are.equal("\r\necho:hello\r\n> ", conn:output())
  end)

  it("answers a plain client (nc) that sends whole lines and does its own echo", function()
    conn:output()
    conn:send("hello\n")
    assert.are.equal("echo:hello\r\n> ", conn:output())
  end)

  it("answers each line of a paste after its echo", function()
    agree()
    conn:send("one\r\ntwo\r\n")
    assert.are.equal("one\r\necho:one\r\n> two\r\necho:two\r\n> ", conn:output())
  end)

  it("drops the line at Ctrl-C and prompts again", function()
    agree()
    conn:send("oops\3")
    assert.are.equal("oops\r\n> ", conn:output())
    conn:send("ok\r\n")
    assert.are.equal("ok\r\necho:ok\r\n> ", conn:output())
  end)

  it("says bye and closes at Ctrl-D on an empty line", function()
    agree()
    conn:send("\4")
    assert.are.equal("Bye.\r\n", conn:output())
    assert.is_true(conn:closed())
  end)
end)
