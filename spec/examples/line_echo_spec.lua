-- lua/examples/line_echo.lua: a streams handler that echoes line by line,
-- driven one byte at a time as telnet sends it.
local testing = require "luaecho.testing"

local SCRIPT = "lua/examples/line_echo.lua"
local GREETING = "Type a line; an empty line or Ctrl-] quit ends.\r\n"

describe("examples/line_echo.lua #unit", function()
  local conn

  before_each(function()
    testing.reset()
    conn = testing.connect(SCRIPT)
  end)

  it("greets first", function()
    assert.are.equal(GREETING, conn:output())
  end)

  it("answers a whole line however its bytes arrive, keeping its ending", function()
    conn:output()
    conn:send("hello\r\nwor", 1)
    assert.are.equal("hello\r\n", conn:output())
    conn:send("ld\n")
    assert.are.equal("world\n", conn:output())
  end)

  it("says bye and closes on an empty line", function()
    conn:send("\r\n")
    assert.are.equal(GREETING .. "Bye.\r\n", conn:output())
    assert.is_true(conn:closed())
  end)

  it("ends an unterminated last line with a newline at EOF, then says bye", function()
    conn:send("no newline")
    conn:eof()
    assert.are.equal(GREETING .. "no newline\nBye.\r\n", conn:output())
    assert.is_true(conn:at_eof())
  end)

  it("answers several lines sent in one chunk", function()
    conn:send("a\nb\r\nc\n")
    assert.are.equal(GREETING .. "a\nb\r\nc\n", conn:output())
    assert.is_false(conn:closed())
  end)
end)
