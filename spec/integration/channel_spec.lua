-- luaecho.channel on the real host (issue 20, point 1): with --workers 2 a
-- message published in one worker reaches the subscribers of both, exactly
-- once each, in publish order per publisher, never inside publish; a
-- failing subscriber is logged and the others still get the message; a
-- flood into a small --channel-buffer is dropped and counted while memory
-- stays bounded; the subscriptions of an old script generation go once its
-- connections have gone, and those of a failed reload at once; a luaecho
-- run program gets its own messages; a bad --channel-buffer is a usage
-- error.
-- spec/fixtures/channel/room.lua is the script (its header lists its
-- commands). Clients connect until both workers serve some, as
-- workers_spec.lua does. Every wait has a deadline.
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local prometheus = require "support.prometheus"
local proc_stats = require "support.proc_stats"
local sanitizer = require "support.sanitizer"
local server = require "support.server"
local text = require "support.text"
local wait = require "support.wait"

local ROOM = server.fixture("channel/room.lua")

after_each(cleanup.expect_clean)

-- The next line from conn (without its newline), within `timeout` seconds.
local function line_of(conn, timeout)
  conn.sock:settimeout(timeout or 5)
  local line, err = conn.sock:receive("*l")
  if not line then error("no line from the server: " .. tostring(err), 2) end
  return line
end

-- Read lines until `n` have come; returns them.
local function lines_of(conn, n, timeout)
  local deadline = wait.now() + (timeout or 5)
  local got = {}
  while #got < n do
    local left = deadline - wait.now()
    if left <= 0 then error(("%d of %d lines: %s"):format(#got, n, table.concat(got, " | ")), 2) end
    got[#got + 1] = line_of(conn, left)
  end
  return got
end

-- Connect; returns { conn, worker }.
local function connect(proc)
  local conn = client.connect(proc.host, proc.port)
  return { conn = conn, worker = tonumber(line_of(conn)) }
end

-- Connect until each of workers 1 and 2 serves `each` connections; returns
-- by_worker[w] = records.
local function hold_both(proc, each)
  local by_worker, tries = { {}, {} }, 0
  while #by_worker[1] < each or #by_worker[2] < each do
    tries = tries + 1
    assert(tries <= 256, "the kernel never gave both workers their connections")
    local r = connect(proc)
    local mine = by_worker[r.worker]
    if #mine < each then mine[#mine + 1] = r else r.conn:close() end
  end
  return by_worker
end

local function send(r, line)
  r.conn:send_all(line .. "\n")
end

-- The value of sample `name{worker="w"}` in a scrape of proc's /metrics.
local function sample(proc, name, worker)
  local status, body = prometheus.http_get(proc.metrics_port, "/metrics", 5)
  assert.are.equal(200, status)
  local value = body:match("\n" .. name .. '{worker="' .. worker .. '"} (%S+)\n')
  return tonumber(value)
end

describe("luaecho.channel #integration", function()
  describe("with --workers 2", function()
    it("reaches every subscriber in both workers once, in order per publisher, after publish returns", function()
      local proc = server.start({ "--workers", "2", ROOM })
      local held = hold_both(proc, 2)
      local a, b = held[1][1], held[2][1]
      send(a, "pub room a1\npub room a2\npub room a3")
      send(b, "pub room b1\npub room b2\npub room b3")
      for _, r in ipairs({ held[1][1], held[1][2], held[2][1], held[2][2] }) do
        local publisher = r == a and "a" or r == b and "b" or nil
        local got = lines_of(r.conn, publisher and 9 or 6)
        local by = { a = {}, b = {}, published = {} }
        for i, line in ipairs(got) do
          local who = line:match("^got v1 ([ab])%d$")
          if who then
            table.insert(by[who], line)
          else
            local mine = line:match("^published (" .. tostring(publisher) .. "%d)$")
            assert.is_truthy(mine, "unexpected line " .. line)
            -- Nothing is delivered inside publish: its answer comes before the message.
            for j = 1, i - 1 do assert.are_not.equal("got v1 " .. mine, got[j]) end
            table.insert(by.published, mine)
          end
        end
        assert.are.same({ "got v1 a1", "got v1 a2", "got v1 a3" }, by.a, "worker " .. r.worker)
        assert.are.same({ "got v1 b1", "got v1 b2", "got v1 b3" }, by.b, "worker " .. r.worker)
        if publisher then
          assert.are.same({ publisher .. "1", publisher .. "2", publisher .. "3" }, by.published)
        end
      end
      -- Exactly once: the next line anyone gets is the next message.
      send(a, "pub room end")
      assert.are.same({ "published end", "got v1 end" }, lines_of(a.conn, 2))
      for _, r in ipairs({ held[1][2], held[2][1], held[2][2] }) do
        assert.are.equal("got v1 end", line_of(r.conn))
      end
      -- One subscription per worker ran for each message: 7 lines on stdout each.
      proc:wait_count("stdout", "^room v1 1 ", 7)
      proc:wait_count("stdout", "^room v1 2 ", 7)
      assert.are.equal(7, proc:count("stdout", "^room v1 1 "))
      assert.are.equal(7, proc:count("stdout", "^room v1 2 "))
    end)

    it("logs a failing subscriber, keeps its worker serving, and still delivers to the others", function()
      local proc = server.start({ "--workers", "2", ROOM })
      local held = hold_both(proc, 1)
      local x, y = held[1][1], held[2][1]
      send(x, "bad t2\nsub t2")
      assert.are.same({ "subscribed t2", "subscribed t2" }, lines_of(x.conn, 2))
      send(y, "sub t2")
      assert.are.equal("subscribed t2", line_of(y.conn))
      send(y, "pub t2 m1")
      assert.are.same({ "published m1", "sub t2 m1" }, lines_of(y.conn, 2))
      assert.are.equal("sub t2 m1", line_of(x.conn))
      proc:wait_output("stderr", "channel subscriber failed: [^\n]*room%.lua:%d+: boom in subscriber")
      send(x, "pub t2 m2") -- the worker of the failing subscriber goes on
      assert.are.same({ "published m2", "sub t2 m2" }, lines_of(x.conn, 2))
      assert.are.equal("sub t2 m2", line_of(y.conn))
    end)
  end)

  it("drops and counts what overflows a worker's inbox, logs it rate-limited, and keeps memory bounded",
    function()
      local proc = server.start({ "--channel-buffer", "64k", "--metrics", "127.0.0.1:0", ROOM },
        { env = sanitizer.small_quarantine() })
      proc:wait_metrics()
      local r = connect(proc)
      send(r, "tally flood")
      assert.are.equal("tallying flood", line_of(r.conn))
      local rss_before = proc_stats.rss(proc.pid)
      local n, rounds = 20000, 3
      local started = wait.now()
      for _ = 1, rounds do
        send(r, ("flood flood %d 1000"):format(n))
        assert.are.equal("flooded", line_of(r.conn, 30))
      end
      local total = n * rounds
      local seconds = wait.now() - started
      assert.are.equal(total, sample(proc, "luaecho_channel_published_total", 1))
      local delivered, dropped = wait.until_true(function()
        local d = sample(proc, "luaecho_channel_delivered_total", 1)
        local x = sample(proc, "luaecho_channel_dropped_total", 1)
        if d + x == total then return d, x end
      end, 10, "delivered + dropped = published")
      assert.is_true(dropped > 0 and delivered > 0, ("delivered %d, dropped %d"):format(delivered, dropped))
      -- 64 KiB holds about 60 of these messages: one flood, taken whole, fits that many each time.
      assert.is_true(delivered <= rounds * 64, ("delivered %d"):format(delivered))
      send(r, "tally?")
      assert.are.equal(("tally %d ordered"):format(delivered), line_of(r.conn))
      local growth = proc_stats.rss(proc.pid) - rss_before
      -- Under valgrind (the memcheck entry) 20 MB of freed blocks wait before reuse.
      local bound = (os.getenv("LUAECHO_MEMCHECK_BIN") and 48 or 16) * 1024 * 1024
      assert.is_true(growth < bound,
        ("RSS grew %s while %d MB went through a 64 KiB inbox"):format(proc_stats.mib(growth), total // 1000))
      local logged = proc:count("stderr", "^luaecho: warning: channel: dropped a message on 'flood': "
        .. "worker 1's inbox is full %(%-%-channel%-buffer 65536 bytes%)")
      -- At most one line a second (a slow run, under valgrind, takes seconds).
      assert.is_true(logged >= 1 and logged <= math.ceil(seconds) + 1,
        ("%d lines about drops in %.1f s"):format(logged, seconds))
    end)

  it("drops the subscriptions of an old generation once no connection runs its code", function()
    local scratch = files.scratch("channel")
    local source = files.read(ROOM)
    local script = scratch:write("room.lua", source)
    local proc = server.start({ script })
    local old = connect(proc)
    scratch:replace("room.lua", (source:gsub('local VERSION = "v1"', 'local VERSION = "v2"')))
    proc:signal("sighup")
    proc:wait_output("stderr", ("luaecho: reloaded %s %%(generation 2%%)\n"):format(text.literal(script)))
    local new = connect(proc)
    send(new, "pub room both")
    assert.are.same({ "published both", "got v2 both" }, lines_of(new.conn, 2))
    assert.are.equal("got v1 both", line_of(old.conn)) -- generation 1 has a connection: still subscribed
    old.conn:close()
    local probes = 0
    wait.until_true(function()
      probes = probes + 1
      send(new, "pub room probe" .. probes)
      assert.are.same({ "published probe" .. probes, "got v2 probe" .. probes }, lines_of(new.conn, 2))
      proc:wait_output("stdout", "room v2 1 probe" .. probes .. "\n")
      return proc:count("stdout", "^room v1 1 probe" .. probes .. "$") == 0
    end, 5, "generation 1's subscription closed")
    assert.are.equal(1, proc:count("stdout", "^room v1 1 both$"))
  end)

  it("closes what a failed reload's code subscribed while it loaded", function()
    local scratch = files.scratch("channel")
    local source = files.read(ROOM)
    local script = scratch:write("room.lua", source)
    local proc = server.start({ script })
    local r = connect(proc)
    local broken = source:gsub('local VERSION = "v1"', 'local VERSION = "v2"')
      :gsub("\nreturn Room\n$", '\nerror("this reload fails after subscribing")\nreturn Room\n')
    scratch:replace("room.lua", broken)
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: error: reload %(SIGHUP%) failed, still serving generation 1: [^\n]*"
      .. "this reload fails after subscribing")
    send(r, "pub room after")
    assert.are.same({ "published after", "got v1 after" }, lines_of(r.conn, 2))
    proc:wait_output("stdout", "room v1 1 after\n")
    assert.are.equal(0, proc:count("stdout", "^room v2 "))
  end)

  it("delivers a luaecho run program's own messages before it ends", function()
    local code, out, err = server.run({ "run", server.fixture("channel/program.lua") })
    assert.are.equal(0, code, err)
    assert.are.equal("published\ngot one on t\ngot two on t\n", out)
  end)

  it("refuses a bad --channel-buffer with exit code 2", function()
    for _, bad in ipairs({ "0", "12", "lots", "-5" }) do
      local code, _, err = server.run({ "--channel-buffer", bad, ROOM })
      assert.are.equal(2, code)
      assert.are.equal(("luaecho: --channel-buffer must be a number of bytes, at least 1k (suffix k, M or G "
        .. "allowed), not '%s'\nTry 'luaecho --help' for more information.\n"):format(bad), err)
    end
  end)
end)
