-- Flow control over real TCP: a client that sends and does not read makes
-- the server's write buffer rise past the high mark (pause_writing), and
-- reading drains it to the low mark (resume_writing). The shipped echo
-- scripts stop reading meanwhile, so the client ends up blocked instead of
-- the server buffering without bound.
local socket = require "socket"
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local wait = require "support.wait"

local MiB = 1024 * 1024
local HIGH, LOW = 64 * 1024, 16 * 1024

-- Numbered 64-byte blocks, so a lost or reordered block shows.
local function pattern_bytes(size)
  local blocks = {}
  for i = 1, size // 64 do blocks[i] = ("<%062d>"):format(i) end
  return table.concat(blocks)
end

-- Send `data` from byte `from` without reading, until `stop()` is true, the
-- data runs out, or the deadline passes; returns the index of the last byte
-- sent. Waits for writability with select, so it never spins.
local function push_until(conn, data, from, stop, timeout)
  local sent = from - 1
  conn.sock:settimeout(0)
  wait.until_true(function()
    if stop() or sent == #data then return true end
    local _, writable = socket.select(nil, { conn.sock }, 0.05)
    if #writable > 0 then
      local last, err, partial = conn.sock:send(data, sent + 1, math.min(sent + 65536, #data))
      sent = last or partial or sent
      assert(not err or err == "timeout", err)
    end
  end, timeout, "the client's sending to end", true)
  return sent
end

-- Push `data` without reading until the flow fixture has printed
-- pause_writing; returns the index of the last byte sent.
local function push_until_paused(proc, conn, data)
  return push_until(conn, data, 1, function()
    return proc:stdout():find("pause_writing", 1, true)
  end, 20)
end

-- Push without reading until the socket has not become writable for
-- `quiet` seconds: the server stopped reading. Returns bytes sent, or
-- #data if the server swallowed everything (no back-pressure).
local function push_until_blocked(conn, data, quiet, timeout)
  local sent, stuck_since = 0, nil
  conn.sock:settimeout(0)
  wait.until_true(function()
    if sent == #data then return true end
    local _, writable = socket.select(nil, { conn.sock }, 0.05)
    if #writable == 0 then
      stuck_since = stuck_since or wait.now()
      return wait.now() - stuck_since >= quiet
    end
    stuck_since = nil
    local last, err, partial = conn.sock:send(data, sent + 1, math.min(sent + 65536, #data))
    sent = last or partial or sent
    assert(not err or err == "timeout", err)
  end, timeout, "the client's sending to block", true)
  return sent
end

-- The flow-control lines the flow fixture printed: { {"pause", size}, ... }.
local function flow_events(proc)
  local events = {}
  for what, size in proc:stdout():gmatch("(%a+)_writing (%d+)\n") do
    events[#events + 1] = { what, tonumber(size) }
  end
  return events
end

-- Once the client has read everything the buffer is empty, so the last
-- pause must get its resume. Then check the whole history: pause and
-- resume alternate (once per crossing), pause above the high mark, resume
-- at the low mark or below. TCP may legitimately cross more than once.
local function assert_alternating(proc, high, low)
  high, low = high or HIGH, low or LOW
  local events = wait.until_true(function()
    local e = flow_events(proc)
    return #e > 0 and e[#e][1] == "resume" and e
  end, 5, "resume_writing after the client read everything")
  for i, event in ipairs(events) do
    local what, size = event[1], event[2]
    assert.are.equal(i % 2 == 1 and "pause" or "resume", what, "flow event " .. i .. " out of turn")
    if what == "pause" then
      assert.is_true(size > high, "pause_writing with only " .. size .. " bytes buffered")
    else
      assert.is_true(size <= low, "resume_writing with " .. size .. " bytes still buffered")
    end
  end
end

describe("flow control #integration", function()
  after_each(cleanup.expect_clean)

  it("calls pause_writing when a client stops reading and resume_writing once it reads", function()
    local proc = server.start({ server.fixture("flow.lua") })
    local conn = client.connect(proc.host, proc.port)
    local data = pattern_bytes(32 * MiB)
    local sent = push_until_paused(proc, conn, data)
    assert.is_true(sent < #data, "the server never called pause_writing")
    local paused_at = tonumber(proc:wait_output("stdout", "pause_writing (%d+)\n"))
    assert.is_true(paused_at > HIGH, "pause_writing with only " .. paused_at .. " bytes buffered")
    -- Now read everything back: the buffer drains and the server resumes.
    local echoed = client.exchange({ { conn = conn, expect = sent } }, 20)[1]
    assert.are.equal(sent, #echoed)
    assert.is_true(echoed == data:sub(1, sent), "the echo differs from what was sent")
    assert_alternating(proc)
  end)

  it("keeps echoing exactly after pausing and resuming", function()
    local proc = server.start({ server.fixture("flow.lua") })
    local conn = client.connect(proc.host, proc.port)
    local data = pattern_bytes(16 * MiB)
    local sent = push_until_paused(proc, conn, data)
    -- Send the rest while reading: pauses and resumes may repeat.
    local echoed = client.exchange({ { conn = conn, send = data:sub(sent + 1), expect = #data } }, 30)[1]
    assert.are.equal(#data, #echoed)
    assert.is_true(echoed == data, "the echo differs from what was sent")
    assert_alternating(proc)
  end)

  -- Fill the server's buffer past its high mark, then read it all back.
  local function pause_and_drain(proc)
    local conn = client.connect(proc.host, proc.port)
    local data = pattern_bytes(32 * MiB)
    local sent = push_until_paused(proc, conn, data)
    local echoed = client.exchange({ { conn = conn, expect = sent } }, 20)[1]
    assert.is_true(echoed == data:sub(1, sent), "the echo differs from what was sent")
  end

  it("uses the marks given to set_write_buffer_limits(high, low)", function()
    local high, low = 512 * 1024, 8 * 1024
    local proc = server.start({ server.fixture("flow.lua") },
      { env = { FLOW_HIGH = tostring(high), FLOW_LOW = tostring(low) } })
    pause_and_drain(proc)
    assert_alternating(proc, high, low)
  end)

  it("takes high / 4 as the low mark when set_write_buffer_limits gets only high", function()
    local high = 512 * 1024
    local proc = server.start({ server.fixture("flow.lua") }, { env = { FLOW_HIGH = tostring(high) } })
    pause_and_drain(proc)
    assert_alternating(proc, high, high // 4)
  end)

  for _, script in ipairs({ "echo.lua", "examples/plain_echo.lua" }) do
    it(script .. " stops reading from a client that does not read", function()
      local proc = server.start({ server.script(script) })
      local conn = client.connect(proc.host, proc.port)
      local data = pattern_bytes(32 * MiB)
      local sent = push_until_blocked(conn, data, 1, 30)
      assert.is_true(sent < #data, "the server took all 32 MiB without the client reading")
      -- Reading drains the server, which resumes reading what is left.
      -- (echo.lua prefixes each chunk with "echo:"; the data never contains it.)
      local reply = client.exchange({ { conn = conn, done_when = client.echoed(sent) } }, 30)[1]
      local echoed = (reply:gsub("echo:", ""))
      assert.are.equal(sent, #echoed)
      assert.is_true(echoed == data:sub(1, sent), "the echo differs from what was sent")
    end)
  end
end)
