-- --workers where SO_REUSEPORT is unavailable: worker 1 listens alone and
-- hands accepted sockets round to the others. Linux always has
-- SO_REUSEPORT, so LUAECHO_NO_REUSEPORT=1 forces this fallback here.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local wait = require "support.wait"

local HANDOFF = { LUAECHO_NO_REUSEPORT = "1" }

local function fixture(name)
  return server.fixture("workers/" .. name)
end

-- Connect, read the worker's "NNN\n" tag, and return the conn and worker.
local function connect_tagged(proc)
  local conn = client.connect(proc.host, proc.port)
  return conn, tonumber(conn:receive_exactly(4):sub(1, 3))
end

after_each(cleanup.expect_clean)

describe("luaecho --workers without SO_REUSEPORT #integration", function()
  it("says so, and spreads 200 clients over both workers, each echoed byte for byte", function()
    local proc = server.start({ "--workers", "2", fixture("tagged_echo.lua") }, { env = HANDOFF })
    proc:wait_output("stderr", "2 workers; SO_REUSEPORT unavailable: worker 1 listens and hands connections round")
    local jobs, seen = {}, { 0, 0 }
    for i = 1, 200 do
      local conn, worker = connect_tagged(proc)
      seen[worker] = seen[worker] + 1
      local data = ("%05d"):format(i):rep(200)
      jobs[i] = { conn = conn, send = data, expect = #data }
    end
    local received = client.exchange(jobs, 20)
    for i, job in ipairs(jobs) do assert.are.equal(job.send, received[i]) end
    assert.is_true(seen[1] > 0 and seen[2] > 0, ("worker 1: %d, worker 2: %d"):format(seen[1], seen[2]))
    assert.are.equal(200, seen[1] + seen[2])
  end)

  it("stops accepting everywhere when a handed-over worker closes the server, and exits 0", function()
    local proc = server.start({ "--workers", "2", fixture("closer.lua") }, { env = HANDOFF })
    local conn, worker
    repeat conn, worker = connect_tagged(proc) until worker == 2
    conn:send_all("close-server\n")
    assert.are.equal("closed\n", conn:receive_exactly(7))
    proc:wait_output("stdout", "worker 2 closed the server\n")
    -- Worker 1's listener closes too (it is told across threads): soon a
    -- newcomer is refused.
    wait.until_true(function()
      local ok, err = pcall(client.connect, proc.host, proc.port, 1)
      if ok then err:close() end
      return not ok and tostring(err):find("refused", 1, true) ~= nil
    end, 5, "worker 1's listener to close")
    client.close_all()
    assert.are.equal(0, proc:wait_exit(10))
  end)

  it("shuts both workers down on SIGTERM and exits 0", function()
    local proc = server.start({ "--workers", "2", fixture("tagged_echo.lua") }, { env = HANDOFF })
    local seen = {}
    for _ = 1, 8 do
      local _, worker = connect_tagged(proc)
      seen[worker] = true
    end
    assert.is_true(seen[1] and seen[2])
    proc:signal("sigterm")
    assert.are.equal(0, proc:wait_exit(10))
    assert.are.equal(8, proc:count("stdout", " connection_lost"))
  end)
end)
