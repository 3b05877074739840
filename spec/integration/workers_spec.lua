-- Several workers (issue 6): `--workers N` runs N threads, each with its own
-- loop, Lua state and copy of the script, all listening on one port with
-- SO_REUSEPORT. These specs check that the kernel's spread reaches every
-- worker, and that what holds for one worker holds for the process: echo,
-- server:close(), SIGTERM/SIGINT, hot swap, errors, print(), the connection
-- limit. The fixtures under spec/fixtures/workers/ tag each connection with
-- the number of the worker serving it, so a spec can keep connecting until it
-- has seen the workers it needs. Nothing sleeps for a fixed time: every wait
-- polls a reply, a log line or an exit, with a deadline.
local uv = require "luv"
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local files = require "support.files"
local text = require "support.text"
local wait = require "support.wait"

-- The fixtures' first bytes on every connection: the worker number as three
-- digits and a newline, "002\n".
local TAG_LEN = 4

local function fixture(name)
  return server.fixture("workers/" .. name)
end

-- CPUs this process may run on (its affinity), as luaecho should count them.
local function cpu_count()
  local pipe = assert(io.popen("nproc"))
  local n = pipe:read("n")
  pipe:close()
  return assert(math.tointeger(n), "nproc gave no number")
end

-- Read the fixture's tag from `conn`: the worker number, or nil and how the
-- connection ended when the server closed it without a word.
local function read_tag(conn, timeout)
  local deadline = wait.now() + (timeout or 5)
  local got = ""
  while #got < TAG_LEN do
    local left = deadline - wait.now()
    if left <= 0 then error(("no tag within %gs, got %q"):format(timeout or 5, got), 2) end
    conn.sock:settimeout(left)
    local data, err, partial = conn.sock:receive(TAG_LEN - #got)
    got = got .. (data or partial or "")
    if err == "closed" or (err and err:find("reset", 1, true)) then
      if got == "" then return nil, err end
      error(("connection ended (%s) inside the tag %q"):format(err, got), 2)
    elseif err and err ~= "timeout" then
      error("reading the tag: " .. err, 2)
    end
  end
  local worker = math.tointeger(tonumber(got:match("^(%d%d%d)\n$")))
  if not worker then error(("not a worker tag: %q"):format(got), 2) end
  return worker
end

-- Connect and read the tag; returns a record { conn, worker, port } where
-- port is our side's port, the peer port the fixtures print.
local function connect_tagged(proc)
  local conn = client.connect(proc.host, proc.port)
  local worker = read_tag(conn)
  if not worker then error("the server closed a new connection without tagging it\n" .. proc:describe(), 2) end
  local _, port = conn:sockname()
  return { conn = conn, worker = worker, port = port }
end

-- How the connections seen so far were spread, for failure messages.
local function spread_text(counts, n)
  local parts = {}
  for w = 1, n do parts[w] = ("worker %d: %d"):format(w, counts[w] or 0) end
  return table.concat(parts, ", ")
end

-- Connections a spec may open to reach every worker it needs. The kernel
-- spreads them evenly, so a worker missing after this many is not there.
local function max_attempts(n, each)
  return 64 * n * each
end

-- Connect until each of workers 1..n serves at least `each` connections,
-- keeping all of them open. Returns { all = records in order,
-- by_worker = { [w] = records } }. Fails on a worker number outside 1..n,
-- and after `timeout` seconds or max_attempts() connections.
local function hold(proc, n, each, timeout)
  local held = { all = {}, by_worker = {} }
  local counts = {}
  for w = 1, n do held.by_worker[w] = {} end
  local deadline = wait.now() + (timeout or 10)
  local missing = n
  while missing > 0 do
    if #held.all >= max_attempts(n, each) or wait.now() > deadline then
      error(("wanted %d connection(s) on each of %d workers; %d connections gave %s"):format(
        each, n, #held.all, spread_text(counts, n)), 2)
    end
    local record = connect_tagged(proc)
    local mine = held.by_worker[record.worker]
    if not mine then error(("worker %d answered; expected 1 to %d"):format(record.worker, n), 2) end
    held.all[#held.all + 1] = record
    mine[#mine + 1] = record
    counts[record.worker] = #mine
    if #mine == each then missing = missing - 1 end
  end
  return held
end

-- Every record's connection echoes a line naming it, all at once.
local function assert_all_echo(records, timeout)
  local jobs = {}
  for i, record in ipairs(records) do
    jobs[i] = { conn = record.conn, send = ("still here %d\n"):format(record.port) }
    jobs[i].expect = #jobs[i].send
  end
  local received = client.exchange(jobs, timeout)
  for i, job in ipairs(jobs) do assert.are.equal(job.send, received[i]) end
end

-- True once a connection to the server is refused; one that still gets
-- through is closed at once.
local function refused(proc)
  local ok, conn = pcall(client.connect, proc.host, proc.port, 2)
  if ok then conn:close() end
  return not ok
end

-- version.lua with VERSION "v1" replaced by `version`; with `claim` (a
-- path), CLAIM set to it, so the script loads in one worker only.
local function version_script(version, claim)
  local script, n = files.read(fixture("version.lua"))
    :gsub('local VERSION = "v1"', ('local VERSION = %q'):format(version))
  assert(n == 1, "version.lua has no VERSION line")
  if claim then
    script, n = script:gsub("local CLAIM = nil", ("local CLAIM = %q"):format(claim))
    assert(n == 1, "version.lua has no CLAIM line")
  end
  return script
end

-- The version a connection's code answers with ("v1:" .. probe).
local function version_of(conn)
  conn:send_all("?")
  local reply = conn:receive_exactly(4)
  return assert(reply:match("^(v%w):%?$"), ("not a version reply: %q"):format(reply))
end

-- Open new connections until each of workers 1..n has answered one, and
-- return every { worker, version } seen, in order; each is closed after.
local function versions_of_new_connections(proc, n)
  local seen, counts = {}, {}
  local deadline = wait.now() + 10
  local missing = n
  while missing > 0 do
    if #seen >= max_attempts(n, 1) or wait.now() > deadline then
      error(("wanted new connections on all %d workers; %d connections gave %s"):format(
        n, #seen, spread_text(counts, n)), 2)
    end
    local record = connect_tagged(proc)
    seen[#seen + 1] = { worker = record.worker, version = version_of(record.conn) }
    record.conn:close()
    counts[record.worker] = (counts[record.worker] or 0) + 1
    if counts[record.worker] == 1 then missing = missing - 1 end
  end
  return seen
end

-- The `seen` list with every version replaced by `version`, for one
-- assert.are.same that shows the whole list when one differs.
local function all_at(seen, version)
  local expected = {}
  for i, s in ipairs(seen) do expected[i] = { worker = s.worker, version = version } end
  return expected
end

local RELOADED = "%%f[^\n\0]luaecho: reloaded [^\n]* %%(generation %d%%)\n"
local RELOAD_FAILED = "%%f[^\n\0]luaecho: error: reload %%(SIGHUP%%) failed, still serving generation %d: ([^\n]*)"

describe("luaecho --workers #integration", function()
  after_each(cleanup.expect_clean)

  describe("start-up", function()
    it("says once that two workers share the port, after the one listening line", function()
      local proc = server.start({ "--workers", "2", fixture("tagged_echo.lua") })
      proc:wait_output("stderr", "luaecho: 2 workers")
      local stderr = proc:stderr()
      assert.are.equal(1, proc:count("stderr", "^luaecho: listening on "))
      assert.are.equal(1, proc:count("stderr", "^luaecho: 2 workers, sharing the port %(SO_REUSEPORT%)$"))
      assert.is_true(stderr:find("listening on", 1, true) < stderr:find("2 workers", 1, true))
    end)

    it("serves every connection from worker 1, without a word about workers, by default", function()
      local proc = server.start({ fixture("tagged_echo.lua") })
      for _ = 1, 10 do
        local record = connect_tagged(proc)
        assert.are.equal(1, record.worker)
        record.conn:close()
      end
      assert.are.equal(0, proc:count("stderr", "workers"))
    end)

    it("starts one worker per CPU it may run on with --workers 0", function()
      local cpus = cpu_count()
      local proc = server.start({ "--workers", "0", fixture("tagged_echo.lua") })
      -- Every worker from 1 to cpus answers, and none numbered above.
      assert_all_echo(hold(proc, cpus, 1, 20).all)
      if cpus > 1 then
        proc:wait_output("stderr", "luaecho: %d+ workers")
        assert.are.equal(1, proc:count("stderr", ("^luaecho: %d workers, sharing the port"):format(cpus)))
      else
        assert.are.equal(0, proc:count("stderr", "workers"))
      end
    end)

    local bad_values = { "-1", "abc", "", "2x", "1.5", "1000000", "99999999999999999999999" }
    for _, value in ipairs(bad_values) do
      it(("refuses --workers %q with exit 2 and one line naming it"):format(value), function()
        local code, out, err = server.run({ "--workers", value, "--port", "0" })
        assert.are.equal(2, code)
        assert.are.equal("", out)
        local first = err:match("^[^\n]*")
        assert.matches("^luaecho: [^\n]*%-%-workers", first)
        assert.is_truthy(first:find("'" .. value .. "'", 1, true), "the line does not quote the value: " .. first)
        assert.is_nil(err:find("listening on", 1, true))
      end)
    end

    it("refuses --workers=abc (one word) with exit 2", function()
      local code, _, err = server.run({ "--workers=abc", "--port", "0" })
      assert.are.equal(2, code)
      assert.matches("^luaecho: [^\n]*%-%-workers[^\n]*'abc'", err)
    end)

    it("refuses --workers without a value with exit 2", function()
      local code, _, err = server.run({ "--port", "0", "--workers" })
      assert.are.equal(2, code)
      assert.matches("^luaecho: [^\n]*%-%-workers", err)
    end)

    it("exits 1 with the file and line when the script cannot load", function()
      local code, _, err = server.run({ "--workers", "2", "--port", "0", server.fixture("bad_syntax.lua") })
      assert.are.equal(1, code)
      assert.matches("luaecho: error: [^\n]*bad_syntax%.lua:%d+:", err)
      assert.is_nil(err:find("listening on", 1, true))
    end)

    it("exits 1 when a single-worker luaecho already listens on the port", function()
      local first = server.start({ fixture("tagged_echo.lua") })
      local code, _, err = server.run({ "--workers", "2", "--port", tostring(first.port), fixture("tagged_echo.lua") })
      assert.are.equal(1, code)
      assert.matches("luaecho: error: ", err)
    end)

    it("exits 1 when another luaecho with workers already listens on the port", function()
      local first = server.start({ "--workers", "2", fixture("tagged_echo.lua") })
      local second = server.spawn({ "--workers", "2", "--port", tostring(first.port), fixture("tagged_echo.lua") })
      wait.until_true(function()
        return second:exited() or second:stderr():find("listening on", 1, true)
      end, 5, "the second luaecho to exit or listen")
      assert.is_true(second:exited(), "a second luaecho took a share of a port in use:\n" .. second:describe())
      assert.are.equal(1, second.code)
      assert.matches("luaecho: error: ", second:stderr())
    end)
  end)

  describe("spreading connections", function()
    it("spreads 200 clients over both workers and echoes every byte", function()
      local clients = 200
      local proc = server.start({ "--workers", "2", fixture("tagged_echo.lua") })
      local conns = client.connect_many(proc.host, proc.port, clients)
      local jobs = {}
      for i, conn in ipairs(conns) do
        local data = text.payload(1 + (i * 7919) % 16384, i)
        jobs[i] = { conn = conn, send = data, expect = TAG_LEN + #data }
      end
      local received = client.exchange(jobs, 60)
      local served, wrong = { 0, 0 }, {}
      for i, job in ipairs(jobs) do
        local worker = math.tointeger(tonumber(received[i]:match("^(%d%d%d)\n")))
        if served[worker] and received[i]:sub(TAG_LEN + 1) == job.send then
          served[worker] = served[worker] + 1
        else
          wrong[#wrong + 1] = ("client %d: tag %q, %d bytes back for %d sent"):format(
            i, received[i]:sub(1, TAG_LEN), #received[i] - TAG_LEN, #job.send)
        end
      end
      assert.are.same({}, wrong)
      assert.is_true(served[1] > 0 and served[2] > 0,
        ("not spread: worker 1 served %d, worker 2 served %d"):format(served[1], served[2]))
      -- Each worker's script saw exactly the connections the clients saw it tag.
      for worker = 1, 2 do
        assert.are.equal(served[worker], proc:count("stdout", ("^worker %d %%d+ connection_made$"):format(worker)))
      end
    end)

    it("spreads connections over both workers on IPv6 too", function()
      local proc = server.start({ "-H", "::1", "--workers", "2", fixture("tagged_echo.lua") })
      assert.are.equal("::1", proc.host)
      assert_all_echo(hold(proc, 2, 2).all)
    end)
  end)

  describe("module-level state", function()
    it("belongs to one worker: each worker's copy counts only its own connections", function()
      local proc = server.start({ "--workers", "2", fixture("counter.lua") })
      local counts, expected = { {}, {} }, { {}, {} }
      for _ = 1, 40 do
        local record = connect_tagged(proc)
        local count = assert(math.tointeger(tonumber(record.conn:receive_exactly(7):match("^(%d+)\n$"))))
        local mine = counts[record.worker]
        mine[#mine + 1] = count
        expected[record.worker][#mine] = #mine
        record.conn:close()
      end
      assert.are.same(expected, counts)
      assert.is_true(#counts[1] > 0 and #counts[2] > 0, "not spread")
    end)
  end)

  describe("server:close() in one worker", function()
    for _, closer in ipairs({ 1, 2 }) do
      it(("stops every worker accepting when worker %d closes, and ends the process with 0 "
          .. "once the last connection is gone"):format(closer), function()
        local proc = server.start({ "--workers", "2", fixture("closer.lua") })
        local held = hold(proc, 2, 1)
        local mine, other = held.by_worker[closer][1], held.by_worker[3 - closer][1]
        for _, record in ipairs(held.all) do
          if record ~= mine and record ~= other then record.conn:close() end
        end
        proc:wait_count("stdout", "connection_lost$", #held.all - 2)
        mine.conn:send_all("close-server\n")
        assert.are.equal("closed\n", mine.conn:receive_exactly(7))
        -- SO_REUSEPORT hands a connection to any socket of the group still
        -- listening, so one refused connection means none listens.
        wait.until_true(function() return refused(proc) end, 5, "a refused connection")
        assert.are.equal(1, proc:count("stdout", "closed the server$"))
        assert_all_echo({ mine, other })
        mine.conn:close()
        proc:wait_count("stdout", ("^worker %d %d connection_lost$"):format(closer, mine.port), 1)
        -- The other worker's connection keeps the process up, and is served.
        assert_all_echo({ other })
        assert.is_false(proc:exited())
        assert.is_true(refused(proc))
        other.conn:close()
        assert.are.equal(0, (proc:wait_exit(5)))
        assert.are.equal(1, proc:count("stdout", ("^worker %d %d connection_lost$"):format(3 - closer, other.port)))
      end)
    end
  end)

  describe("shutdown", function()
    for _, signal in ipairs({ "SIGTERM", "SIGINT" }) do
      it("closes every connection on both workers and exits 0 within the shutdown timeout on " .. signal, function()
        local proc = server.start({ "--workers", "2", "--shutdown-timeout", "3", fixture("tagged_echo.lua") })
        local held = hold(proc, 2, 5)
        assert_all_echo(held.all)
        proc:signal(signal:lower())
        assert.are.equal(0, (proc:wait_exit(3 + 2)))
        for _, record in ipairs(held.all) do
          local pattern = ("^worker %d %d connection_lost "):format(record.worker, record.port)
          assert.are.equal(1, proc:count("stdout", pattern), "connection_lost lines matching " .. pattern)
          local rest, how = record.conn:receive_until_close()
          assert.are.equal("", rest)
          assert.are.equal("closed", how)
        end
        assert.are.equal(#held.all, proc:count("stdout", " connection_made$"))
        assert.are.equal(#held.all, proc:count("stdout", " connection_lost "))
        assert.matches("%f[^\n\0]luaecho: shutting down %(" .. signal .. "%)", proc:stderr())
      end)
    end

    it("aborts what cannot flush in both workers once the shutdown timeout expires, and exits 0", function()
      local timeout = 1
      local proc = server.start({ "--workers", "2", "--shutdown-timeout", tostring(timeout), fixture("flood.lua") })
      local held = hold(proc, 2, 1)
      local stuck = { held.by_worker[1][1], held.by_worker[2][1] }
      for _, record in ipairs(stuck) do record.conn:send_all("flood\n") end
      for _, record in ipairs(stuck) do
        proc:wait_count("stdout", ("^worker %d %d flooding %%d+$"):format(record.worker, record.port), 1)
      end
      local start = wait.now()
      proc:signal("sigterm")
      assert.are.equal(0, (proc:wait_exit(timeout + 3)))
      assert.is_true(wait.now() - start >= timeout / 2, "exited before trying to flush")
      assert.are.equal(#held.all, proc:count("stdout", " connection_lost$"))
    end)

    it("logs the shutdown once for the process, not once per worker", function()
      local proc = server.start({ "--workers", "2", fixture("tagged_echo.lua") })
      hold(proc, 2, 1)
      proc:signal("sigterm")
      assert.are.equal(0, (proc:wait_exit(5)))
      assert.are.equal(1, proc:count("stderr", "^luaecho: shutting down %(SIGTERM%)"), proc:stderr())
    end)
  end)

  describe("hot swap", function()
    local scratch, script, proc

    -- Serve version.lua ("v1") from a scratch directory with `extra` flags,
    -- and hold one connection on each worker, both answering v1.
    local function serve_v1(extra)
      scratch = files.scratch("workers")
      script = scratch:replace("served.lua", version_script("v1"))
      local args = { "--workers", "2" }
      for _, flag in ipairs(extra or {}) do args[#args + 1] = flag end
      args[#args + 1] = script
      proc = server.start(args)
      local held = hold(proc, 2, 1)
      for _, record in ipairs(held.all) do assert.are.equal("v1", version_of(record.conn)) end
      return held
    end

    it("reaches both workers on SIGHUP: new connections on each get the new code", function()
      local held = serve_v1()
      files.replace(script, version_script("v2"))
      proc:signal("sighup")
      proc:wait_output("stderr", RELOADED:format(2))
      local seen = versions_of_new_connections(proc, 2)
      assert.are.same(all_at(seen, "v2"), seen)
      -- Open connections keep the code they started with (no upgrade()).
      for _, record in ipairs(held.all) do assert.are.equal("v1", version_of(record.conn)) end
      assert.are.equal(1, proc:count("stderr", "^luaecho: reloaded "))
      assert.matches("%f[^\n\0]luaecho: reloaded " .. text.literal(script) .. " %(generation 2%)\n", proc:stderr())
    end)

    it("reaches both workers when --watch sees the script replaced", function()
      serve_v1({ "--watch" })
      files.replace(script, version_script("v2"))
      proc:wait_output("stderr", RELOADED:format(2), 10)
      local seen = versions_of_new_connections(proc, 2)
      assert.are.same(all_at(seen, "v2"), seen)
    end)

    it("keeps the old code in both workers when the new script does not compile", function()
      serve_v1()
      files.replace(script, "local broken = = 1\nreturn {}\n")
      proc:signal("sighup")
      local why = proc:wait_output("stderr", RELOAD_FAILED:format(1))
      assert.matches("served%.lua:1:", why)
      local seen = versions_of_new_connections(proc, 2)
      assert.are.same(all_at(seen, "v1"), seen)
      assert.are.equal(0, proc:count("stderr", "^luaecho: reloaded "))
    end)

    it("leaves every worker's modules as they were when the new script loads in only one of them", function()
      scratch = files.scratch("workers")
      scratch:replace("wversion.lua", 'return "v1"\n')
      script = scratch:replace("served.lua", files.read(fixture("lazy_version.lua")))
      proc = server.start({ "--workers", "2", script })
      local held = hold(proc, 2, 1)
      for _, record in ipairs(held.all) do assert.are.equal("v1", version_of(record.conn)) end
      -- The candidate loads the new module at once, then claims: one worker
      -- prepares it (with wversion v2), the other fails, and both discard it.
      scratch:replace("wversion.lua", 'return "v2"\n')
      local claim = scratch:replace("claim", "")
      local candidate = version_script("vX", claim)
      files.replace(script, 'require "wversion"\n' .. candidate)
      proc:signal("sighup")
      proc:wait_output("stderr", RELOAD_FAILED:format(1))
      assert.is_truthy(uv.fs_stat(claim .. ".taken"))
      for _, record in ipairs(held.all) do assert.are.equal("v1", version_of(record.conn)) end
    end)

    it("keeps the old code in both workers when the new script loads in only one of them", function()
      serve_v1()
      local claim = scratch:replace("claim", "")
      files.replace(script, version_script("vX", claim))
      proc:signal("sighup")
      local why = proc:wait_output("stderr", RELOAD_FAILED:format(1))
      assert.matches("another worker claimed", why)
      -- One worker did load it: the claim was taken.
      assert.is_nil(io.open(claim, "rb"))
      assert.is_truthy(uv.fs_stat(claim .. ".taken"))
      local seen = versions_of_new_connections(proc, 2)
      assert.are.same(all_at(seen, "v1"), seen)
      -- A failed swap does not use up a generation; the next good one is 2.
      files.replace(script, version_script("v2"))
      proc:signal("sighup")
      proc:wait_output("stderr", RELOADED:format(2))
      seen = versions_of_new_connections(proc, 2)
      assert.are.same(all_at(seen, "v2"), seen)
    end)
  end)

  describe("a script error", function()
    for _, victim in ipairs({ 1, 2 }) do
      it(("in worker %d's connection leaves every other connection, in both workers, untouched"):format(victim),
        function()
          local proc = server.start({ "--workers", "2", fixture("boom.lua") })
          local held = hold(proc, 2, 3)
          local target = held.by_worker[victim][1]
          target.conn:send_all("boom")
          local rest = target.conn:receive_until_close()
          assert.are.equal("", rest)
          proc:wait_count("stdout", ("^worker %d %d connection_lost .*boom in worker %d"):format(
            victim, target.port, victim), 1)
          local logged = "%%f[^\n\0]luaecho: error: data_received failed for [^\n]*:%d: [^\n]*boom in worker %d"
          assert.matches(logged:format(target.port, victim), proc:stderr())
          local others = {}
          for _, record in ipairs(held.all) do
            if record ~= target then others[#others + 1] = record end
          end
          assert_all_echo(others)
          assert.are.equal(1, proc:count("stdout", "connection_lost"))
          -- Both workers still take new connections.
          assert_all_echo(hold(proc, 2, 1).all)
          assert.are.equal(1, proc:count("stdout", "connection_lost"))
        end)
    end
  end)

  describe("print()", function()
    it("never mixes lines printed by both workers at once, however long", function()
      local lines_each = 50
      local proc = server.start({ "--workers", "2", fixture("printer.lua") })
      local held = hold(proc, 2, 4)
      local jobs = {}
      for i, record in ipairs(held.all) do
        jobs[i] = { conn = record.conn, send = ("print %d\n"):format(lines_each), expect = 5 }
      end
      local received = client.exchange(jobs, 60)
      for i = 1, #jobs do assert.are.equal("done\n", received[i]) end
      -- Every reply was written after its lines were printed, whole.
      local stdout = proc:stdout()
      assert.are.equal("\n", stdout:sub(-1), "stdout does not end with a whole line")
      local bad, seen, by_worker = {}, {}, { 0, 0 }
      for line in stdout:gmatch("([^\n]*)\n") do
        local worker, port, i, len, body = line:match("^worker (%d+) conn (%d+) line (%d+) len (%d+) (%l*)$")
        local whole = worker and #body == tonumber(len) and body == body:sub(1, 1):rep(#body)
        local key = whole and (port .. " " .. i)
        if not whole or seen[key] or not by_worker[tonumber(worker)] then
          if #bad < 5 then bad[#bad + 1] = ("%d bytes: %q"):format(#line, line:sub(1, 120)) end
        else
          seen[key] = true
          by_worker[tonumber(worker)] = by_worker[tonumber(worker)] + 1
        end
      end
      assert.are.same({}, bad)
      local counts = {}
      for w = 1, 2 do counts[w] = #held.by_worker[w] * lines_each end
      assert.are.same(counts, by_worker)
    end)
  end)

  describe("--max-connections", function()
    it("counts connections across both workers", function()
      local limit = 4
      local proc = server.start({ "--workers", "2", "--max-connections", tostring(limit),
        fixture("tagged_echo.lua") })
      local open = {}
      for i = 1, limit do open[i] = connect_tagged(proc) end
      -- 20 more land on both workers; every one is closed untagged.
      local extra_served = {}
      for _ = 1, 20 do
        local conn = client.connect(proc.host, proc.port)
        local worker = read_tag(conn)
        if worker then extra_served[#extra_served + 1] = worker end
        conn:close()
      end
      assert.are.same({}, extra_served)
      assert.matches("luaecho: warning: [^\n]*limit", proc:stderr())
      assert.are.equal(limit, proc:count("stdout", " connection_made$"))
      assert_all_echo(open)
      -- Once one goes, one more is let in, whichever worker takes it, and
      -- then no more.
      open[1].conn:close()
      proc:wait_count("stdout", ("^worker %d %d connection_lost "):format(open[1].worker, open[1].port), 1)
      local replacement = wait.until_true(function()
        local conn = client.connect(proc.host, proc.port)
        if read_tag(conn) then return conn end
        conn:close()
      end, 5, "a connection let in after one closed", true)
      local conn = client.connect(proc.host, proc.port)
      assert.is_nil(read_tag(conn))
      conn:close()
      assert.are.equal(limit + 1, proc:count("stdout", " connection_made$"))
      replacement:close()
    end)
  end)
end)
