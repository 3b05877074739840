-- The Protocol contract over real TCP: callback order, connection_lost
-- exactly once, eof_received keeping our side open, one fresh instance per
-- connection, and missing methods skipped.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"

-- The trace fixture's stdout lines for the connection whose peer port is
-- `port`, without the port: { "connection_made", "data_received 1", ... }.
local function events_of(proc, port)
  local events = {}
  for p, event in proc:stdout():gmatch("(%d+) ([^\n]+)\n") do
    if tonumber(p) == port then events[#events + 1] = event end
  end
  return events
end

-- Stop the server and wait for it, so nothing more can be printed: only then
-- can a spec say a callback ran exactly once.
local function finish(proc)
  proc:signal("sigterm")
  assert.are.equal(0, (proc:wait_exit(10)))
end

describe("protocol callbacks #integration", function()
  local proc

  before_each(function()
    proc = server.start({ server.fixture("trace.lua") })
  end)

  after_each(cleanup.expect_clean)

  it("run in asyncio's order for a client that half-closes", function()
    local conn = client.connect(proc.host, proc.port)
    local _, port = conn:sockname()
    conn:send_all("a")
    assert.are.equal("a", conn:receive_exactly(1))
    conn:send_all("bc")
    assert.are.equal("bc", conn:receive_exactly(2))
    conn:shutdown_send()
    assert.are.same({ "", "closed" }, { conn:receive_until_close() })
    proc:wait_output("stdout", "%f[%d]" .. port .. " connection_lost")
    finish(proc)
    assert.are.same({
      "connection_made",
      "data_received 1",
      "data_received 2",
      "eof_received",
      "connection_lost nil",
    }, events_of(proc, port))
  end)

  it("call eof_received and then connection_lost(nil) when a client closes", function()
    local conn = client.connect(proc.host, proc.port)
    local _, port = conn:sockname()
    conn:send_all("x")
    conn:receive_exactly(1)
    conn:close()
    proc:wait_output("stdout", "%f[%d]" .. port .. " connection_lost")
    finish(proc)
    assert.are.same({ "connection_made", "data_received 1", "eof_received", "connection_lost nil" },
      events_of(proc, port))
  end)

  it("call connection_lost with an error message when a client resets", function()
    local conn = client.connect(proc.host, proc.port)
    local _, port = conn:sockname()
    conn:send_all("x")
    conn:receive_exactly(1)
    conn:reset()
    proc:wait_output("stdout", "%f[%d]" .. port .. " connection_lost")
    finish(proc)
    local events = events_of(proc, port)
    assert.are.equal("connection_made", events[1])
    assert.matches("^connection_lost error .+", events[#events])
    assert.are.equal(1, proc:count("stdout", "^" .. port .. " connection_lost"))
  end)

  it("run connection_lost exactly once per connection among many", function()
    local conns = client.connect_many(proc.host, proc.port, 20)
    local jobs = {}
    for i, conn in ipairs(conns) do jobs[i] = { conn = conn, send = "ping", expect = 4 } end
    client.exchange(jobs)
    -- Close half normally and reset the other half: both paths count.
    local ports = {}
    for i, conn in ipairs(conns) do
      ports[i] = select(2, conn:sockname())
      if i % 2 == 0 then conn:close() else conn:reset() end
    end
    proc:wait_count("stdout", " connection_lost", 20)
    finish(proc)
    for _, port in ipairs(ports) do
      assert.are.equal(1, proc:count("stdout", "^" .. port .. " connection_lost"))
      assert.are.equal(1, proc:count("stdout", "^" .. port .. " connection_made"))
    end
    assert.are.equal(20, proc:count("stdout", " connection_lost"))
  end)
end)

describe("eof_received returning true #integration", function()
  local proc

  before_each(function()
    proc = server.start({ server.fixture("half_open.lua") })
  end)

  after_each(cleanup.expect_clean)

  it("keeps our side open for writing after the peer's EOF", function()
    local half = client.connect(proc.host, proc.port)
    half:send_all("abc")
    half:shutdown_send()
    assert.are.equal("got 3 bytes\n", half:receive_exactly(12))
    -- Another connection makes the script write on the half-open one.
    local other = client.connect(proc.host, proc.port)
    other:send_all("finish")
    assert.are.equal("finished 1\n", other:receive_exactly(11))
    assert.are.same({ "later\n", "closed" }, { half:receive_until_close() })
  end)
end)

describe("protocol instances #integration", function()
  after_each(cleanup.expect_clean)

  -- Send one chunk per line of `expected` on `conn`, checking each answer.
  local function converse(conn, expected)
    for _, line in ipairs(expected) do
      conn:send_all(".")
      assert.are.equal(line, conn:receive_exactly(#line))
    end
  end

  it("are fresh per connection when the script has no new()", function()
    local proc = server.start({ server.fixture("counter.lua") })
    local a = client.connect(proc.host, proc.port)
    local b = client.connect(proc.host, proc.port)
    converse(a, { "plain 1\n", "plain 2\n" })
    converse(b, { "plain 1\n" })
    converse(a, { "plain 3\n" })
  end)

  it("come from Protocol.new() when the script defines it", function()
    local proc = server.start({ server.fixture("counter_new.lua") })
    local a = client.connect(proc.host, proc.port)
    converse(a, { "new 1 1\n", "new 1 2\n" })
    local b = client.connect(proc.host, proc.port)
    converse(b, { "new 2 1\n" })
  end)

  it("skip every method the script does not define", function()
    local proc = server.start({ server.fixture("empty.lua") })
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("ignored")
    conn:shutdown_send()
    assert.are.same({ "", "closed" }, { conn:receive_until_close() })
    -- The server is still fine and serves the next connection.
    local next_conn = client.connect(proc.host, proc.port)
    next_conn:send_all("x")
    next_conn:shutdown_send()
    assert.are.same({ "", "closed" }, { next_conn:receive_until_close() })
    assert.is_false(proc:exited())
  end)
end)
