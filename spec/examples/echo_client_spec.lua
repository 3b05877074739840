-- lua/examples/echo_client.lua, the article's client: a `luaecho run`
-- program, run by luaecho.testing against fake servers the spec starts.
local testing = require "luaecho.testing"
local luaecho = require "luaecho"

local SCRIPT = "lua/examples/echo_client.lua"

local LINES = { "Lines received", [["First line.\n"]], [["Second line.\n"]], [["Third line.\n"]],
  [["Last line.\n"]] }

-- A streams echo server, written in the spec.
local function echo(reader, writer)
  while true do
    local data = reader:read(8192)
    if data == "" then break end
    writer:write(data)
  end
end

describe("examples/echo_client.lua #unit", function()
  before_each(testing.reset)

  it("sends four lines to localhost:2222 and prints each line read back", function()
    testing.serve(echo, { port = 2222 })
    local client = testing.run(SCRIPT)
    assert.are.equal("done", client:status())
    assert.are.same(LINES, client:printed())
  end)

  it("joins lines however the server's answer is split and delayed", function()
    -- This server answers one byte every 10 ms of virtual time.
    testing.serve(function(reader, writer)
      local data = reader:readuntil("Last line.\n")
      for c in data:gmatch(".") do
        luaecho.sleep(0.01)
        writer:write(c)
      end
    end, { port = 2222 })
    local client = testing.run(SCRIPT)
    testing.advance(0.2)
    assert.are.equal("running", client:status())
    testing.advance(1)
    assert.are.same(LINES, client:printed())
  end)

  it("connects to the host and port given as its arguments", function()
    testing.serve(echo, { host = "127.0.0.1", port = 3000 })
    local client = testing.run(SCRIPT, "127.0.0.1", "3000")
    assert.are.same(LINES, client:printed())
  end)

  it("stops at EOF when the server hangs up early", function()
    testing.serve(function(reader, writer) writer:write(reader:readline()) end, { port = 2222 })
    local client = testing.run(SCRIPT)
    assert.are.equal("done", client:status())
    assert.are.same({ "Lines received", [["First line.\n"]], [[""]] }, client:printed())
  end)

  it("fails with a ConnectionError when nothing listens, as an uncaught exception", function()
    testing.expect_errors()
    local client = testing.run(SCRIPT)
    assert.are.equal("failed", client:status())
    assert.are.equal("ConnectionError: cannot connect to localhost port 2222: connection refused", client:error())
    assert.matches("^luaecho: error: ConnectionError: cannot connect to localhost port 2222: connection refused\n"
      .. "stack traceback:\n", testing.logs()[1])
  end)
end)
