-- The error policy (issue 13): a failed callback is logged once per kind
-- and place (the callback and the script's file:line), so two different
-- errors are both logged; a flood of one is one line, then one more that
-- counts the repeats once its 10 s window ends, or at exit.
local server = require "support.server"
local client = require "support.client"

describe("failed callbacks in the log #integration", function()
  after_each(function()
    client.close_all()
    assert.are.same({}, server.stop_all())
  end)

  it("logs two different errors within a second, both", function()
    local proc = server.start({ server.fixture("policy/two_faults.lua") })
    local first = client.connect(proc.host, proc.port)
    first:receive_until_close(5)
    local second = client.connect(proc.host, proc.port)
    assert.are.equal("hello\n", second:receive_exactly(6))
    second:close()
    proc:wait_output("stderr",
      "connection_lost failed for 127%.0%.0%.1:%d+: [^\n]*two_faults%.lua:%d+: connection_lost fails")
    assert.matches("connection_made failed for 127%.0%.0%.1:%d+: [^\n]*two_faults%.lua:%d+: connection_made fails",
      proc:stderr())
  end)

  local function flood(proc, n)
    for _ = 1, n do
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("boom")
      conn:receive_until_close(5)
    end
    proc:wait_count("stdout", "connection_lost .*boom seen", n)
  end

  it("logs a flood of one error once, and counts the rest at exit", function()
    local proc = server.start({ server.fixture("boom.lua") })
    flood(proc, 30)
    assert.are.equal(1, proc:count("stderr", "^luaecho: error: data_received failed"))
    proc:signal("sigterm")
    assert.are.equal(0, (proc:wait_exit(5)))
    assert.matches("luaecho: error: data_received failed for 127%.0%.0%.1:%d+: [^\n]*boom%.lua:%d+: "
      .. "boom seen in 4 bytes %(and 29 more like it in the last %d+ s%)\n", proc:stderr())
  end)

  it("counts the rest when the 10 s window ends, with nothing new coming #soak", function()
    local proc = server.start({ server.fixture("boom.lua") })
    flood(proc, 5)
    local count = proc:wait_output("stderr", "%(and (%d+) more like it in the last 10 s%)\n", 15)
    assert.are.equal("4", count)
    assert.are.equal(0, proc:count("stdout", "never")) -- still serving: no exit flushed it
    assert.is_false(proc:exited())
  end)
end)
