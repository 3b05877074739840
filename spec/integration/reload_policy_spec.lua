-- What a hot swap does to open connections (issue 19, point 3): the new
-- script's Protocol.reload_policy, "keep", "upgrade" or "drain" with
-- Protocol.drain_timeout, and a bad value refused like any load error.
-- Each spec serves the tagged fixture (replies "NAME@GENERATION:...";
-- connection_lost prints "lost NAME@GENERATION") from a scratch directory.
-- Waits poll a log line, a reply or a close with a deadline.
local canary = require "support.canary"
local cleanup = require "support.cleanup"
local files = require "support.files"
local server = require "support.server"
local socket = require "socket"
local text = require "support.text"
local wait = require "support.wait"

-- Serve scratch's handler.lua written from `settings`, with the console.
local function start(scratch, settings, flags)
  local script = canary.write(scratch, settings)
  local args = { "--listen", "127.0.0.1:0", "--admin", "unix:" .. scratch:path("admin.sock") }
  for _, flag in ipairs(flags or {}) do args[#args + 1] = flag end
  args[#args + 1] = script
  local proc = server.start_listeners(args)
  proc:wait_admin()
  proc.script = script
  return proc
end

-- Swap to `settings` by SIGHUP and wait for the reloaded line.
local function swap(proc, scratch, settings)
  canary.write(scratch, settings)
  proc:signal("sighup")
  proc:wait_output("stderr", ("luaecho: reloaded %s %%(generation 2%%)\n"):format(text.literal(proc.script)), 10,
    "the reloaded line")
  return wait.now()
end

-- Has the server closed `conn`? Waits at most `seconds` for it to say so.
local function closed_within(conn, seconds)
  local readable = socket.select({ conn.sock }, nil, seconds)
  if #readable == 0 then return false end
  conn.sock:settimeout(0)
  local data, err = conn.sock:receive(1)
  conn.sock:settimeout(5)
  assert.is_nil(data)
  return err == "closed"
end

describe("reload_policy #integration", function()
  local scratch

  before_each(function()
    scratch = files.scratch("reload_policy")
  end)

  after_each(cleanup.expect_clean)

  it("keeps open connections on their code with \"keep\", even when upgrade() is defined", function()
    local proc = start(scratch, { name = "a", upgrade = true })
    local _, held = canary.probe(proc)
    swap(proc, scratch, { name = "b", upgrade = true, policy = "keep" })
    proc:wait_output("stderr",
      'luaecho: 1 open connection%(s%) keep the code they started with %(reload_policy "keep"%)\n', 10, "the keep line")
    assert.are.equal("a@1:x", canary.ask(held, "x"))
    assert.are.equal("b@2:probe", (canary.probe(proc)))
  end)

  it("upgrades open connections with \"upgrade\", and when the policy is unsaid but upgrade() exists", function()
    for _, settings in ipairs({ { name = "b", upgrade = true, policy = "upgrade" }, { name = "b", upgrade = true } }) do
      local proc = start(scratch, { name = "a" })
      local _, held = canary.probe(proc)
      swap(proc, scratch, settings)
      proc:wait_output("stderr", "luaecho: upgraded 1 of 1 open connection%(s%) to generation 2\n", 10, "the upgrade")
      assert.are.equal("b@2:x", canary.ask(held, "x"))
      proc:stop()
    end
  end)

  it("drains older connections with \"drain\": the idle after a second, the busy at drain_timeout", function()
    local proc = start(scratch, { name = "a" })
    local _, idle = canary.probe(proc)
    local idle_since = wait.now() -- its last byte either way
    local _, busy = canary.probe(proc)
    local swapped = swap(proc, scratch, { name = "b", policy = "drain", drain = 2 })
    proc:wait_output("stderr", "luaecho: draining connections of generations before 2 %(drain_timeout 2 s%)\n", 10,
      "the drain's line")
    local _, fresh = canary.probe(proc)
    -- The busy one talks every 0.2 s: never idle for a second.
    local idle_closed_at, busy_closed_at
    while not busy_closed_at and wait.now() - swapped < 6 do
      local reply = canary.ask(busy, "k")
      if reply then assert.are.equal("a@1:k", reply) else busy_closed_at = wait.now() - swapped end
      if not idle_closed_at and closed_within(idle, 0.2) then idle_closed_at = wait.now() - swapped end
    end
    assert.is_truthy(idle_closed_at, "the idle connection was never closed")
    assert.is_truthy(busy_closed_at, "the busy connection was never closed")
    -- Idle for a second (counted from its last byte), then closed at the drain's next 0.1 s look.
    local idle_for = idle_closed_at + swapped - idle_since
    assert.is_true(idle_for >= 0.95 and idle_closed_at < 1.9, ("idle closed after %.2f s idle, %.2f s after the swap")
      :format(idle_for, idle_closed_at))
    assert.is_true(busy_closed_at >= 1.9 and busy_closed_at < 4, "busy closed at " .. busy_closed_at)
    proc:wait_output("stderr", "luaecho: drain: closed 1 connection%(s%) of generations before 2 still open after "
      .. "drain_timeout %(2 s%)\n", 5, "the deadline's line")
    proc:wait_count("stdout", "^lost a@1$", 2, 5, "connection_lost for both old connections")
    -- The new generation's connection is not drained.
    assert.are.equal("b@2:still", canary.ask(fresh, "still"))
    assert.are.equal(0, proc:count("stdout", "^lost b@2$"))
  end)

  it("applies the canary's policy when it is promoted, not at the swap", function()
    local proc = start(scratch, { name = "a" }, { "--canary", "1" })
    local _, held = canary.probe(proc)
    canary.write(scratch, { name = "b", upgrade = true, policy = "upgrade" })
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: generation 2 is a canary for 1 s:", 10, "the canary's line")
    assert.are.equal("a@1:x", canary.ask(held, "x"))
    proc:wait_output("stderr", "luaecho: upgraded 1 of 1 open connection%(s%) to generation 2\n", 10,
      "the upgrade at promotion")
    assert.are.equal("b@2:y", canary.ask(held, "y"))
  end)

  it("refuses a bad policy as a load error: the reload fails and the old code serves", function()
    local proc = start(scratch, { name = "a" })
    local cases = {
      { { policy = "sometimes" }, 'Protocol.reload_policy must be "keep", "upgrade" or "drain", not "sometimes"' },
      { { policy = true }, 'Protocol.reload_policy must be "keep", "upgrade" or "drain", not true' },
      { { policy = "upgrade" },
        'Protocol.reload_policy is "upgrade" but Protocol.upgrade(instance) is not a function' },
      { { drain = 5 }, 'Protocol.drain_timeout is used only with reload_policy = "drain"' },
      { { policy = "drain", drain = -1 }, "Protocol.drain_timeout must be a number of seconds above 0 and at most "
        .. "86400, not -1" },
    }
    for _, case in ipairs(cases) do
      canary.write(scratch, case[1])
      local code, out, err = server.run({ "ctl", "--admin", proc.admin, "reload" }, nil, 35)
      assert.are.same({ 1, "", ("error: reload failed, still serving generation 1: %s: %s\n"):format(proc.script,
        case[2]) }, { code, out, err })
      assert.are.equal("a@1:probe", (canary.probe(proc)))
    end
    -- At start-up the same value is a script that cannot load.
    canary.write(scratch, cases[1][1])
    local code, _, err = server.run({ "--port", "0", proc.script })
    assert.are.equal(1, code)
    assert.matches("luaecho: error: cannot load script: " .. text.literal(proc.script .. ": " .. cases[1][2]), err)
  end)
end)

-- Not a server's business, but the same loader: the fake host refuses too.
describe("reload_policy under luaecho.testing #unit", function()
  it("refuses a bad policy with the host's message", function()
    local testing = require "luaecho.testing"
    local scratch = files.scratch("reload_policy_fake")
    local script = canary.write(scratch, { policy = "later" })
    local ok, err = pcall(testing.load, script)
    assert.is_false(ok)
    assert.matches('Protocol.reload_policy must be "keep", "upgrade" or "drain", not "later"', tostring(err), 1, true)
    files.remove_scratches()
  end)
end)
