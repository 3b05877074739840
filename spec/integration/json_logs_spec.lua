-- --log-format json (issue 15, point 5): every line on stderr but the
-- "listening on" one, which stays text because programs wait for it, is
-- one JSON object with time (RFC 3339, milliseconds, UTC), level, msg and
-- the fields that apply. Each line is parsed with a strict decoder.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local json = require "support.json"
local wait = require "support.wait"

local fixture = server.fixture("json_logs/faults.lua")
local LEVELS = { error = true, warn = true, info = true, debug = true }
local TIME = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

-- Every stderr line but the listening ones, decoded; fails on a line that
-- is not one JSON object with a well-formed time, level and msg.
local function entries(proc)
  local out = {}
  for line in proc:stderr():gmatch("([^\n]*)\n") do
    if not line:match("^luaecho: listening on ") then
      local ok, entry = pcall(json.decode, line)
      assert(ok, ("not a JSON line: %q (%s)"):format(line, tostring(entry)))
      assert.are.equal("table", type(entry), line)
      assert.matches(TIME, entry.time)
      assert.is_true(LEVELS[entry.level], line)
      assert.are.equal("string", type(entry.msg), line)
      out[#out + 1] = entry
    end
  end
  return out
end

-- The entries for which match(entry) is true.
local function select_entries(proc, match)
  local found = {}
  for _, entry in ipairs(entries(proc)) do
    if match(entry) then found[#found + 1] = entry end
  end
  return found
end

-- Wait until 'n' entries satisfy match; returns them.
local function wait_entries(proc, n, match, what)
  local found
  wait.until_true(function()
    found = select_entries(proc, match)
    return #found >= n
  end, 10, what)
  return found
end

-- Send 'data' on a new connection that the script then fails on; returns
-- the connection's "127.0.0.1:PORT".
local function provoke(proc, data)
  local conn = client.connect(proc.host, proc.port)
  local peer = "127.0.0.1:" .. select(2, conn:sockname())
  conn:send_all(data)
  conn:receive_until_close()
  return peer
end

-- Milliseconds since the epoch of an RFC 3339 "time" (UTC).
local function epoch_ms(time)
  local y, mo, d, h, mi, s, ms = time:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  local days = os.time({ year = y, month = mo, day = d, hour = 12 }) // 86400 -- no zone games at noon
  return ((days * 24 + h) * 60 + mi) * 60000 + s * 1000 + tonumber(ms)
end

describe("--log-format json #integration", function()
  after_each(cleanup.expect_clean)

  it("logs two different errors within a second as two objects, then a repeat's count at exit", function()
    local proc = server.start({ "--log-format", "json", fixture })
    assert.is_truthy(proc.port) -- the listening line stayed text: support.server found it
    local peer1 = provoke(proc, "first")
    local peer2 = provoke(proc, "second")
    local errors = wait_entries(proc, 2, function(e) return e.level == "error" end, "two error lines")
    assert.are.equal(2, #errors)
    assert.is_true(epoch_ms(errors[2].time) - epoch_ms(errors[1].time) < 1000)
    local expectations = { { peer1, "the first failure", "'first'" }, { peer2, "the second failure", "'second'" } }
    for i, expected in ipairs(expectations) do
      local e = errors[i]
      assert.are.equal("data_received", e.callback)
      assert.are.equal(expected[1], e.peer)
      assert.matches("^data_received failed for " .. expected[1]:gsub("%.", "%%.") .. ": .*faults%.lua:%d+: "
        .. expected[2] .. "$", e.msg)
      assert.matches("^stack traceback:\n", e.traceback)
      assert.matches(expected[3], e.traceback, 1, true)
      assert.are.equal(1, e.worker)
      assert.is_nil(e.suppressed)
    end
    -- The same failure twice more: only counted, and summed up at exit.
    provoke(proc, "first")
    provoke(proc, "first")
    proc:signal("sigterm")
    assert.are.equal(0, (proc:wait_exit(10)))
    local all = entries(proc)
    local summaries = select_entries(proc, function(e) return e.suppressed ~= nil end)
    assert.are.equal(1, #summaries, proc:describe())
    local summary = summaries[1]
    assert.are.equal("error", summary.level)
    assert.are.equal(2, summary.suppressed)
    assert.are.equal("data_received", summary.callback)
    assert.are.equal(peer1, summary.peer)
    assert.matches("the first failure %(and 2 more like it in the last %d+ s%)$", summary.msg)
    assert.are.equal(3, #select_entries(proc, function(e) return e.level == "error" end))
    assert.is_true(#all >= 4) -- and "shutting down (SIGTERM)"
  end)

  it("gives a script's fields as members, never over time, level or msg", function()
    local proc = server.start({ "--log-format", "json", fixture })
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("fields")
    assert.are.equal("fields", conn:receive_exactly(6))
    local found = wait_entries(proc, 1, function(e) return e.msg == "x" end, "the script's warning")
    local e = found[1]
    assert.are.equal("warn", e.level)
    assert.are.equal("ann", e.user)
    assert.are.equal(3, e.n)
    assert.are.equal(0.1, e.ratio)
    assert.are.equal(2 ^ 53, e.big)
    assert.are.equal(1, e.worker)
    assert.matches('"msg":"x","worker":1,"big":9007199254740992,"n":3,"ratio":0.1,"user":"ann"}\n', proc:stderr(), 1,
      true)
  end)

  it("names the listener of a refusal over --max-connections, and the worker with --workers 2", function()
    local proc = server.start({ "--log-format", "json", "--workers", "2", "--max-connections", "1", fixture })
    local held = client.connect(proc.host, proc.port)
    held:send_all("ping")
    assert.are.equal("ping", held:receive_exactly(4))
    local refused = client.connect(proc.host, proc.port)
    refused:receive_until_close()
    local found = wait_entries(proc, 1, function(e) return e.msg:find("connection limit reached", 1, true) end,
      "the refusal")
    local e = found[1]
    assert.are.equal("warn", e.level)
    assert.are.equal("127.0.0.1:" .. proc.port, e.listener)
    assert.is_true(e.worker == 1 or e.worker == 2)
    -- Lines from the main thread name no worker.
    local main = select_entries(proc, function(x) return x.msg:find("2 workers", 1, true) end)
    assert.are.equal(1, #main)
    assert.is_nil(main[1].worker)
  end)

  it("keeps the text format as it was, a script's fields appended as key=value", function()
    local proc = server.start({ fixture })
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("fields")
    assert.are.equal("fields", conn:receive_exactly(6))
    proc:wait_output("stderr", "\nluaecho: warning: x big=9007199254740992 n=3 ratio=0%.1 user=ann\n")
  end)

  it("refuses any other format with one usage line and status 2", function()
    local code, _, stderr = server.run({ "--log-format", "xml" })
    assert.are.equal(2, code)
    assert.are.equal("luaecho: --log-format must be text or json, not 'xml'\n"
      .. "Try 'luaecho --help' for more information.\n", stderr)
  end)
end)
