-- The transport as a handler sees it: get_extra_info, writelines, write_eof,
-- its state, and what each method does after close(), abort() and once its
-- connection has gone (spec/fixtures/commands.lua prints the results).
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"

-- The results the fixture printed for `stage`: { method = "ok ..." | "error ..." }.
local function results_of(proc, stage)
  proc:wait_output("stdout", "%f[^\n\0]" .. stage .. " done\n", 5, stage .. " probes")
  local results = {}
  for line in proc:stdout():gmatch("([^\n]*)\n") do
    local s, method, outcome = line:match("^(%S+) (%S+) (.-)%s*$")
    if s == stage then results[method] = outcome end
  end
  return results
end

-- What the contract promises for a transport that is closing or gone.
local function assert_closed_behaviour(results, peer_port)
  for _, method in ipairs({ "write", "writelines", "write_eof" }) do
    assert.matches("^error .*transport is closed", results[method], nil, false, method .. " after close")
  end
  assert.are.equal("ok true", results.is_closing)
  assert.are.equal("ok false", results.is_reading)
  assert.are.equal("ok 0", results.get_write_buffer_size)
  assert.are.equal("ok 127.0.0.1 " .. peer_port, results.peername)
  for _, method in ipairs({ "pause_reading", "resume_reading", "close", "abort" }) do
    assert.are.equal("ok", results[method], method .. " should be a no-op")
  end
end

describe("transport methods #integration", function()
  local proc

  before_each(function()
    proc = server.start({ server.fixture("commands.lua") })
  end)

  after_each(cleanup.expect_clean)

  it("report peername, sockname and the server's address", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("info")
    local my_host, my_port = conn:sockname()
    local server_host, server_port = conn:peername()
    local expected = ("peername %s %d\nsockname %s %d\nserver %s %d\n"):format(
      my_host, my_port, server_host, server_port, proc.host, proc.port)
    assert.are.equal(expected, conn:receive_exactly(#expected))
  end)

  it("write a list of strings in order with writelines", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("writelines")
    assert.are.equal("one two three\n", conn:receive_exactly(14))
  end)

  it("report an open transport's state", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("state")
    local expected = "closing false reading true can_write_eof true buffer 0\n"
    assert.are.equal(expected, conn:receive_exactly(#expected))
  end)

  it("half-close with write_eof, refuse writes after it, and still read", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("eof")
    assert.are.equal("bye\n", conn:receive_exactly(4))
    local after = results_of(proc, "after_eof")
    assert.matches("^error .*cannot write after write_eof%(%)", after.write)
    -- Our side is shut, theirs is open: the server still receives.
    conn:send_all("still talking")
    proc:wait_output("stdout", "data still talking\n")
    assert.are.same({ "", "closed" }, { conn:receive_until_close() })
  end)

  it("flush then close on close(), and raise or do nothing afterwards", function()
    local conn = client.connect(proc.host, proc.port)
    local _, my_port = conn:sockname()
    conn:send_all("close")
    assert.are.same({ "closing\n", "closed" }, { conn:receive_until_close() })
    assert_closed_behaviour(results_of(proc, "closed"), my_port)
  end)

  it("drop the connection on abort(), and raise or do nothing afterwards", function()
    local conn = client.connect(proc.host, proc.port)
    local _, my_port = conn:sockname()
    conn:send_all("abort")
    assert.are.equal("", (conn:receive_until_close()))
    assert_closed_behaviour(results_of(proc, "aborted"), my_port)
  end)

  it("behave the same inside connection_lost, where sockname is nil", function()
    local conn = client.connect(proc.host, proc.port)
    local _, my_port = conn:sockname()
    conn:send_all("close")
    conn:receive_until_close()
    local results = results_of(proc, "lost")
    assert_closed_behaviour(results, my_port)
    assert.are.equal("ok nil", results.sockname)
  end)

  it("stay harmless when kept after their connection has gone", function()
    local first = client.connect(proc.host, proc.port)
    local _, first_port = first:sockname()
    first:send_all("close")
    first:receive_until_close()
    results_of(proc, "lost")
    local second = client.connect(proc.host, proc.port)
    second:send_all("probe")
    assert.are.equal("probed\n", second:receive_exactly(7))
    local results = results_of(proc, "gone")
    assert_closed_behaviour(results, first_port)
    assert.are.equal("ok nil", results.sockname)
    -- The server survived all of it and still serves.
    second:send_all("state")
    assert.matches("^closing false", second:receive_exactly(55))
  end)
end)
