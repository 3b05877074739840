-- Backpressure end to end (issue 5, point 2): with the default echo script,
-- 200 clients that each send 10 MiB and never read must not grow the
-- server's memory by more than 64 MiB, and a client that does read keeps
-- getting its echoes at normal latency all the while.
--
-- The senders push without reading until the server stops reading from
-- them (their sockets stay unwritable for a second), so the spec ends once
-- backpressure holds everywhere. The server's memory is sampled from /proc
-- on every turn of the loop.
local socket = require "socket"
local uv = require "luv"
local cleanup = require "support.cleanup"
local sanitizer = require "support.sanitizer"
local server = require "support.server"
local client = require "support.client"
local wait = require "support.wait"
local stats = require "support.proc_stats"

local MiB = 1024 * 1024
local SENDERS = 200
local SIZE = 10 * MiB
local CHUNK = 64 * 1024
local MAX_GROWTH = 64 * MiB
local MAX_ROUND_TRIP = 0.2   -- seconds
local QUIET = 1              -- seconds without progress: the server stopped reading
local DEADLINE = 50          -- seconds for the whole load

-- The reader: one "ping N\n" in flight at a time, its echo checked byte
-- for byte, each round trip timed.
local function new_reader(conn)
  conn.sock:settimeout(0)
  return { conn = conn, n = 0, got = "", round_trips = {} }
end

local function reader_send(r)
  r.n = r.n + 1
  r.expect = ("echo:ping %d\n"):format(r.n)
  r.got, r.sent_at = "", wait.now()
  assert(r.conn.sock:send(r.expect:sub(6)))
end

-- Read what arrived; true once the whole echo is in.
local function reader_receive(r)
  local data, err, partial = r.conn.sock:receive(#r.expect - #r.got)
  r.got = r.got .. (data or partial or "")
  assert(not err or err == "timeout", "the reader's connection failed: " .. tostring(err))
  assert(r.expect:sub(1, #r.got) == r.got, ("wrong echo: %q, expected %q"):format(r.got, r.expect))
  if #r.got < #r.expect then return false end
  r.round_trips[#r.round_trips + 1] = wait.now() - r.sent_at
  return true
end

-- Send the next chunk a sender's socket takes; true if it took any.
local function push(sender, payload)
  local last, err, partial = sender.sock:send(payload, sender.sent + 1, math.min(sender.sent + CHUNK, SIZE))
  local sent = last or partial or sender.sent
  assert(not err or err == "timeout", "a sender failed: " .. tostring(err))
  local progressed = sent > sender.sent
  sender.sent = sent
  return progressed
end

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

describe("backpressure #integration #soak", function()
  after_each(cleanup.all)

  it("keeps memory bounded and echoes on time while 200 clients send 10 MiB each and never read", function()
    local proc = server.start({}, { env = sanitizer.small_quarantine() })   -- the bundled echo.lua
    local pid = proc.pid
    local reader = new_reader(client.connect(proc.host, proc.port))
    reader_send(reader)
    wait.until_true(function()
      socket.select({ reader.conn.sock }, nil, 0.1)
      return reader_receive(reader)
    end, 5, "the first echo", true)
    local rss_start = stats.rss(pid)
    local cpu_start = stats.cpu_seconds(pid)

    local payload = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"):rep(SIZE // 64)
    local senders, by_sock = {}, {}
    for i = 1, SENDERS do
      local conn = client.connect(proc.host, proc.port)
      conn.sock:settimeout(0)
      senders[i] = { sock = conn.sock, sent = 0 }
      by_sock[conn.sock] = senders[i]
    end

    local started = wait.now()
    local last_progress, rss_peak = started, rss_start
    reader_send(reader)
    wait.until_true(function()
      local sendt = {}
      for _, sender in ipairs(senders) do
        if sender.sent < SIZE then sendt[#sendt + 1] = sender.sock end
      end
      if #sendt == 0 or wait.now() - last_progress >= QUIET then return true end
      local readable, writable = socket.select({ reader.conn.sock }, sendt, 0.05)
      if #readable > 0 and reader_receive(reader) then reader_send(reader) end
      for _, sock in ipairs(writable) do
        if push(by_sock[sock], payload) then last_progress = wait.now() end
      end
      rss_peak = math.max(rss_peak, stats.rss(pid))
    end, DEADLINE, "the senders to finish or be held back", true)
    local load_seconds = wait.now() - started

    -- Held back: the reader still gets its echoes, memory stays put.
    for _ = 1, 20 do
      wait.until_true(function()
        socket.select({ reader.conn.sock }, nil, 0.1)
        return reader_receive(reader)
      end, 10, "an echo under load", true)
      rss_peak = math.max(rss_peak, stats.rss(pid))
      reader_send(reader)
    end

    local total = 0
    for _, sender in ipairs(senders) do total = total + sender.sent end
    local read_by_server = uv.fs_stat(proc.out_path).size  -- echo.lua prints every chunk
    local trips = { table.unpack(reader.round_trips) }
    table.sort(trips)
    local slow = 0
    for _, t in ipairs(trips) do
      if t >= MAX_ROUND_TRIP then slow = slow + 1 end
    end
    print(("backpressure: %d clients sent %s in %.1f s (the server printed %s of chunks); server RSS %s"
      .. " at start, peak %s (+%s), %s at the end; server CPU %.1f s"):format(
      SENDERS, stats.mib(total), load_seconds, stats.mib(read_by_server), stats.mib(rss_start),
      stats.mib(rss_peak), stats.mib(rss_peak - rss_start), stats.mib(stats.rss(pid)),
      stats.cpu_seconds(pid) - cpu_start))
    print(("backpressure: reader round trips %d: median %.1f ms, p99 %.1f ms, max %.1f ms; %d over %d ms"):format(
      #trips, 1000 * percentile(trips, 0.5), 1000 * percentile(trips, 0.99), 1000 * trips[#trips], slow,
      1000 * MAX_ROUND_TRIP))

    assert.is_true(rss_peak - rss_start < MAX_GROWTH, ("the server's RSS grew by %s"):format(
      stats.mib(rss_peak - rss_start)))
    assert.is_true(trips[#trips] < MAX_ROUND_TRIP, ("%d of %d round trips took %d ms or more (max %.0f ms)"):format(
      slow, #trips, 1000 * MAX_ROUND_TRIP, 1000 * trips[#trips]))
  end)
end)
