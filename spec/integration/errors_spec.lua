-- A Lua error in a callback belongs to its connection: that connection is
-- aborted and told why, the error is logged with traceback and peer, and
-- every other connection and the server carry on.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"

describe("an error in a handler callback #integration", function()
  local proc

  before_each(function()
    proc = server.start({ server.fixture("boom.lua") })
  end)

  after_each(cleanup.expect_clean)

  -- Connect and prove the connection echoes; returns it and its local port.
  local function echoing_client()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("ping")
    assert.are.equal("ping", conn:receive_exactly(4))
    return conn, select(2, conn:sockname())
  end

  it("aborts only the connection that raised", function()
    local victim = echoing_client()
    local bystander = echoing_client()
    victim:send_all("boom")
    local rest = victim:receive_until_close()
    assert.are.equal("", rest)
    bystander:send_all("still here")
    assert.are.equal("still here", bystander:receive_exactly(10))
    local newcomer = echoing_client()
    newcomer:send_all("new")
    assert.are.equal("new", newcomer:receive_exactly(3))
  end)

  it("still calls connection_lost with the error message", function()
    local victim, port = echoing_client()
    victim:send_all("boom")
    victim:receive_until_close()
    local err = proc:wait_output("stdout", "%f[%d]" .. port .. " connection_lost ([^\n]*)\n")
    assert.matches("boom seen in 4 bytes", err, 1, true)
    proc:signal("sigterm")
    assert.are.equal(0, (proc:wait_exit(10)))
    assert.are.equal(1, proc:count("stdout", "^" .. port .. " connection_lost"))
  end)

  it("is logged on stderr with the method, the peer and a traceback", function()
    local victim, port = echoing_client()
    victim:send_all("boom")
    victim:receive_until_close()
    -- Wait for the traceback's frame in the fixture, so the log is complete.
    local log = proc:wait_output("stderr",
      "(luaecho: error: data_received failed for [^\n]*\n.-boom%.lua:%d+: in [^\n]*'explode'[^\n]*\n)")
    local first = log:match("^[^\n]*")
    assert.matches("for 127.0.0.1:" .. port .. ": ", first, 1, true)
    assert.matches("boom.lua:%d+: boom seen in 4 bytes", first)
    assert.matches("stack traceback:", log, 1, true)
    -- Logged once, however the abort then unwinds.
    assert.are.equal(1, proc:count("stderr", "^luaecho: error: "))
  end)

  it("leaves the other connections' callbacks untouched", function()
    local bystander, bystander_port = echoing_client()
    local victim = echoing_client()
    victim:send_all("boom")
    victim:receive_until_close()
    bystander:close()
    proc:wait_output("stdout", "%f[%d]" .. bystander_port .. " connection_lost nil\n")
  end)
end)
