-- Canary and automatic rollback (issue 19, point 2): after a hot swap with
-- --canary SEC, only --canary-share of new connections get the new
-- generation; --rollback-errors callback errors within the window roll it
-- back, a clean window promotes it. Every spec serves the tagged fixture,
-- whose replies say which generation served ("a@1:", "b@2:"), from a
-- scratch directory, with the console and /metrics open; 20 streaming
-- clients stay on the first generation throughout and must lose nothing.
-- Every wait polls a log line or a reply with a deadline.
local canary = require "support.canary"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local prometheus = require "support.prometheus"
local server = require "support.server"
local stream_client = require "support.stream_client"
local text = require "support.text"
local wait = require "support.wait"

local CLIENTS = 20
local TIMEOUT = 30

-- Serve scratch's handler.lua (written from `settings`) with the console,
-- /metrics and `flags` (`env`: more environment).
local function start(scratch, settings, flags, env)
  local script = canary.write(scratch, settings)
  local args = { "--listen", "127.0.0.1:0", "--admin", "unix:" .. scratch:path("admin.sock"),
    "--metrics", "127.0.0.1:0" }
  for _, flag in ipairs(flags) do args[#args + 1] = flag end
  args[#args + 1] = script
  local proc = server.start_listeners(args, { env = env })
  proc:wait_admin()
  proc:wait_metrics()
  proc.script = script
  return proc
end

-- Swap to `settings` by SIGHUP and wait for the canary's line.
local function swap(proc, scratch, settings, generation)
  canary.write(scratch, settings)
  proc:signal("sighup")
  proc:wait_output("stderr", ("luaecho: generation %d is a canary for "):format(generation), 10,
    "the canary's line")
end

-- CLIENTS streaming clients on the first generation, each with a phase done.
local function open_streams(proc)
  local streams = {}
  for id = 1, CLIENTS do
    streams[id] = stream_client.new(client.connect(proc.host, proc.port), id, "a@1:")
  end
  stream_client.phase(streams, 4096, "every stream to echo through generation 1", TIMEOUT)
  return streams
end

-- Run `step` between turns of the streams (each call one step; it returns
-- true when done), the streams sending all along.
local function while_streaming(streams, step, what)
  stream_client.pump(streams, true, step, what, TIMEOUT)
end

-- Let every stream finish what it sent; nothing may be lost.
local function drain_streams(streams)
  stream_client.phase(streams, 4096, "every stream to go on echoing", TIMEOUT)
  stream_client.pump(streams, false, function()
    for _, s in ipairs(streams) do
      if #s.unechoed > 0 or s.out_pos <= #s.out then return false end
    end
    return true
  end, "every byte sent to come back", TIMEOUT)
  for _, s in ipairs(streams) do
    assert.is_falsy(s.dropped)
    assert.are.equal(s.sent, s.echoed)
  end
end

local function scrape(proc)
  local status, body = prometheus.http_get(proc.metrics_port, "/metrics", TIMEOUT)
  assert.are.equal(200, status)
  return body
end

describe("canary after a hot swap #integration", function()
  local scratch

  before_each(function()
    scratch = files.scratch("canary")
  end)

  after_each(cleanup.expect_clean)

  it("gives the share to the new generation under load, then promotes it after a clean window", function()
    local proc = start(scratch, { name = "a" }, { "--canary", "6", "--canary-share", "50" })
    local streams = open_streams(proc)
    swap(proc, scratch, { name = "b" }, 2)
    local replies, held = {}, {}
    while_streaming(streams, function()
      local reply, conn = canary.probe(proc)
      replies[#replies + 1] = reply
      held[#held + 1] = conn
      return #replies == 20
    end, "20 new connections in the window")
    local served = { ["a@1:probe"] = 0, ["b@2:probe"] = 0 }
    for _, reply in ipairs(replies) do served[reply] = (served[reply] or 0) + 1 end
    -- Every second connection, the first included: ceil(n * 50 / 100) of n.
    assert.are.same({ ["a@1:probe"] = 10, ["b@2:probe"] = 10 }, served)
    assert.are.equal("b@2:probe", replies[1])
    assert.are.equal(0, proc:count("stderr", "promoted generation"))
    local rows = canary.generations(proc)
    assert.are.same({ "active", CLIENTS + 10, "canary", 10, 0 },
      { rows[1].state, rows[1].connections, rows[2].state, rows[2].connections, rows[2].errors })

    while_streaming(streams, function()
      return proc:count("stderr", "^luaecho: promoted generation 2: 0 error%(s%) in its 6 s canary window; "
        .. "every new connection gets it$") == 1
    end, "the promotion")
    for _ = 1, 4 do
      assert.are.equal("b@2:probe", (canary.probe(proc)))
    end
    drain_streams(streams)
    rows = canary.generations(proc)
    assert.are.same({ "old", CLIENTS + 10, "active", 14 },
      { rows[1].state, rows[1].connections, rows[2].state, rows[2].connections })
    local body = scrape(proc)
    assert.are.same({ CLIENTS + 10, 14, 0 }, { canary.metric(body, "luaecho_generation_connections", 1),
      canary.metric(body, "luaecho_generation_connections", 2),
      canary.metric(body, "luaecho_generation_errors_total", 2) })
  end)

  it("rolls an error-raising candidate back within the window; the good code's connections lose nothing", function()
    local proc = start(scratch, { name = "a" }, { "--canary", "20", "--canary-share", "50" })
    local streams = open_streams(proc)
    local swapped = os.time()
    swap(proc, scratch, { name = "b", boom = "always" }, 2)
    local closed, good = 0, 0
    while_streaming(streams, function()
      local reply = canary.probe(proc)
      if reply == nil then closed = closed + 1 else good = good + 1 end
      assert.is_true(reply == nil or reply == "a@1:probe", tostring(reply))
      return proc:count("stderr", "luaecho: warning: rolled back generation 2 to 1: ") == 1
    end, "the rollback")
    local seconds, first = proc:stderr():match(
      "luaecho: warning: rolled back generation 2 to 1: 5 errors in ([%d.]+) s, first: ([^\n]+)\n")
    assert.is_truthy(seconds, proc:stderr())
    assert.is_true(tonumber(seconds) < 20)
    assert.is_true(os.time() - swapped < 20)
    assert.matches("^" .. text.literal(proc.script) .. ":%d+: boom from b$", first)
    assert.is_true(closed >= 5 and good >= 4, ("closed %d, good %d"):format(closed, good))
    -- From the rollback on, every new connection gets generation 1.
    for _ = 1, 6 do
      assert.are.equal("a@1:probe", (canary.probe(proc)))
    end
    drain_streams(streams)
    local rows, notes = canary.generations(proc)
    assert.are.same({ "active", "rolled-back" }, { rows[1].state, rows[2].state })
    assert.is_true(rows[2].errors >= 5)
    assert.are.equal(0, rows[2].connections)
    assert.matches("^# rolled back generation 2 to 1: 5 errors in [%d.]+ s, first: .*boom from b$", notes[1])
    local body = scrape(proc)
    assert.are.equal(rows[2].errors, canary.metric(body, "luaecho_generation_errors_total", 2))
    assert.are.equal(0, proc:count("stderr", "promoted generation"))
  end)

  it("rolls back a streams handler that fails: its errors count as a Protocol callback's do", function()
    local proc = start(scratch, { name = "a" }, { "--canary", "20", "--canary-share", "50" })
    scratch:write("handler.lua", [[
return function(reader)
  reader:readline()
  error("boom from streams")
end
]])
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: generation 2 is a canary for ", 10, "the canary's line")
    local closed, good = 0, 0
    local deadline = os.time() + TIMEOUT
    while proc:count("stderr", "luaecho: warning: rolled back generation 2 to 1: ") == 0 do
      assert(os.time() < deadline, "no rollback: " .. proc:stderr())
      local reply = canary.probe(proc)
      if reply == nil then closed = closed + 1 else good = good + 1 end
      assert.is_true(reply == nil or reply == "a@1:probe", tostring(reply))
    end
    assert.matches("rolled back generation 2 to 1: 5 errors in [%d.]+ s, first: [^\n]*boom from streams",
      proc:stderr())
    assert.is_true(closed >= 5 and good >= 4, ("closed %d, good %d"):format(closed, good))
    assert.are.equal("a@1:probe", (canary.probe(proc)))
  end)

  it("moves the canary's open connections back by the old Protocol's upgrade()", function()
    local proc = start(scratch, { name = "a", upgrade = true }, { "--canary", "20", "--canary-share", "50" })
    swap(proc, scratch, { name = "b", boom = "word" }, 2)
    local on_canary = {}
    while #on_canary < 7 do
      local reply, conn = canary.probe(proc)
      if reply == "b@2:probe" then on_canary[#on_canary + 1] = conn end
    end
    for i = 3, 7 do
      assert.is_nil(canary.ask(on_canary[i], "boom"))
    end
    proc:wait_output("stderr", "luaecho: rollback: moved 2 open connection%(s%) back from generation 2 to 1 by its "
      .. "upgrade%(%)\n", 10, "the connections moved back")
    assert.are.equal("a@1:again", canary.ask(on_canary[1], "again"))
    assert.are.equal("a@1:again", canary.ask(on_canary[2], "again"))
    -- Held open: 6 probes that got generation 1 and the 2 moved back.
    local rows = canary.generations(proc)
    assert.are.same({ 8, 0 }, { rows[1].connections, rows[2].connections })
  end)

  -- Both ways workers share a port: SO_REUSEPORT, and worker 1 handing
  -- sockets round (LUAECHO_NO_REUSEPORT=1).
  for _, env in ipairs({ {}, { LUAECHO_NO_REUSEPORT = "1" } }) do
    local name = "decides for every worker at once with --workers 2"
      .. (env.LUAECHO_NO_REUSEPORT and ", sockets handed round" or "")
    it(name, function()
      local proc = start(scratch, { name = "a" },
        { "--workers", "2", "--canary", "20", "--canary-share", "50", "--rollback-errors", "3" }, env)
      if env.LUAECHO_NO_REUSEPORT then
        proc:wait_output("stderr", "SO_REUSEPORT unavailable: worker 1 listens and hands connections round", 5,
          "the hand-off line")
      end
      swap(proc, scratch, { name = "b", boom = "word" }, 2)
      local on_canary = {}
      while #on_canary < 5 do
        local reply, conn = canary.probe(proc)
        if reply == "b@2:probe" then on_canary[#on_canary + 1] = conn end
      end
      for i = 3, 5 do
        assert.is_nil(canary.ask(on_canary[i], "boom"))
      end
      proc:wait_output("stderr", "luaecho: warning: rolled back generation 2 to 1: 3 errors in ", 10, "the rollback")
      -- Generation 1 has no upgrade(): the two left keep the canary's code, and say so,
      -- each worker for its own (the two workers' lines come in either order, at any time).
      local function kept()
        local n = 0
        for k in proc:stderr():gmatch("rollback: (%d+) open connection%(s%) keep generation 2's instance and code "
          .. "%(generation 1's upgrade%(%) is missing or failed%)\n") do
          n = n + tonumber(k)
        end
        return n
      end
      wait.until_true(function() return kept() >= 2 end, 10, "the rollback's notes for both kept connections")
      assert.are.equal(2, kept())
      assert.are.equal("b@2:still", canary.ask(on_canary[1], "still"))
      for _ = 1, 4 do
        assert.are.equal("a@1:probe", (canary.probe(proc)))
      end
      -- Held open: the 4 probes that got generation 1 on the way, and 4 since.
      local rows = canary.generations(proc)
      assert.are.same({ "active", 8, "rolled-back", 2, 3 },
        { rows[1].state, rows[1].connections, rows[2].state, rows[2].connections, rows[2].errors })
    end)
  end

  it("lets a reload during the window replace the canary against the same baseline", function()
    local proc = start(scratch, { name = "a" }, { "--canary", "20" })
    swap(proc, scratch, { name = "b" }, 2)
    assert.are.equal("b@2:probe", (canary.probe(proc)))
    canary.write(scratch, { name = "c" })
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: generation 3 replaces canary generation 2 before its window ended\n", 10,
      "the replacement")
    proc:wait_output("stderr", "luaecho: generation 3 is a canary for 20 s: 100%% of new connections get it, "
      .. "the others generation 1;", 10, "the new canary's line")
    assert.are.equal("c@3:probe", (canary.probe(proc)))
    local rows = canary.generations(proc)
    assert.are.same({ "active", "old", "canary" }, { rows[1].state, rows[2].state, rows[3].state })
  end)

  it("refuses a bad canary flag with one line and status 2", function()
    for _, case in ipairs({
      { { "--canary", "-1" }, "--canary must be a number of seconds from 0 (off) to 86400, not '-1'" },
      { { "--canary-share", "0" }, "--canary-share" },
      { { "--canary-share", "101" }, "--canary-share" },
      { { "--rollback-errors", "0" }, "--rollback-errors" },
      { { "--rollback-errors", "many" }, "--rollback-errors" },
    }) do
      local code, out, err = server.run(case[1])
      assert.are.same({ 2, "" }, { code, out })
      assert.matches("^luaecho: [^\n]*" .. text.literal(case[2]), err)
      assert.matches("\nTry 'luaecho %-%-help' for more information.\n$", err)
    end
  end)
end)
