-- lua/echo.lua, the default handler, specified with luaecho.testing: how a
-- spec for a Protocol handler reads. No server, no sockets, no waiting.
local testing = require "luaecho.testing"

describe("echo.lua #unit", function()
  before_each(testing.reset)

  it("answers each chunk with echo: and the chunk", function()
    local conn = testing.connect("lua/echo.lua")
    conn:send("hello\r\n")
    assert.are.equal("echo:hello\r\n", conn:output())
    conn:send("Lua says hi\r\n")
    assert.are.equal("echo:Lua says hi\r\n", conn:output())
  end)

  it("answers once per chunk, however the bytes are split", function()
    local conn = testing.connect("lua/echo.lua")
    conn:send("abc", 1) -- one byte at a time
    assert.are.equal("echo:aecho:becho:c", conn:output())
  end)

  it("prints the connection, each chunk as Python would show it, and the loss", function()
    local conn = testing.connect("lua/echo.lua")
    conn:send("hello\r\n")
    conn:send("\0\255")
    conn:eof()
    assert.are.same({ "Connection received!", [["hello\r\n"]], [["\x00\xff"]], "Connection lost!" },
      conn:printed())
  end)

  it("closes when the peer half-closes: it has no eof_received", function()
    local conn = testing.connect("lua/echo.lua")
    conn:send("bye")
    conn:eof()
    assert.is_true(conn:closed())
    assert.are.same({ true, nil }, { conn:lost() })
    assert.are.same({ "connection_made", "data_received", "connection_lost" }, conn:events())
  end)

  it("stops reading while the peer does not read its answers, and resumes once it does", function()
    local conn = testing.connect("lua/echo.lua", { hold_output = true })
    conn:send(("x"):rep(70000)) -- two chunks: 65536 bytes, then 4464
    assert.is_false(conn:reading())
    assert.are.equal(65541, conn:buffered()) -- "echo:" and the first chunk, above the 64 KiB mark
    assert.are.equal(4464, conn:held()) -- the second chunk waits
    conn:release_output()
    assert.is_true(conn:reading())
    assert.are.equal("echo:" .. ("x"):rep(65536) .. "echo:" .. ("x"):rep(4464), conn:output())
    assert.are.same({ "connection_made", "data_received", "pause_writing", "resume_writing", "data_received" },
      conn:events())
  end)

  it("serves connections side by side, each with its own transport", function()
    local server = testing.serve("lua/echo.lua")
    local a, b = server:connect(), server:connect()
    b:send("to b")
    a:send("to a")
    assert.are.same({ "echo:to a", "echo:to b" }, { a:output(), b:output() })
    a:eof()
    b:send("still here")
    assert.are.equal("echo:still here", b:output())
  end)

  it("says connection lost when the peer resets, too", function()
    local conn = testing.connect("lua/echo.lua")
    conn:reset()
    assert.are.same({ "Connection received!", "Connection lost!" }, conn:printed())
    assert.are.same({ true, "connection reset by peer" }, { conn:lost() })
    assert.are.same({}, conn:errors())
  end)
end)
