-- The limits of issue 5, one describe each: --max-connections (and running
-- out of descriptors under a low ulimit), --idle-timeout, --max-write-buffer,
-- --script-timeout and --lua-memory. Each trips, says so in the log (at most
-- one line a second however often it trips), and leaves every other
-- connection served. Then the command line: every flag refuses bad values
-- with one line and exit 2, and --help gives every default.
local socket = require "socket"
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local text = require "support.text"
local wait = require "support.wait"
local stats = require "support.proc_stats"

local TRY_HELP = "Try 'luaecho --help' for more information."

local function fixture(name)
  return server.fixture("limits/" .. name)
end

-- Send `message` on `conn` and expect it back unchanged (the fixtures echo).
local function assert_echoes(conn, message)
  message = message or "ping\n"
  conn:send_all(message)
  assert.are.equal(message, conn:receive_exactly(#message))
end

-- A new connection is served: what it sends comes back.
local function assert_serves(proc)
  local conn = client.connect(proc.host, proc.port)
  assert_echoes(conn, "still serving\n")
  conn:close()
end

-- The server ends `conn` without sending a byte.
local function assert_closed_by_server(conn, timeout)
  local data, how = conn:receive_until_close(timeout or 5)
  assert.are.equal("", data)
  assert.is_truthy(how == "closed" or how == "connection reset by peer", "ended by: " .. tostring(how))
end

-- The port the server sees for `conn` (its peername there).
local function port_of(conn)
  local _, port = conn:sockname()
  return port
end

-- The host's own log lines (not traceback lines) containing `needle`.
local function host_lines(proc, needle)
  local lines = {}
  for line in proc:stderr():gmatch("[^\n]+") do
    if line:sub(1, 9) == "luaecho: " and line:find(needle, 1, true) then lines[#lines + 1] = line end
  end
  return lines
end

-- A limit tripped over `seconds` logged at least one line about it, and no
-- two lines less than a second apart: at most floor(seconds) + 1 of them.
-- The host's clock counts whole milliseconds, hence a little slack.
local function assert_rate_limited(proc, needle, seconds, trips)
  local lines = host_lines(proc, needle)
  local allowed = math.floor(seconds + 0.01) + 1
  assert.is_true(#lines >= 1, "no log line containing " .. needle .. "\n" .. proc:stderr())
  assert.is_true(#lines <= allowed,
    ("%d trips in %.2f s logged %d lines containing %q; at most %d allowed (one a second):\n%s"):format(
      trips, seconds, #lines, needle, allowed, table.concat(lines, "\n", 1, math.min(#lines, 10))))
end

-- Lines on stdout starting with "lost ".
local function lost_lines(proc)
  local lines = {}
  for line in proc:stdout():gmatch("lost [^\n]*") do lines[#lines + 1] = line end
  return lines
end

-- Wait until the fixture has printed `n` "lost" lines; returns them.
local function wait_lost(proc, n, timeout)
  proc:wait_count("stdout", "^lost ", n, timeout or 10, n .. " connection_lost lines")
  return lost_lines(proc)
end

-- Trip a limit `n` times at once: `n` new connections each send `trigger`
-- and the fixture prints "lost" for every one. Returns the seconds it took.
local function trip_many(proc, n, trigger, timeout)
  local started = wait.now()
  for _ = 1, n do client.connect(proc.host, proc.port):send_all(trigger) end
  wait_lost(proc, n, timeout)
  return wait.now() - started
end

-- Send "ping\n" on every connection and sort them by the answer: echoed
-- (served) or ended without a byte (refused). Raises if one does neither.
local function sort_by_answer(conns, timeout)
  local served, refused, pending, count = {}, {}, {}, 0
  for _, conn in ipairs(conns) do
    conn.sock:settimeout(1)
    if conn.sock:send("ping\n") then
      pending[conn.sock] = { conn = conn, got = "" }
      count = count + 1
    else
      refused[#refused + 1] = conn
    end
    conn.sock:settimeout(0)
  end
  wait.until_true(function()
    if count == 0 then return true end
    local socks = {}
    for sock in pairs(pending) do socks[#socks + 1] = sock end
    for _, sock in ipairs((socket.select(socks, nil, 0.1))) do
      local p = pending[sock]
      local data, err, partial = sock:receive(5 - #p.got)
      p.got = p.got .. (data or partial or "")
      local ended = err and err ~= "timeout"
      if p.got == "ping\n" or ended then
        assert(p.got == "ping\n" or p.got == "", "unexpected answer: " .. p.got)
        local list = p.got == "ping\n" and served or refused
        list[#list + 1] = p.conn
        pending[sock], count = nil, count - 1
      end
    end
  end, timeout or 10, "every connection to echo or be closed", true)
  return served, refused
end

-- CPU seconds `pid` uses over a window of `seconds`; and the window's
-- actual length. The window is the measurement, not a synchronisation.
local function cpu_over(pid, seconds)
  local cpu_before, window_start = stats.cpu_seconds(pid), wait.now()
  wait.until_true(function() return wait.now() - window_start >= seconds end, seconds + 5, "the end of the window")
  return stats.cpu_seconds(pid) - cpu_before, wait.now() - window_start
end

describe("limits #integration", function()
  after_each(cleanup.all)

  describe("--max-connections", function()
    it("closes a connection over the limit at once and leaves the open ones alone", function()
      local proc = server.start({ "--max-connections", "3", fixture("counted.lua") })
      local open = client.connect_many(proc.host, proc.port, 3)
      for _, conn in ipairs(open) do assert_echoes(conn) end
      local extra = client.connect(proc.host, proc.port)
      assert_closed_by_server(extra)
      proc:wait_output("stderr",
        "luaecho: warning: connection limit reached %(3 open, %-%-max%-connections 3%): refusing new connections\n")
      for _, conn in ipairs(open) do assert_echoes(conn, "still open\n") end
      -- The refused connection never reached the script.
      assert.are.equal(3, proc:count("stdout", "^made "))
    end)

    it("accepts again once an open connection closes", function()
      local proc = server.start({ "--max-connections", "2", fixture("counted.lua") })
      local open = client.connect_many(proc.host, proc.port, 2)
      for _, conn in ipairs(open) do assert_echoes(conn) end
      assert_closed_by_server(client.connect(proc.host, proc.port))
      open[1]:close()
      wait_lost(proc, 1)
      local again = client.connect(proc.host, proc.port)
      assert_echoes(again, "accepted again\n")
      assert_echoes(open[2], "untouched\n")
    end)

    it("logs refusals at most once a second, counting the ones held back", function()
      local proc = server.start({ "--max-connections", "1", fixture("counted.lua") })
      local held = client.connect(proc.host, proc.port)
      assert_echoes(held)
      -- Trip the limit as fast as we can until the second line comes out.
      local pattern = "connection limit reached %(1 open, %-%-max%-connections 1%): refusing new connections"
      local started, trips = wait.now(), 0
      local held_back = wait.until_true(function()
        local conn = client.connect(proc.host, proc.port)
        assert_closed_by_server(conn)
        conn:close()
        trips = trips + 1
        return proc:stderr():match(pattern .. " %((%d+) more like this since the last such line%)\n")
      end, 10, "a second connection-limit line", true)
      local seconds = wait.now() - started
      print(("max-connections: %d refusals in %.2f s logged %d lines"):format(
        trips, seconds, #host_lines(proc, "connection limit reached")))
      assert_rate_limited(proc, "connection limit reached", seconds, trips)
      -- The first trip logged; every later one but the last was held back.
      assert.are.equal(trips - 2, tonumber(held_back))
      assert_echoes(held, "still served\n")
    end)
    it("counts connections across --workers and logs once a second for the whole process", function()
      local proc = server.start({ "--workers", "2", "--max-connections", "4", fixture("counted.lua") })
      local open = client.connect_many(proc.host, proc.port, 4)
      for _, conn in ipairs(open) do assert_echoes(conn) end
      local started = wait.now()
      for _ = 1, 100 do
        local conn = client.connect(proc.host, proc.port)
        assert_closed_by_server(conn)
        conn:close()
      end
      local seconds = wait.now() - started
      print(("max-connections, 2 workers: 100 refusals in %.2f s logged %d lines"):format(
        seconds, #host_lines(proc, "connection limit reached")))
      assert_rate_limited(proc, "connection limit reached", seconds, 100)
      assert.are.equal(4, proc:count("stdout", "^made "))
      for _, conn in ipairs(open) do assert_echoes(conn, "still open\n") end
    end)
  end)

  describe("out of descriptors #soak", function()
    it("under ulimit -n 64 refuses politely below the limit, stays idle, and accepts again", function()
      local proc = stats.start_with_nofile(64, { fixture("counted.lua") })
      local pid = proc.pid
      local fds_at_start = stats.open_fds(pid)
      local conns = client.connect_many(proc.host, proc.port, 200)
      local served, refused = sort_by_answer(conns)
      -- The default cap is the descriptor limit less 32.
      assert.are.equal(32, #served)
      assert.are.equal(168, #refused)
      proc:wait_output("stderr",
        "luaecho: warning: connection limit reached %(32 open, %-%-max%-connections 32%): refusing new connections")
      assert.is_nil(proc:stderr():find("out of file descriptors", 1, true),
        "the kernel ran out of descriptors before the cap refused:\n" .. proc:stderr())
      local fds_saturated = stats.open_fds(pid)

      -- Saturated: 32 connections held, the rest refused. Measure the CPU
      -- the server uses over two seconds of that.
      local cpu, window = cpu_over(pid, 2)
      print(("out of descriptors (ulimit -n 64, 200 clients): %d served, %d refused; server CPU %.2f s"
        .. " over %.1f s (%.1f%% of a core); descriptors %d at start, %d saturated"):format(
        #served, #refused, cpu, window, 100 * cpu / window, fds_at_start, fds_saturated))
      assert.is_true(cpu / window < 0.2, ("the server used %.1f%% of a core while saturated"):format(
        100 * cpu / window))

      -- Still responsive: the served echo, a newcomer is refused at once.
      for _, conn in ipairs(served) do
        conn.sock:settimeout(5)
        assert_echoes(conn, "responsive\n")
      end
      assert_closed_by_server(client.connect(proc.host, proc.port), 2)

      -- Once the clients go, descriptors come back and all 32 places too.
      client.close_all()
      wait.until_true(function() return stats.open_fds(pid) == fds_at_start end, 10,
        "the server's descriptors to return to " .. fds_at_start)
      local again = sort_by_answer(client.connect_many(proc.host, proc.port, 32))
      assert.are.equal(32, #again)
    end)

    -- libuv's own accept, out of descriptors, closes pending connections
    -- without telling the server; luaecho accepts itself, so it knows.
    it("logs when a script has used up the descriptors, and serves the waiting clients once it lets go", function()
      local proc = stats.start_with_nofile(64, { fixture("fd_hog.lua") })
      local pid = proc.pid
      local hog = client.connect(proc.host, proc.port)
      hog:send_all("hog\n")
      hog.sock:settimeout(5)
      assert.matches("^hogged %d+$", hog.sock:receive("*l"))
      -- luaecho stops accepting for a moment rather than drop them: these
      -- wait in the kernel's backlog until descriptors free up.
      local waiting = client.connect_many(proc.host, proc.port, 20)
      for _, conn in ipairs(waiting) do conn:send_all("waiting\n") end
      proc:wait_output("stderr", "luaecho: warning: out of file descriptors", 5)
      local cpu, window = cpu_over(pid, 2)
      print(("out of descriptors (used up by the script, 20 clients): server CPU %.2f s over %.1f s"
        .. " (%.1f%% of a core); %d lines about descriptors logged"):format(cpu, window, 100 * cpu / window,
        #host_lines(proc, "descriptors")))
      assert.is_true(cpu / window < 0.2, ("the server used %.1f%% of a core"):format(100 * cpu / window))
      assert.is_true(#host_lines(proc, "descriptors") >= 1,
        "nothing logged about running out of descriptors:\n" .. proc:stderr())
      assert_echoes(hog, "still served\n")
      hog:send_all("free\n")
      assert.are.equal("freed\n", hog:receive_exactly(6))
      for _, conn in ipairs(waiting) do assert.are.equal("waiting\n", conn:receive_exactly(8, 5)) end
      assert_serves(proc)
    end)
  end)

  describe("--idle-timeout", function()
    it("closes a connection silent for that long and tells connection_lost why", function()
      local proc = server.start({ "--idle-timeout", "0.5", fixture("counted.lua") })
      local silent = client.connect(proc.host, proc.port)
      assert_echoes(silent)
      local quiet_since = wait.now()
      local busy = client.connect(proc.host, proc.port)
      -- Keep the other connection talking until the silent one is closed.
      silent.sock:settimeout(0)
      local closed_at = wait.until_true(function()
        assert_echoes(busy, "busy\n")
        local data, err = silent.sock:receive(1)
        assert.is_nil(data)
        if err ~= "timeout" then return wait.now() end
      end, 10, "the silent connection to be closed", true)
      local silence = closed_at - quiet_since
      assert.is_true(silence >= 0.45, ("closed after only %.3f s of silence"):format(silence))
      assert.is_true(silence < 3, ("closed only after %.3f s of silence"):format(silence))
      assert_echoes(busy, "still busy\n")
      local reason = "idle timeout: no traffic for 0.5 s (--idle-timeout)"
      assert.are.same({ ("lost %d %s"):format(port_of(silent), reason) }, wait_lost(proc, 1))
      assert.are.equal(1, #host_lines(proc, ("closing 127.0.0.1:%d: %s"):format(port_of(silent), reason)))
    end)

    it("counts output as traffic: a peer that only reads stays connected", function()
      local proc = server.start({ "--idle-timeout", "0.3", fixture("ticker.lua") })
      local reader = client.connect(proc.host, proc.port)
      -- Ten ticks take a second, more than three idle timeouts.
      assert.are.equal(("tick\n"):rep(10), reader:receive_exactly(50, 5))
      assert.are.same({}, lost_lines(proc))
      assert.are.same({}, host_lines(proc, "idle timeout"))
    end)

    it("logs many idle closures at most once a second", function()
      local proc = server.start({ "--idle-timeout", "0.3", fixture("counted.lua") })
      local started = wait.now()
      local conns = client.connect_many(proc.host, proc.port, 20)
      for _, conn in ipairs(conns) do assert_echoes(conn) end
      wait_lost(proc, 20)
      local seconds = wait.now() - started
      for _, line in ipairs(lost_lines(proc)) do
        assert.matches("idle timeout: no traffic for 0.3 s (--idle-timeout)", line, 1, true)
      end
      assert_rate_limited(proc, "idle timeout", seconds, 20)
      assert_serves(proc)
    end)
  end)

  describe("--max-write-buffer", function()
    local LOST = "lost write buffer over %-%-max%-write%-buffer %((%d+) bytes queued, cap (%d+)%): "
      .. "the peer does not read"

    it("aborts a script that ignores pause_writing once its output passes the cap", function()
      local proc = server.start({ "--max-write-buffer", "1M", fixture("firehose.lua") })
      local other = client.connect(proc.host, proc.port)
      assert_echoes(other)
      local hose = client.connect(proc.host, proc.port)
      hose:send_all("flood\n")   -- and never read
      local queued, cap = proc:wait_output("stdout", LOST, 10, "connection_lost with the write-buffer reason")
      assert.are.equal(1024 * 1024, tonumber(cap))
      assert.is_true(tonumber(queued) > tonumber(cap))
      local wrote = tonumber(proc:wait_output("stdout", "wrote (%d+)\n"))
      assert.is_true(wrote < 256 * 1024 * 1024, "the cap never stopped the script")
      assert.are.equal(1, #host_lines(proc, ("luaecho: warning: aborting 127.0.0.1:%d: write buffer over "
        .. "--max-write-buffer (%s bytes queued, cap 1048576): the peer does not read"):format(port_of(hose), queued)))
      assert_echoes(other, "unaffected\n")
      assert_serves(proc)
    end)

    it("caps at 16 MiB when the flag is not given", function()
      local proc = server.start({ fixture("firehose.lua") })
      local hose = client.connect(proc.host, proc.port)
      hose:send_all("flood\n")
      local _, cap = proc:wait_output("stdout", LOST, 20, "connection_lost with the write-buffer reason")
      assert.are.equal(16 * 1024 * 1024, tonumber(cap))
      assert_serves(proc)
    end)

    it("logs many aborts at most once a second", function()
      local proc = server.start({ "--max-write-buffer", "256k", fixture("firehose.lua") })
      local seconds = trip_many(proc, 10, "flood\n", 20)
      assert_rate_limited(proc, "--max-write-buffer", seconds, 10)
      assert_serves(proc)
    end)
  end)

  describe("--script-timeout", function()
    local REASON = "script timeout: ran longer than %d ms (--script-timeout)"

    -- With the server started with `args`, send `trigger` on one connection
    -- while another waits for an echo: the runaway connection is aborted
    -- within the time limit (plus slack), the other is served. Returns the
    -- runaway's port and the seconds it took.
    local function assert_interrupted(proc, trigger, limit_ms)
      local other = client.connect(proc.host, proc.port)
      assert_echoes(other)
      local runaway = client.connect(proc.host, proc.port)
      local sent_at = wait.now()
      runaway:send_all(trigger)
      other:send_all("waiting\n")
      assert_closed_by_server(runaway, 10)
      local took = wait.now() - sent_at
      assert.are.equal("waiting\n", other:receive_exactly(8, 10))
      assert.is_true(took >= limit_ms / 1000 * 0.9, ("aborted after only %.3f s"):format(took))
      assert.is_true(took < limit_ms / 1000 + 2, ("aborted only after %.3f s"):format(took))
      assert_echoes(other, "after the runaway\n")
      assert_serves(proc)
      return port_of(runaway), took
    end

    -- The one connection_lost that was not a clean close: its reason must
    -- be the timeout's, maybe after the "file:line: " where the script was.
    local function assert_lost_to_timeout(proc, limit_ms)
      local reasons = {}
      for _, line in ipairs(wait_lost(proc, 1)) do
        if line ~= "lost nil" then reasons[#reasons + 1] = line:sub(6) end
      end
      assert.are.equal(1, #reasons, "connection_lost reasons:\n" .. table.concat(reasons, "\n"))
      local where, reason = reasons[1]:match("^(.-)(script timeout: .*)$")
      assert.are.equal(REASON:format(limit_ms), reason)
      assert.is_truthy(where == "" or where:match("^[^\n]+:%d+: $"), "unexpected prefix: " .. tostring(where))
      return reasons[1]
    end

    it("interrupts a data_received that never returns and serves the others", function()
      local proc = server.start({ "--script-timeout", "200", fixture("spin.lua") })
      local port = assert_interrupted(proc, "spin\n", 200)
      local reason = assert_lost_to_timeout(proc, 200)
      assert.are.equal(1, #host_lines(proc, ("luaecho: error: data_received failed for 127.0.0.1:%d: %s"):format(
        port, reason)))
    end)

    it("interrupts a loop that catches the timeout with pcall and spins again", function()
      local proc = server.start({ "--script-timeout", "200", fixture("spin.lua") })
      assert_interrupted(proc, "pcall\n", 200)
      assert_lost_to_timeout(proc, 200)
    end)

    it("interrupts a streams handler spinning in its coroutine", function()
      local proc = server.start({ "--script-timeout", "200", fixture("spin_stream.lua") })
      local other = client.connect(proc.host, proc.port)
      assert_echoes(other, "line\n")
      local runaway = client.connect(proc.host, proc.port)
      runaway:send_all("spin\n")
      other:send_all("waiting\n")
      assert_closed_by_server(runaway, 10)
      assert.are.equal("waiting\n", other:receive_exactly(8, 10))
      proc:wait_output("stderr", "luaecho: error: [^\n]*" .. text.literal(REASON:format(200)))
      assert_serves(proc)
    end)

    it("allows 1000 ms when the flag is not given", function()
      local proc = server.start({ fixture("spin.lua") })
      assert_interrupted(proc, "spin\n", 1000)
      assert_lost_to_timeout(proc, 1000)
    end)

    it("logs many timeouts at most once a second", function()
      local proc = server.start({ "--script-timeout", "20", fixture("spin.lua") })
      local seconds = trip_many(proc, 20, "spin\n")
      print(("script-timeout: 20 timeouts in %.2f s logged %d lines"):format(
        seconds, #host_lines(proc, "script timeout")))
      assert_rate_limited(proc, "script timeout", seconds, 20)
      assert_serves(proc)
    end)
  end)

  describe("--lua-memory", function()
    local REASON = "not enough memory (the --lua-memory cap may be reached)"

    it("fails a callback that hoards memory, and the next connection works", function()
      local proc = server.start({ "--lua-memory", "32", fixture("hoard.lua") })
      local other = client.connect(proc.host, proc.port)
      assert_echoes(other)
      local hoarder = client.connect(proc.host, proc.port)
      hoarder:send_all("hoard\n")
      assert_closed_by_server(hoarder, 10)
      assert.are.same({ "lost " .. REASON }, wait_lost(proc, 1))
      assert.are.equal(1, #host_lines(proc, ("luaecho: error: data_received failed for 127.0.0.1:%d: %s"):format(
        port_of(hoarder), REASON)))
      assert_echoes(other, "unaffected\n")
      assert_serves(proc)
    end)

    it("gets back what a connection held once it is gone", function()
      local proc = server.start({ "--lua-memory", "32", fixture("hoard.lua") })
      for round = 1, 3 do
        local keeper = client.connect(proc.host, proc.port)
        keeper:send_all("keep\n")
        assert_closed_by_server(keeper, 10)
        -- Failures are logged at most once a second: count connection_lost.
        proc:wait_count("stdout", "^lost not enough memory", round, 10, round .. " memory failures")
        assert_serves(proc)
      end
    end)

    it("logs many memory failures at most once a second", function()
      local proc = server.start({ "--lua-memory", "16", fixture("hoard.lua") })
      local seconds = trip_many(proc, 10, "hoard\n", 20)
      print(("lua-memory: 10 failures in %.2f s logged %d lines"):format(
        seconds, #host_lines(proc, "--lua-memory")))
      assert_rate_limited(proc, "--lua-memory", seconds, 10)
      assert_serves(proc)
    end)
  end)
end)

-- Values each flag must refuse: negative, not a number, out of range,
-- trailing junk, empty, and the like. A missing value is tried for each.
local BAD_VALUES = {
  { "--host", { "" } },
  { "--port", { "-1", "abc", "65536", "80x", "", "8.5" } },
  { "--log-level", { "loud", "", "info2", "-1" } },
  { "--shutdown-timeout", { "-1", "abc", "86401", "5s", "", "nan", "inf" } },
  { "--max-connections", { "-1", "abc", "10000001", "10x", "", "1.5" } },
  { "--idle-timeout", { "-1", "abc", "1e12", "5s", "", "nan" } },
  { "--max-write-buffer", { "-1", "abc", "2048G", "16MB", "", "1.5M", "k" } },
  { "--script-timeout", { "-1", "abc", "3600001", "100ms", "", "1.5" } },
  { "--lua-memory", { "-1", "abc", "1048577", "512MB", "", "0.5" } },
  { "--workers", { "-1", "abc", "257", "2x", "", "1.5" } },
  { "--reload-check", { "" } },
  { "--reload-check-timeout", { "-1", "abc", "0", "86401", "5x", "" } },
}

-- What --help must say about each default, whitespace collapsed.
local HELP_DEFAULTS = {
  { "--host", "default 127.0.0.1" },
  { "--port", "default 2222" },
  { "--log-level", "default info" },
  { "--shutdown-timeout", "default 5)" },
  { "--max-connections", "default, and 0: the descriptor limit, ulimit -n, less 32" },
  { "--idle-timeout", "default 0: off" },
  { "--max-write-buffer", "default 16M" },
  { "--script-timeout", "default 1000)" },
  { "--lua-memory", "default 512)" },
  { "--workers", "default 1)" },
  { "--reload-check-timeout", "default 30)" },
}

-- Run luaecho with `args` (and `env`); nil if it failed the way a bad
-- command line must (exit 2, stdout empty, one line naming `culprit`,
-- maybe the --help pointer), else a description of what went wrong.
local function usage_failure(args, culprit, env)
  local ok, code, out, err = pcall(server.run, args, { env = env }, 5)
  local what = "luaecho " .. table.concat(args, " ", 1, #args):gsub("\n", "\\n")
    .. (env and (" with LUAECHO_PORT=" .. env.LUAECHO_PORT) or "")
  if not ok then return what .. ": " .. tostring(code) end
  local lines = text.lines(err)
  local first = lines[1] or ""
  if code ~= 2 then return ("%s: exit %s\n%s"):format(what, tostring(code), err) end
  if out ~= "" then return ("%s: wrote to stdout: %q"):format(what, out) end
  if not first:find("^luaecho: ") or not first:find(culprit, 1, true) then
    return ("%s: first line does not name %s: %q"):format(what, culprit, first)
  end
  if not (#lines == 1 or (#lines == 2 and lines[2] == TRY_HELP)) then
    return ("%s: more than one line:\n%s"):format(what, err)
  end
  return nil
end

local function assert_all_refused(failures)
  assert.is_true(#failures == 0, table.concat(failures, "\n"))
end

describe("limits on the command line #integration", function()
  after_each(cleanup.all)

  for _, case in ipairs(BAD_VALUES) do
    local flag, values = case[1], case[2]
    it("refuses each bad value of " .. flag .. " with one line naming it and exit 2", function()
      local failures = {}
      for _, value in ipairs(values) do
        -- A free port first, so a value wrongly accepted cannot hold 2222.
        for _, args in ipairs({ { "--port", "0", flag, value }, { "--port", "0", flag .. "=" .. value } }) do
          failures[#failures + 1] = usage_failure(args, flag)
        end
      end
      failures[#failures + 1] = usage_failure({ "--port", "0", flag }, flag)
      assert_all_refused(failures)
    end)
  end

  it("refuses unknown options, naming them, with exit 2", function()
    local failures = {}
    for _, args in ipairs({ { "--max-conections", "5" }, { "--idle-timeout-ms", "5" }, { "--bogus" }, { "-x" } }) do
      failures[#failures + 1] = usage_failure(args, args[1])
    end
    assert_all_refused(failures)
  end)

  it("refuses a bad LUAECHO_PORT in the environment, naming it, with exit 2", function()
    local failures = {}
    for _, value in ipairs({ "-1", "abc", "65536", "80x", "8.5" }) do
      failures[#failures + 1] = usage_failure({}, "LUAECHO_PORT", { LUAECHO_PORT = value })
    end
    assert_all_refused(failures)
  end)

  it("gives every option's default in --help", function()
    local code, help = server.run({ "--help" })
    assert.are.equal(0, code)
    local lines = text.lines(help)
    for _, case in ipairs(HELP_DEFAULTS) do
      local flag, default = case[1], case[2]
      -- The option's entry: its line and the indented lines under it, up
      -- to the next option or a blank line; whitespace collapsed.
      local entry
      for i, line in ipairs(lines) do
        if line:match("^%s+%-") and line:find(flag .. " ", 1, true) then
          local parts = { line }
          for j = i + 1, #lines do
            if lines[j]:match("^%s*$") or lines[j]:match("^%s+%-") then break end
            parts[#parts + 1] = lines[j]
          end
          entry = table.concat(parts, " "):gsub("%s+", " ")
          break
        end
      end
      assert.is_truthy(entry, flag .. " is not in --help")
      assert.is_truthy(entry:find(default, 1, true), ("%s: %q not in %q"):format(flag, default, entry))
    end
  end)
end)
