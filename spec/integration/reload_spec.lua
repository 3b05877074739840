-- Hot swap (issue 4): SIGHUP and --watch load the served script again while
-- connections stay open. Each spec copies its handler scripts into a fresh
-- temporary directory, serves them from there and edits them there, so the
-- repository is never touched. Every wait polls a log line or a reply with a
-- deadline; nothing sleeps for a fixed time.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local files = require "support.files"
local stream_client = require "support.stream_client"
local text = require "support.text"
local wait = require "support.wait"

-- The swap test: CLIENTS connections held open from the start, RELOADS
-- swaps by SIGHUP, NEW_PER_RELOAD more connections after each swap, and
-- every connection echoing PHASE_BYTES more after each swap.
local CLIENTS = 50
local RELOADS = 4
local NEW_PER_RELOAD = 10
local PHASE_BYTES = 16 * 1024
local PHASE_TIMEOUT = 60

-- The text of fixture spec/fixtures/reload/NAME; with `label`, prefix.lua's
-- NAME = "v1" becomes NAME = label.
local function fixture(name, label)
  local script = files.read(server.fixture("reload/" .. name))
  if label then
    local replaced, n = script:gsub('local NAME = "v1"', ('local NAME = %q'):format(label))
    assert(n == 1, "prefix.lua has no NAME line")
    script = replaced
  end
  return script
end

-- Send one line and return the reply line (without its "\n").
local function ask(conn, line)
  conn:send_all(line .. "\n")
  conn.sock:settimeout(5)
  local reply, err, partial = conn.sock:receive("*l")
  if not reply then
    error(("no reply to %q: %s (received %q)"):format(line, err, partial or ""), 2)
  end
  return reply
end

-- Every `luaecho: error:` line so far.
local function error_lines(proc)
  local lines = {}
  for line in proc:stderr():gmatch("luaecho: error: [^\n]*") do lines[#lines + 1] = line end
  return lines
end

-- Drive the streams; see support.stream_client.
local function pump(streams, sending, done, what)
  stream_client.pump(streams, sending, done, what, PHASE_TIMEOUT)
end

-- Stream until every connection has had PHASE_BYTES more echoed.
local function stream_a_phase(streams, what)
  stream_client.phase(streams, PHASE_BYTES, what, PHASE_TIMEOUT)
end

describe("hot swap #integration", function()
  local scratch, proc

  before_each(function()
    scratch = files.scratch("reload")
  end)

  after_each(cleanup.expect_clean)

  describe("by SIGHUP under load #soak", function()
    it("drops no connection and no byte while 50 clients stream through four swaps", function()
      local started = wait.now()
      local script = scratch:write("handler.lua", files.read(server.script("echo.lua")))
      proc = server.start({ script })
      local streams = {}
      local function open(n, prefix)
        for _ = 1, n do
          local id = #streams + 1
          streams[id] = stream_client.new(client.connect(proc.host, proc.port), id, prefix)
        end
      end

      open(CLIENTS, "echo:")
      stream_a_phase(streams, "every connection to echo through echo.lua")
      local in_flight = {}
      for generation = 2, 1 + RELOADS do
        local label = "v" .. generation
        local open_now = #streams
        scratch:write("handler.lua", fixture("prefix.lua", label))
        -- Every client has data on its way when the signal goes.
        local busy = 0
        for _, s in ipairs(streams) do
          s:send()
          if #s.unechoed > 0 then busy = busy + 1 end
        end
        in_flight[#in_flight + 1] = busy
        proc:signal("sighup")
        -- The clients keep sending while the server reloads.
        local kept = ("luaecho: reloaded %s (generation %d)\nluaecho: %d open connection(s) keep the code "
          .. "they started with (the script has no upgrade())\n"):format(script, generation, open_now)
        pump(streams, true, function()
          return proc:stderr():find(kept, 1, true)
        end, ("%q"):format(kept))
        -- New connections get the new script and the new generation; the
        -- old ones keep their prefix (each stream client checks its own).
        open(NEW_PER_RELOAD, ("%s@%d:"):format(label, generation))
        stream_a_phase(streams, ("every connection to echo after the swap to generation %d"):format(generation))
      end
      pump(streams, false, function()
        for _, s in ipairs(streams) do
          if #s.unechoed > 0 or s.out_pos <= #s.out then return false end
        end
        return true
      end, "every byte sent to come back")

      local bytes, dropped = 0, 0
      for _, s in ipairs(streams) do
        assert.are.equal(s.sent, s.echoed)
        bytes = bytes + s.echoed
        if s.dropped then dropped = dropped + 1 end
      end
      assert.are.equal(0, dropped)
      assert.is_false(proc:exited())
      assert.are.equal(CLIENTS, proc:count("stdout", "^Connection received!$"))
      assert.are.equal(0, proc:count("stdout", "^Connection lost!$"))
      assert.are.same({ 2, 3, 4, 5 }, proc:reloads())
      assert.are.same({}, error_lines(proc))
      print(("\nhot swap figures: %d connections (%d held open from the start, %d opened after swaps), "
        .. "%d bytes echoed in order, %d reloads by SIGHUP (connections with data in flight at each SIGHUP: %s), "
        .. "%d dropped, %.1f s"):format(#streams, CLIENTS, #streams - CLIENTS, bytes, RELOADS,
        table.concat(in_flight, ", "), dropped, wait.now() - started))
    end)
  end)

  describe("a script that fails to load", function()
    -- The scripts start-up refuses (spec/fixtures/): a reload must refuse them too.
    local broken = {
      { what = "a syntax error", file = "bad_syntax.lua", line = 6, message = "')' expected" },
      { what = "an error at top level", file = "top_level_error.lua", line = 3,
        message = "this script refuses to load" },
      { what = "no table returned", file = "no_table.lua",
        message = "must return a Protocol table or a streams handler function(reader, writer), not nil" },
    }
    for _, case in ipairs(broken) do
      it(("is logged with its file and line, and the old one keeps serving (%s)"):format(case.what), function()
        local script = scratch:write("handler.lua", fixture("prefix.lua"))
        proc = server.start({ script })
        local old = client.connect(proc.host, proc.port)
        assert.are.equal("v1@1:before", ask(old, "before"))

        scratch:write("handler.lua", files.read(server.fixture(case.file)))
        proc:signal("sighup")
        local message = proc:wait_output("stderr",
          "luaecho: error: reload %(SIGHUP%) failed, still serving generation 1: ([^\n]*)\n", 10,
          "the 'reload failed' line")
        local where = script .. ":" .. (case.line and (case.line .. ":") or "")
        assert.are.equal(where, message:sub(1, #where))
        assert.truthy(message:find(case.message, 1, true), message)

        assert.are.equal("v1@1:after", ask(old, "after"))
        local new = client.connect(proc.host, proc.port)
        assert.are.equal("v1@1:new", ask(new, "new"))
        assert.are.same({}, proc:reloads())

        -- A failed load used no generation: the next good one is 2.
        scratch:write("handler.lua", fixture("prefix.lua", "v2"))
        proc:signal("sighup")
        proc:wait_reloaded(script, 2)
        assert.are.equal("v2@2:fixed", ask(client.connect(proc.host, proc.port), "fixed"))
        assert.are.equal("v1@1:still", ask(old, "still"))
        assert.are.equal(1, #error_lines(proc))
      end)
    end
  end)

  describe("--watch", function()
    local script, old

    before_each(function()
      script = scratch:write("handler.lua", fixture("prefix.lua"))
      proc = server.start({ "--watch", script })
      old = client.connect(proc.host, proc.port)
      assert.are.equal("v1@1:a", ask(old, "a"))
    end)

    -- After a watched change made generation 2: a SIGHUP must make
    -- generation 3. Had the change caused a second reload, that one would
    -- have taken generation 3 and the SIGHUP 4.
    local function assert_reloaded_once()
      proc:wait_reloaded(script, 2)
      proc:signal("sighup")
      proc:wait_reloaded(script, 3)
      assert.are.same({ 2, 3 }, proc:reloads())
      assert.are.same({}, error_lines(proc)) -- nor was a half-written file loaded
      assert.are.equal("v2@3:b", ask(client.connect(proc.host, proc.port), "b"))
      assert.are.equal("v1@1:c", ask(old, "c"))
    end

    it("reloads once when the script is written in place", function()
      scratch:write("handler.lua", fixture("prefix.lua", "v2"), 3)
      assert_reloaded_once()
    end)

    it("reloads once when the script is replaced by a rename", function()
      scratch:replace("handler.lua", fixture("prefix.lua", "v2"))
      assert_reloaded_once()
    end)
  end)

  describe("upgrade(instance)", function()
    it("moves live connections to the new code, keeping their state, and a failure stays with its connection",
      function()
        local script = scratch:write("handler.lua", fixture("stateful.lua"))
        proc = server.start({ script })
        local a = client.connect(proc.host, proc.port)
        local stays = client.connect(proc.host, proc.port)
        local c = client.connect(proc.host, proc.port)
        assert.are.equal("old g1 n1 a", ask(a, "a"))
        assert.are.equal("old g1 n1 stay", ask(stays, "stay"))
        assert.are.equal("old g1 n1 c", ask(c, "c"))

        scratch:write("handler.lua", fixture("upgrading.lua"))
        proc:signal("sighup")
        proc:wait_reloaded(script, 2)
        proc:wait_output("stderr", "luaecho: upgraded 2 of 3 open connection%(s%) to generation 2\n")
        local host, port = stays:sockname()
        local failure = proc:wait_output("stderr",
          "luaecho: error: upgrade failed for " .. text.literal(host .. ":" .. port)
          .. ", which keeps generation 1: ([^\n]*)\n")
        assert.truthy(failure:find("this connection asked to stay", 1, true), failure)

        assert.are.equal("new g2 n2 upgraded a", ask(a, "a"))
        assert.are.equal("new g2 n2 upgraded c", ask(c, "c"))
        assert.are.equal("old g1 n2 b", ask(stays, "b"))
        assert.are.equal("new g2 n1 fresh d", ask(client.connect(proc.host, proc.port), "d"))
        assert.are.equal(1, #error_lines(proc))
      end)
  end)

  describe("modules", function()
    it("reloads a module required from the script's directory, not the host's own", function()
      scratch:write("greeting.lua", fixture("greeting.lua"))
      local script = scratch:write("handler.lua", fixture("uses_module.lua"))
      proc = server.start({ script })
      local old = client.connect(proc.host, proc.port)
      local word, host_lib = ask(old, "x"):match("^(%S+) g1 (%S+) x$")
      assert.are.equal("hello", word)

      scratch:write("greeting.lua", (fixture("greeting.lua"):gsub('"hello"', '"bonjour"')))
      proc:signal("sighup")
      proc:wait_reloaded(script, 2)
      assert.are.equal(("bonjour g2 %s y"):format(host_lib), ask(client.connect(proc.host, proc.port), "y"))
      assert.are.equal(("hello g1 %s z"):format(host_lib), ask(old, "z"))
      assert.are.same({}, error_lines(proc))
    end)
  end)
end)
