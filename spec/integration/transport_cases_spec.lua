-- The shared transport cases (spec/shared/transport_cases.lua) against
-- the real binary: one luaecho per case on --port 0, talked to over TCP
-- through support.tcp_harness. Where the fake's spec advances its clock,
-- this one simply waits (with a deadline) for what the time brings.
local cleanup = require "support.cleanup"
local client = require "support.client"
local tcp_harness = require "support.tcp_harness"
local cases = require "shared.transport_cases"

describe("the transport contract, on the real binary #integration", function()
  local harness

  after_each(function()
    client.close_all()
    -- A server the script closed exits 0 by itself once its last
    -- connection has gone; a SIGTERM then would race with that exit.
    if harness and harness.closed_server then
      assert.are.equal(0, (harness.proc:wait_exit(5)))
    end
    harness = nil
    cleanup.expect_clean()
  end)

  for _, c in ipairs(cases) do
    it(c.name, function()
      harness = tcp_harness.start(c)
      c.run(harness)
    end)
  end
end)
