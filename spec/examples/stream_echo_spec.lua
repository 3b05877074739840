-- lua/examples/stream_echo.lua, the article's streams echo: a handler
-- function(reader, writer), driven through the same fake connection.
local testing = require "luaecho.testing"

local SCRIPT = "lua/examples/stream_echo.lua"

describe("examples/stream_echo.lua #unit", function()
  before_each(testing.reset)

  it("echoes what it reads and prints each read", function()
    local conn = testing.connect(SCRIPT)
    conn:send("First line.\nSecond line.\n")
    assert.are.equal("First line.\nSecond line.\n", conn:output())
    assert.are.same({ "Connection received!", [["First line.\nSecond line.\n"]] }, conn:printed())
  end)

  it("reads at most 8192 bytes at a time", function()
    local conn = testing.connect(SCRIPT)
    conn:send(("y"):rep(20000))
    assert.are.equal(("y"):rep(20000), conn:output())
    local sizes = {}
    for i, line in ipairs(conn:printed()) do
      if i > 1 then sizes[#sizes + 1] = tonumber(line:match("%((%d+) bytes%)$")) end -- repr sums long reads up
    end
    assert.are.same({ 8192, 8192, 3616 }, sizes)
  end)

  it("returns at the peer's EOF, which closes the connection", function()
    local conn = testing.connect(SCRIPT)
    conn:send("last")
    conn:eof()
    assert.are.equal("last", conn:output())
    assert.is_true(conn:closed())
    assert.are.same({ true, nil }, { conn:lost() })
    assert.is_false(conn:aborted())
  end)

  it("waits in drain() while the peer does not read, so it stops reading too", function()
    local conn = testing.connect(SCRIPT, { hold_output = true })
    conn:send(("z"):rep(200000))
    assert.is_false(conn:reading()) -- the reader's 64 KiB buffer is full
    assert.is_true(conn:held() > 0)
    conn:release_output()
    assert.are.equal(200000, #conn:output())
    assert.is_true(conn:reading())
  end)

  it("ends with ConnectionLost when the peer resets while it reads, which is not a script error", function()
    local conn = testing.connect(SCRIPT)
    conn:send("x")
    conn:reset()
    assert.are.same({ true, "connection reset by peer" }, { conn:lost() })
    -- Issue 12: a peer reset is logged at debug level, not as an error.
    assert.are.same({}, conn:errors())
    assert.are.same({ "stream handler for 127.0.0.1:50000 ended, the peer gone: ConnectionLost: connection lost: "
      .. "connection reset by peer" }, testing.logs("debug"))
  end)
end)
