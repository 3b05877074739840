-- Churn (issue 5, point 5): 20,000 connect-send-close cycles leak no
-- descriptor and leave the server's RSS within 10% of where it was after a
-- warm-up batch. A few connections run at once so the spec stays short.
-- Most cycles read their echo and close; every eighth resets (SO_LINGER 0)
-- right after sending, and every eighth closes without reading, so the
-- server's error paths churn too.
local socket = require "socket"
local sanitizer = require "support.sanitizer"
local server = require "support.server"
local wait = require "support.wait"
local stats = require "support.proc_stats"

local CYCLES = 20000
-- Long enough for the allocator to settle: under AddressSanitizer its
-- quarantine (4 MiB here) and caches fill for the first ~20,000 cycles.
local WARM_UP = 20000
local LANES = 8              -- connections in flight at once
local MAX_RSS_RATIO = 1.10

-- How cycle `i` ends.
local function mode_of(i)
  if i % 8 == 0 then return "reset" end
  if i % 8 == 4 then return "close unread" end
  return "echo"
end

-- Sockets of cycles still running, so teardown can close them.
local open_socks = {}

-- Connect and send; for "echo" return the lane waiting for the reply,
-- otherwise end the connection at once and return nil.
local function start_cycle(proc, i)
  local sock = socket.tcp()
  sock:settimeout(5)
  assert(sock:connect(proc.host, proc.port))
  local message = ("cycle %d\n"):format(i)
  assert(sock:send(message))
  local mode = mode_of(i)
  if mode == "reset" then
    sock:setoption("linger", { on = true, timeout = 0 })
    sock:close()
    return nil
  elseif mode == "close unread" then
    sock:close()
    return nil
  end
  sock:settimeout(0)
  open_socks[sock] = true
  return { sock = sock, expect = message, got = "" }
end

-- Run cycles first..last with LANES in flight; raises on any wrong echo.
local function churn(proc, first, last, timeout)
  local lanes, next_cycle = {}, first
  wait.until_true(function()
    while #lanes < LANES and next_cycle <= last do
      local lane = start_cycle(proc, next_cycle)
      next_cycle = next_cycle + 1
      if lane then lanes[#lanes + 1] = lane end
    end
    if #lanes == 0 then return next_cycle > last end
    local socks, by_sock = {}, {}
    for _, lane in ipairs(lanes) do
      socks[#socks + 1] = lane.sock
      by_sock[lane.sock] = lane
    end
    for _, sock in ipairs((socket.select(socks, nil, 1))) do
      local lane = by_sock[sock]
      local data, err, partial = sock:receive(#lane.expect - #lane.got)
      lane.got = lane.got .. (data or partial or "")
      assert(not err or err == "timeout", ("%s failed after %q: %s"):format(lane.expect, lane.got, tostring(err)))
      if lane.got == lane.expect then
        sock:close()
        open_socks[sock] = nil
        lane.done = true
      end
    end
    for i = #lanes, 1, -1 do
      if lanes[i].done then table.remove(lanes, i) end
    end
  end, timeout, ("cycles %d to %d"):format(first, last), true)
end

-- Wait until the script has seen `n` connections made and as many lost.
local function wait_all_lost(proc, n)
  wait.until_true(function()
    return proc:count("stdout", "^made ") == n and proc:count("stdout", "^lost ") == n
  end, 30, n .. " connections made and lost")
end

describe("connection churn #integration #soak", function()
  after_each(function()
    for sock in pairs(open_socks) do sock:close() end
    open_socks = {}
    server.stop_all()
  end)

  it("leaks no descriptor and no memory over 20,000 connect-send-close cycles", function()
    local proc = server.start({ server.fixture("limits/counted.lua") }, { env = sanitizer.small_quarantine() })
    local pid = proc.pid
    local fds_start, rss_start = stats.open_fds(pid), stats.rss(pid)

    churn(proc, 1, WARM_UP, 120)
    wait_all_lost(proc, WARM_UP)
    local fds_before, rss_before = stats.open_fds(pid), stats.rss(pid)

    local started = wait.now()
    churn(proc, WARM_UP + 1, WARM_UP + CYCLES, 240)
    local seconds = wait.now() - started
    wait_all_lost(proc, WARM_UP + CYCLES)
    local fds_after = stats.settle_fds(pid, fds_before, 10)
    local rss_after = stats.rss(pid)
    print(("churn: %d cycles in %.1f s (%.0f a second); server descriptors %d at start, %d after warm-up,"
      .. " %d after; RSS %s at start, %s after warm-up, %s after (%+.1f%%)"):format(
      CYCLES, seconds, CYCLES / seconds, fds_start, fds_before, fds_after, stats.mib(rss_start),
      stats.mib(rss_before), stats.mib(rss_after), 100 * (rss_after - rss_before) / rss_before))

    assert.are.equal(fds_before, fds_after, "open descriptors:\n" .. table.concat(stats.fd_targets(pid), "\n"))
    assert.is_true(rss_after <= rss_before * MAX_RSS_RATIO, ("RSS went from %s to %s"):format(
      stats.mib(rss_before), stats.mib(rss_after)))
    assert.is_nil(proc:stderr():find("luaecho: error:", 1, true), "a callback failed:\n" .. proc:stderr())
    proc:signal("sigterm")
    assert.are.equal(0, proc:wait_exit(10), proc:describe())
  end)
end)
