-- lua/examples/simple_echo.lua, the article's SimpleEchoProtocol: it
-- serves one connection, then closes its server.
local testing = require "luaecho.testing"

local SCRIPT = "lua/examples/simple_echo.lua"

describe("examples/simple_echo.lua #unit", function()
  before_each(testing.reset)

  it("answers each chunk with echo: and prints it", function()
    local conn = testing.connect(SCRIPT)
    conn:send("hello\r\n")
    assert.are.equal("echo:hello\r\n", conn:output())
    assert.are.same({ "Connection received!", [["hello\r\n"]] }, conn:printed())
  end)

  it("closes its server once its connection has gone, so no one else gets in", function()
    local conn = testing.connect(SCRIPT)
    local server = conn:server()
    conn:send("hi")
    assert.is_true(server:serving())
    conn:eof()
    assert.are.same({ "Connection received!", [["hi"]], "Connection lost!" }, conn:printed())
    assert.is_false(server:serving())
    assert.are.equal(0, server:connections()) -- closed and empty: luaecho would exit 0 now
    assert.has_error(function() server:connect() end)
  end)

  it("lets connections already open carry on after the first has gone", function()
    local server = testing.serve(SCRIPT)
    local first, second = server:connect(), server:connect()
    first:eof()
    assert.is_false(server:serving())
    second:send("still here")
    assert.are.equal("echo:still here", second:output())
    assert.are.same({}, second:errors())
  end)
end)
