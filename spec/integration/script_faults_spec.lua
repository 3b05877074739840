-- Scripts near the memory cap or with unusual control flow (issue 12): a
-- write that fails leaves nothing behind, flow-control callbacks run after
-- what caused them, --script-timeout reaches every Lua call, a shutdown
-- always ends, every failing handler ends its connection, and nothing
-- pending at exit leaks. Each spec failed on the code before its fix; the
-- memory ones under the sanitizer build scripts/test makes.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local files = require "support.files"
local wait = require "support.wait"

local function fixture(name)
  return server.fixture("defects/" .. name)
end

-- Run 'proc' to its exit after 'signals' (a list of names), a second one
-- once the first was seen (run with --log-level debug to send two);
-- returns the exit code and the seconds it took.
local function stop_with(proc, signals, timeout)
  local started = wait.now()
  for i, name in ipairs(signals) do
    proc:signal(name)
    if i == 1 and #signals > 1 then proc:wait_output("stderr", "the process ends within") end
  end
  local code = proc:wait_exit(timeout)
  return code, wait.now() - started
end

describe("scripts that misbehave #integration", function()
  after_each(cleanup.expect_clean)

  describe("a write that fails at the --lua-memory cap", function()
    it("sends only the bytes of the writes that succeeded", function()
      local proc = server.start({ "--lua-memory", "8", fixture("write_at_memory_cap.lua") })
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("go")
      local got = conn:receive_until_close(10)
      local written = proc:wait_output("stdout", "written ([%d,]*)\n")
      local expected, count = {}, 0
      for i in written:gmatch("%d+") do
        expected[#expected + 1] = string.rep(string.char(64 + tonumber(i)), 5000)
        count = count + 1
      end
      assert.is_true(count < 20, "every write succeeded: the heap never reached the cap")
      local want = table.concat(expected)
      assert.are.equal(#want, #got)
      assert.is_true(want == got, "the peer received bytes that no successful write sent")
    end)
  end)

  describe("flow-control callbacks", function()
    local proc

    before_each(function()
      proc = server.start({ "--max-write-buffer", "0", fixture("flush_order.lua") })
    end)

    -- A connection with a backlog queued behind a peer that does not read.
    local function backlogged()
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("fill")
      local queued = tonumber(proc:wait_output("stdout", "queued (%d+)\n"))
      assert.is_true(queued > 0, "no backlog: the kernel took all 8 MiB")
      return conn
    end

    it("run pause_writing after the write that crossed the mark, so its writes follow it", function()
      local conn = backlogged()
      conn:send_all("records")
      proc:wait_output("stdout", "records written\n")
      local got = conn:receive_until_close(20)
      proc:wait_output("stdout", "pause write ok\n")
      local at, _, n = got:find("pause after record (%d+)\n")
      assert.is_truthy(at, "no marker from pause_writing in the stream")
      local head = ("record %s\n"):format(n)
      local record = got:sub(at - 5000, at - 1)
      assert.are.equal(head, record:sub(1, #head), "the marker does not follow record " .. n)
      assert.are.equal(8 * 1024 * 1024 + 20 * 5000 + #("pause after record " .. n .. "\n"), #got)
    end)

    it("do not run pause_writing inside close(): the graceful close stays graceful", function()
      local conn = backlogged()
      conn:send_all("close")
      proc:wait_output("stdout", "closed\n")
      local got = conn:receive_until_close(20)
      assert.are.equal(8 * 1024 * 1024 + 5000, #got)
      assert.are.equal("nil", proc:wait_output("stdout", "connection_lost ([^\n]*)\n"))
      assert.are.equal(0, proc:count("stdout", "^pause_writing"))
    end)
  end)

  describe("--script-timeout", function()
    it("interrupts a __close handler run when a failed streams task is closed", function()
      local proc = server.start({ "--script-timeout", "200", fixture("close_loops.lua") })
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("x")
      conn:receive_until_close(5)
      proc:wait_output("stderr", "script timeout: ran longer than 200 ms")
      local code, took = stop_with(proc, { "sigterm" }, 5)
      assert.are.equal(0, code)
      assert.is_true(took < 3, ("took %.1f s to stop"):format(took))
    end)

    it("interrupts pause_writing reached from a write inside coroutine.wrap", function()
      local proc = server.start({ "--script-timeout", "200", fixture("pause_loops.lua") })
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("x")
      local lost = proc:wait_output("stdout", "connection_lost ([^\n]*)\n")
      assert.matches("script timeout", lost, 1, true)
      local code = stop_with(proc, { "sigterm" }, 5)
      assert.are.equal(0, code)
    end)
  end)

  describe("a shutdown", function()
    -- A worker stuck in a C call cannot run its loop: the guard ends the process.
    local function stuck_in_c(args)
      local full = { "--script-timeout", "200" }
      for _, a in ipairs(args) do full[#full + 1] = a end
      full[#full + 1] = fixture("slow_c_call.lua")
      local proc = server.start(full)
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("x")
      proc:wait_output("stdout", "searching\n")
      return proc
    end

    it("ends within --shutdown-timeout plus 1 s while a C call runs", function()
      local proc = stuck_in_c({ "--shutdown-timeout", "1" })
      local code, took = stop_with(proc, { "sigterm" }, 6)
      assert.are.equal(1, code)
      assert.is_true(took >= 1.9 and took < 4, ("took %.1f s"):format(took))
      assert.matches("luaecho: error: still running 2 s after SIGTERM %(%-%-shutdown%-timeout 1 s, then 1 s to finish%)"
        .. ", and a callback is still stuck where %-%-script%-timeout cannot interrupt it", proc:stderr())
    end)

    it("ends within 1 s of a second signal while a C call runs", function()
      local proc = stuck_in_c({ "--shutdown-timeout", "60", "--log-level", "debug" })
      local code, took = stop_with(proc, { "sigint", "sigint" }, 5)
      assert.are.equal(1, code)
      assert.is_true(took < 3, ("took %.1f s"):format(took))
      assert.matches("luaecho: error: still running 1 s after a second SIGINT", proc:stderr(), 1, true)
    end)

    it("ends when a __gc finalizer loops at exit", function()
      local proc = server.start({ "--shutdown-timeout", "1", fixture("gc_loops.lua") })
      local conn = client.connect(proc.host, proc.port)
      assert.are.equal("hello\n", conn:receive_exactly(6))
      local code, took = stop_with(proc, { "sigterm" }, 6)
      assert.are.equal(1, code)
      assert.is_true(took < 4, ("took %.1f s"):format(took))
      assert.matches("still running 2 s after SIGTERM", proc:stderr(), 1, true)
    end)

    -- With --watch the script is also looked at in a state of its own before
    -- any worker starts, and that state is closed at once: its finalizer
    -- must not hang the start.
    it("starts, and ends, with --watch when a __gc finalizer loops", function()
      local proc = server.start({ "--watch", "--shutdown-timeout", "1", fixture("gc_loops.lua") })
      local conn = client.connect(proc.host, proc.port)
      assert.are.equal("hello\n", conn:receive_exactly(6))
      local code, took = stop_with(proc, { "sigterm" }, 6)
      assert.are.equal(1, code)
      assert.is_true(took < 4, ("took %.1f s"):format(took))
    end)

    it("ends a luaecho run program whose __gc loops at exit, on a signal", function()
      local proc = server.spawn({ "run", "--shutdown-timeout", "1", fixture("gc_loops_at_exit.lua") })
      proc:wait_output("stdout", "done\n")
      local code, took = stop_with(proc, { "sigterm" }, 6)
      assert.are.equal(1, code)
      assert.is_true(took < 4, ("took %.1f s"):format(took))
      assert.matches("still running 2 s after SIGTERM", proc:stderr(), 1, true)
    end)

    it("closes the timers still pending, without a leak", function()
      local proc = server.start({ fixture("pending_timers.lua") })
      local conn = client.connect(proc.host, proc.port)
      assert.are.equal("waiting\n", conn:receive_exactly(8))
      local code = stop_with(proc, { "sigterm" }, 5)
      assert.are.equal(0, code) -- a LeakSanitizer report exits 86
      assert.are.equal(0, proc:count("stdout", "never"))
    end)
  end)

  describe("a streams handler whose error's __tostring fails", function()
    for _, case in ipairs({ { "m", "at once" }, { "s", "after a sleep" } }) do
      it("still has its connection aborted when it fails " .. case[2], function()
        local proc = server.start({ fixture("bad_tostring.lua") })
        local conn = client.connect(proc.host, proc.port)
        conn:send_all(case[1])
        assert.are.equal("", conn:receive_until_close(5))
        assert.matches("luaecho: error: stream handler failed for 127.0.0.1:%d+: %(error object is a table "
          .. "value whose __tostring failed%)", proc:wait_output("stderr", "(luaecho: error: [^\n]*)"))
      end)
    end
  end)

  describe("a reload that fails", function()
    it("leaves the modules the script required as they were", function()
      local scratch = files.scratch("faults")
      local script = scratch:write("lazy.lua", files.read(fixture("lazy/lazy.lua")))
      scratch:write("lazy_state.lua", files.read(fixture("lazy/lazy_state.lua")))
      local proc = server.start({ script })
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("x")
      assert.are.equal("v1 1\n", conn:receive_exactly(5))
      scratch:write("lazy_state.lua", 'return { version = "v2", count = 0 }\n')
      scratch:write("lazy.lua", "local broken = = 1\n")
      proc:signal("sighup")
      proc:wait_output("stderr", "reload %(SIGHUP%) failed, still serving generation 1")
      conn:send_all("x")
      assert.are.equal("v1 2\n", conn:receive_exactly(5))
    end)
  end)

  describe("a peer that resets before it is accepted", function()
    it("is still known by its address", function()
      local proc = server.start({ fixture("busy_first.lua") })
      client.connect(proc.host, proc.port)
      local early = client.connect(proc.host, proc.port)
      local _, port = early:sockname()
      early:reset()
      assert.are.same({ "127.0.0.1", tostring(port) },
        { proc:wait_output("stdout", "peer (%S+) (" .. port .. ")\n") })
    end)
  end)

  describe("os.exit() in a served handler", function()
    it("is an error for its connection, with a hint, and the server carries on", function()
      local proc = server.start({ fixture("exits.lua") })
      local victim = client.connect(proc.host, proc.port)
      victim:send_all("exit")
      victim:receive_until_close(5)
      assert.matches("os.exit() would end every worker at once, with no connection_lost: close the server",
        proc:wait_output("stdout", "connection_lost ([^\n]*)\n"), 1, true)
      local bystander = client.connect(proc.host, proc.port)
      bystander:send_all("still here")
      assert.are.equal("still here", bystander:receive_exactly(10))
    end)
  end)

  describe("a peer that resets a streams handler mid-read", function()
    local scripts = {
      { "examples/line_echo.lua", "Type a line; an empty line or Ctrl-] quit ends.\r\n", "hello\n" },
      { "examples/stream_echo.lua", "", "hello" },
    }
    for _, case in ipairs(scripts) do
      it("is not logged as a script error by " .. case[1], function()
        local proc = server.start({ "--log-level", "debug", server.script(case[1]) })
        local conn = client.connect(proc.host, proc.port)
        assert.are.equal(case[2], conn:receive_exactly(#case[2]))
        conn:send_all(case[3])
        assert.are.equal(case[3], conn:receive_exactly(#case[3]))
        conn:send_all("half a line")
        conn:reset()
        proc:wait_output("stderr", "luaecho: debug: stream handler for 127%.0%.0%.1:%d+ ended, the peer gone: ")
        assert.are.equal(0, proc:count("stderr", "^luaecho: error:"))
      end)
    end
  end)
end)
