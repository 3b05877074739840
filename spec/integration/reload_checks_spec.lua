-- Checks before the swap (issue 19, point 1): a candidate's
-- selftest(testing) and --reload-check CMD run before any worker loads it;
-- a failing one rejects the reload, the old generation keeps serving, and
-- the log, the console's answer and luaecho_reloads_total{result="rejected"}
-- say so. Each spec serves a copy of its fixture from a scratch directory,
-- with the admin console on a Unix socket there and metrics on a free
-- port, and drives reloads through the console. Every wait has a deadline.
local cleanup = require "support.cleanup"
local client = require "support.client"
local console_answer = require "support.console"
local files = require "support.files"
local prometheus = require "support.prometheus"
local server = require "support.server"
local sockets = require "support.sockets"
local text = require "support.text"
local wait = require "support.wait"

-- The text of spec/fixtures/checks/NAME; with `tag`, tagged.lua's TAG.
local function fixture(name, tag)
  local script = files.read(server.fixture("checks/" .. name))
  if tag then
    local replaced, n = script:gsub('local TAG = "v1:"', ('local TAG = %q'):format(tag))
    assert(n == 1, "tagged.lua has no TAG line")
    script = replaced
  end
  return script
end

-- One console answer, its lines joined.
local function read_answer(sock)
  return table.concat(console_answer.read_answer(sock), "\n")
end

local function ask(sock, line)
  return table.concat(console_answer.ask(sock, line), "\n")
end

-- luaecho_reloads_total by result, from one scrape.
local function reloads_total(proc)
  local status, body = prometheus.http_get(proc.metrics_port, "/metrics", 5)
  assert.are.equal(200, status)
  local t = {}
  for result, n in body:gmatch('luaecho_reloads_total{result="(%a+)"} (%d+)') do t[result] = tonumber(n) end
  return t
end

-- The process group id the check wrote to `pidfile` (its shell's $$), once written whole.
local function wait_pid(pidfile)
  return wait.until_true(function()
    local s = files.read_if_present(pidfile)
    return s and s:match("^(%d+)\n")
  end, 5, "the check to start")
end

describe("checks before the swap #integration", function()
  local scratch, script, proc, console

  -- Serve checks/NAME (copied as handler.lua) with `extra` flags.
  local function start(name, extra, tag)
    script = scratch:write("handler.lua", fixture(name, tag))
    local admin = scratch:path("admin.sock")
    local args = { "--listen", "127.0.0.1:0", "--admin", "unix:" .. admin, "--metrics", "127.0.0.1:0" }
    for _, arg in ipairs(extra or {}) do args[#args + 1] = arg end
    args[#args + 1] = script
    proc = server.start_listeners(args)
    proc:wait_admin()
    proc:wait_metrics()
    console = sockets.unix_connect(admin)
  end

  before_each(function()
    scratch = files.scratch("checks")
  end)

  after_each(function()
    sockets.close_all()
    cleanup.expect_clean()
  end)

  describe("selftest(testing)", function()
    it("runs at start-up, and a passing one lets the candidate serve", function()
      start("tagged.lua")
      proc:wait_output("stderr", "luaecho: selftest of " .. text.literal(script) .. " passed\n")
      assert.are.equal("v1:a", client.answer_of(proc, "a", 4))
      scratch:replace("handler.lua", fixture("tagged.lua", "v2:"))
      assert.are.equal("reloaded: generation 2", ask(console, "reload"))
      assert.are.equal(2, proc:count("stderr", "^luaecho: selftest of " .. text.literal(script) .. " passed$"))
      assert.are.equal("v2:b", client.answer_of(proc, "b", 4))
      assert.are.same({ ok = 1, failed = 0, rejected = 0 }, reloads_total(proc))
    end)

    it("rejects a candidate whose selftest fails: the old code serves and the log, the console and the "
      .. "metrics say so", function()
      start("tagged.lua")
      local held = client.connect(proc.host, proc.port)
      held:send_all("x")
      assert.are.equal("v1:x", held:receive_exactly(4))
      scratch:replace("handler.lua", fixture("broken.lua"))
      local answer = ask(console, "reload")
      assert.matches('^error: reload rejected, still serving generation 1: selftest failed: [^\n]*'
        .. 'handler.lua:%d+: expected "v2:ping", got "oops:ping"', answer)
      proc:wait_output("stderr", "luaecho: error: reload %(admin console%) rejected, still serving generation 1: "
        .. "selftest failed: [^\n]*expected \"v2:ping\", got \"oops:ping\"")
      assert.are.equal("v1:c", client.answer_of(proc, "c", 4))
      held:send_all("y")
      assert.are.equal("v1:y", held:receive_exactly(4))
      assert.are.same({ ok = 0, failed = 0, rejected = 1 }, reloads_total(proc))
      -- a load error is still a failure, not a rejection
      scratch:replace("handler.lua", "return 42 +\n")
      assert.matches("^error: reload failed, still serving generation 1: ", ask(console, "reload"))
      assert.are.same({ ok = 0, failed = 1, rejected = 1 }, reloads_total(proc))
    end)

    it("rejects a candidate whose selftest returns false", function()
      start("tagged.lua")
      scratch:replace("handler.lua", fixture("says_false.lua"))
      assert.are.equal("error: reload rejected, still serving generation 1: selftest failed: selftest(testing) "
        .. "returned false", ask(console, "reload"))
      assert.are.equal("v1:d", client.answer_of(proc, "d", 4))
    end)

    it("refuses to start a script whose selftest fails: exit 1 and why", function()
      script = scratch:write("handler.lua", fixture("broken.lua"))
      local code, _, err = server.run({ "--port", "0", script }, nil, 30)
      assert.are.equal(1, code)
      assert.matches("luaecho: error: cannot serve " .. text.literal(script) .. ": its selftest failed: [^\n]*"
        .. 'expected "v2:ping", got "oops:ping"', err)
      assert.is_nil(err:find("listening on", 1, true))
    end)
  end)

  describe("--reload-check CMD", function()
    it("passes the candidate as a private snapshot and swaps when CMD exits 0", function()
      local copy = scratch:path("expected.lua")
      -- CMD checks that {script} is the candidate's very text, 0600, in a 0700 directory.
      local cmd = ('cmp {script} %s && test "$(stat -c %%a {script})" = 600 && '
        .. 'test "$(stat -c %%a "$(dirname {script})")" = 700 && echo fine'):format(copy)
      start("tagged.lua", { "--reload-check", cmd })
      files.write(copy, fixture("tagged.lua", "v3:"))
      scratch:replace("handler.lua", fixture("tagged.lua", "v3:"))
      assert.are.equal("reloaded: generation 2", ask(console, "reload"))
      assert.are.equal("v3:e", client.answer_of(proc, "e", 4))
    end)

    it("rejects the candidate when CMD fails, showing the last lines of its output", function()
      local cmd = 'echo "checking $(basename {script})"; echo; echo "no deploys on Fridays" >&2; exit 3'
      start("tagged.lua", { "--reload-check", cmd })
      scratch:replace("handler.lua", fixture("tagged.lua", "v2:"))
      local answer = ask(console, "reload")
      assert.are.equal("error: reload rejected, still serving generation 1: reload check exited with status 3; "
        .. "its output ended with:   checking handler.lua   no deploys on Fridays", answer)
      proc:wait_output("stderr", "luaecho: error: reload %(admin console%) rejected, still serving generation 1: "
        .. "reload check exited with status 3; its output ended with:\n  checking handler.lua\n"
        .. "  no deploys on Fridays\n")
      assert.are.equal("v1:f", client.answer_of(proc, "f", 4))
      assert.are.same({ ok = 0, failed = 0, rejected = 1 }, reloads_total(proc))
    end)

    it("shows only the last ten lines of a long output", function()
      start("tagged.lua", { "--reload-check", "seq 1 5000; exit 1" })
      scratch:replace("handler.lua", fixture("tagged.lua", "v2:"))
      assert.are.equal("error: reload rejected, still serving generation 1: reload check exited with status 1; "
        .. "its output ended with:   4991   4992   4993   4994   4995   4996   4997   4998   4999   5000",
        ask(console, "reload"))
    end)

    it("holds a reload asked for while CMD runs, and runs it once that check has ended", function()
      start("tagged.lua", { "--reload-check", "echo waiting; sleep 60 & wait", "--reload-check-timeout", "0.5" })
      assert(console:send("reload\n"))
      proc:wait_output("stderr", "luaecho: running %-%-reload%-check on ")
      proc:signal("sighup")
      assert.are.equal("error: reload rejected, still serving generation 1: reload check timed out after 0.5 s; "
        .. "its output ended with:   waiting", read_answer(console))
      proc:wait_output("stderr", "luaecho: error: reload %(SIGHUP%) rejected, still serving generation 1: "
        .. "reload check timed out after 0.5 s", 5)
      assert.are.equal(2, proc:count("stderr", "^luaecho: running %-%-reload%-check on "))
    end)

    it("keeps serving while CMD hangs, then kills its process group at the timeout and rejects", function()
      local pidfile = scratch:path("check.pid")
      local cmd = ("echo $$ > %s; echo started; sleep 60 & wait"):format(pidfile)
      start("tagged.lua", { "--reload-check", cmd, "--reload-check-timeout", "1.5" })
      scratch:replace("handler.lua", fixture("tagged.lua", "v2:"))
      local held = client.connect(proc.host, proc.port)
      local started = wait.now()
      assert(console:send("reload\n"))
      local pgid = tonumber(wait_pid(pidfile))
      local trips = 0
      console:settimeout(0)
      local answer
      repeat -- round trips on an open and on new connections while the check runs
        held:send_all("h")
        assert.are.equal("v1:h", held:receive_exactly(4))
        assert.are.equal("v1:n", client.answer_of(proc, "n", 4))
        trips = trips + 1
        local line = console:receive("*l")
        if line then answer = line end
      until answer or wait.now() - started > 10
      console:settimeout(5)
      assert.are.equal("error: reload rejected, still serving generation 1: reload check timed out after 1.5 s; "
        .. "its output ended with:   started", answer)
      local elapsed = wait.now() - started
      assert.is_true(elapsed >= 1.4 and elapsed < 5, "answered after " .. elapsed .. " s")
      assert.is_true(trips >= 10, "only " .. trips .. " round trips during the check")
      wait.until_true(function()
        return not os.execute(("kill -0 -- -%d 2>/dev/null"):format(pgid))
      end, 5, "the check's process group to be gone")
      assert.are.equal("v1:z", client.answer_of(proc, "z", 4))
    end)

    it("is killed, process group and all, when the server shuts down while it runs", function()
      local pidfile = scratch:path("check.pid")
      start("tagged.lua", { "--reload-check", ("echo $$ > %s; sleep 60 & wait"):format(pidfile) })
      proc:signal("sighup")
      local pgid = tonumber(wait_pid(pidfile))
      local asked = wait.now()
      proc:signal("sigterm")
      assert.are.equal(0, proc:wait_exit(10))
      assert.is_true(wait.now() - asked < 5, "the server waited for the check")
      proc:wait_output("stderr", "luaecho: error: reload %(SIGHUP%) rejected, still serving generation 1: "
        .. "reload check stopped: shutting down")
      wait.until_true(function()
        return not os.execute(("kill -0 -- -%d 2>/dev/null"):format(pgid))
      end, 5, "the check's process group to be gone")
    end)
  end)

  it("runs the checks once per reload with --workers 2, and every worker swaps", function()
    start("tagged.lua", { "--workers", "2", "--reload-check", "echo checked" })
    scratch:replace("handler.lua", fixture("tagged.lua", "v2:"))
    assert.are.equal("reloaded: generation 2", ask(console, "reload"))
    assert.are.equal(2, proc:count("stderr", "^luaecho: selftest of " .. text.literal(script) .. " passed$"))
    assert.are.equal(1, proc:count("stderr", "^luaecho: running %-%-reload%-check on "))
    for i = 1, 8 do assert.are.equal("v2:" .. i, client.answer_of(proc, tostring(i), 4)) end
  end)
end)
