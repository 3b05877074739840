-- What a new user hit (issue 13, item 7), each now said or fixed:
-- a SIGINT during start-up, a Protocol run as a program, and a
-- Protocol.new() that forgot the metatable.
local server = require "support.server"
local client = require "support.client"
local wait = require "support.wait"

-- Voluntary context switches so far of each of pid's threads, by name.
local function wakeups(pid)
  local by_name = {}
  local tasks = assert(io.popen("ls /proc/" .. pid .. "/task"))
  for tid in tasks:lines() do
    local dir = ("/proc/%d/task/%s/"):format(pid, tid)
    local comm, status = io.open(dir .. "comm"), io.open(dir .. "status")
    if comm and status then
      local name = comm:read("l")
      local n = tonumber(status:read("a"):match("\nvoluntary_ctxt_switches:%s*(%d+)"))
      by_name[name] = (by_name[name] or 0) + n
    end
    if comm then comm:close() end
    if status then status:close() end
  end
  tasks:close()
  return by_name
end

describe("a new user's first steps #integration", function()
  after_each(function()
    client.close_all()
    assert.are.same({}, server.stop_all())
  end)

  for _, workers in ipairs({ "1", "2" }) do
    it("never loses a SIGINT sent during start-up, with --workers " .. workers, function()
      for _ = 1, 4 do -- before the fix, about half of them went on serving
        local proc = server.spawn({ "--port", "0", "--workers", workers, server.fixture("slow_start.lua") })
        proc:wait_output("stdout", "loading\n")
        proc:signal("sigint")
        assert.are.equal(0, (proc:wait_exit(5)))
        assert.matches("luaecho: shutting down %(SIGINT%)", proc:stderr())
        assert.are.same({}, proc:stop())
      end
    end)
  end

  it("lets the process sleep while nobody talks to it: no timer wakes the watchdog", function()
    local proc = server.start({ server.script("echo.lua") })
    local conn = client.connect(proc.host, proc.port) -- a call, so the watchdog has run
    conn:send_all("hi\n")
    assert.are.equal("echo:hi\n", conn:receive_exactly(8))
    -- After a call it looks once or twice more, then sleeps: wait for that.
    local last, since = wakeups(proc.pid).watchdog, wait.now()
    assert.is_not_nil(last, "no thread named watchdog")
    wait.until_true(function()
      local now = wakeups(proc.pid).watchdog
      if now ~= last then last, since = now, wait.now() end
      return wait.now() - since >= 0.3
    end, 5, "the watchdog to fall asleep after the call")
    local window = 1.5
    local before, start = wakeups(proc.pid), wait.now()
    wait.until_true(function() return wait.now() - start >= window end, window + 5, "the end of the window")
    local after = wakeups(proc.pid)
    print(("idle for %.1f s: the watchdog woke %d times, the whole process %d"):format(window,
      after.watchdog - before.watchdog, (function()
        local sum = 0
        for name, n in pairs(after) do sum = sum + n - (before[name] or 0) end
        return sum
      end)()))
    assert.is_true(after.watchdog - before.watchdog <= 1, "the watchdog woke while nothing ran") -- was 10 a second
  end)

  it("says that a Protocol script is a handler when it is run as a program", function()
    local code, out, err = server.run({ "run", server.script("echo.lua") })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("luaecho: error: [^\n]*echo%.lua returned a Protocol table: it is a handler, which luaecho "
      .. "serves; serve it with 'luaecho [^\n]*echo%.lua' %('luaecho run' runs programs%)", err)
  end)

  it("warns once when Protocol instances answer none of its methods", function()
    local proc = server.start({ server.fixture("new_without_metatable.lua") })
    for _ = 1, 2 do
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("hello")
      conn:shutdown_send()
      -- No eof_received answers either: the host closes, so the instance was made.
      assert.are.equal("", conn:receive_until_close(5))
    end
    assert.are.equal(1, proc:count("stderr", "answers none of the Protocol's methods"))
    assert.matches("setmetatable", proc:stderr(), 1, true)
  end)
end)
