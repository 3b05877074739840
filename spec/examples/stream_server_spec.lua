-- lua/examples/stream_server.lua: a `luaecho run` program that starts its
-- own streams server. The spec runs it, connects fake peers to the address
-- it listens on, and shuts the fake host down as SIGTERM would.
local testing = require "luaecho.testing"

local SCRIPT = "lua/examples/stream_server.lua"

describe("examples/stream_server.lua #unit", function()
  before_each(testing.reset)

  it("listens on localhost port 2222 and says so", function()
    local server = testing.run(SCRIPT)
    assert.are.same({ "Serving on 127.0.0.1 port 2222" }, server:printed())
    assert.are.equal("running", server:status()) -- waiting in server:wait_closed()
    assert.is_true(testing.server_at("localhost", 2222):serving())
  end)

  it("echoes what a client sends and prints it", function()
    local server = testing.run(SCRIPT)
    local conn = testing.connect_to("localhost", 2222)
    conn:send("First line.\n")
    assert.are.equal("First line.\n", conn:output())
    conn:eof()
    assert.is_true(conn:closed())
    assert.are.same({ "Serving on 127.0.0.1 port 2222", "Connection received!", [["First line.\n"]] },
      server:printed())
  end)

  it("takes its port from its first argument", function()
    testing.run(SCRIPT, "3000")
    local conn = testing.connect_to("127.0.0.1", 3000)
    conn:send("x")
    assert.are.equal("x", conn:output())
  end)

  it("serves the article's client", function()
    local server = testing.run(SCRIPT)
    local client = testing.run("lua/examples/echo_client.lua")
    assert.are.equal("done", client:status())
    assert.are.same({ "Lines received", [["First line.\n"]], [["Second line.\n"]], [["Third line.\n"]],
      [["Last line.\n"]] }, client:printed())
    assert.are.same({ "Serving on 127.0.0.1 port 2222", "Connection received!",
      [["First line.\nSecond line.\nThird line.\nLast line.\n"]] }, server:printed())
  end)

  it("ends once the host shuts down (SIGTERM), after closing its connections", function()
    local server = testing.run(SCRIPT)
    local conn = testing.connect_to("localhost", 2222)
    testing.shutdown()
    assert.is_true(conn:closed())
    assert.are.equal("done", server:status())
    assert.has_error(function() testing.connect_to("localhost", 2222) end)
  end)

  it("fails when its port is taken", function()
    testing.expect_errors()
    testing.serve(function() end, { port = 2222 })
    local server = testing.run(SCRIPT)
    assert.are.equal("failed", server:status())
    assert.are.equal("ServerError: cannot listen on 127.0.0.1:2222: address already in use", server:error())
  end)
end)
