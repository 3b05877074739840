-- How luaecho ends: on SIGTERM/SIGINT with connections open (flushing,
-- connection_lost for each, exit 0 within the shutdown timeout), when a
-- script closes the server, and never because a peer went away mid-write.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local wait = require "support.wait"

-- Open `n` connections and prove each is established on the server side.
local function open_clients(proc, n)
  local conns = client.connect_many(proc.host, proc.port, n)
  local jobs = {}
  for i, conn in ipairs(conns) do jobs[i] = { conn = conn, send = "hi", expect = 2 } end
  client.exchange(jobs)
  return conns
end

-- Ask the flood fixture to leave output it cannot flush to `conn`; returns
-- the number of bytes it wrote.
local function flood(proc, conn)
  conn:send_all("flood")
  return tonumber(proc:wait_output("stdout", "flooding (%d+) buffered %d+\n"))
end

describe("luaecho shutdown #integration", function()
  after_each(cleanup.expect_clean)

  for _, signal in ipairs({ "SIGTERM", "SIGINT" }) do
    it("closes every connection and exits 0 on " .. signal, function()
      local proc = server.start({ "--shutdown-timeout", "3", server.fixture("trace.lua") })
      local conns = open_clients(proc, 5)
      proc:signal(signal:lower())
      assert.are.equal(0, (proc:wait_exit(3 + 2)))
      assert.are.equal(5, proc:count("stdout", " connection_lost "))
      -- The contract names the line's start; the host may add detail after it.
      assert.matches("%f[^\n\0]luaecho: shutting down %(" .. signal .. "%)", proc:stderr())
      for _, conn in ipairs(conns) do
        local rest, how = conn:receive_until_close()
        assert.are.equal("", rest)
        assert.are.equal("closed", how)
      end
    end)
  end

  it("exits 0 at once on SIGTERM when no connection is open", function()
    local proc = server.start({ "--shutdown-timeout", "30" })
    proc:signal("sigterm")
    assert.are.equal(0, (proc:wait_exit(5)))
  end)

  it("lets pending output flush before closing on SIGTERM", function()
    local proc = server.start({ "--shutdown-timeout", "5", server.fixture("flood.lua") })
    local conn = client.connect(proc.host, proc.port)
    local written = flood(proc, conn)
    proc:signal("sigterm")
    proc:wait_output("stderr", "shutting down")
    local data, how = conn:receive_until_close(10)
    assert.are.equal(written, #data)
    assert.are.equal("closed", how)
    assert.are.equal(0, (proc:wait_exit(5)))
    assert.are.equal(1, proc:count("stdout", "^connection_lost"))
  end)

  it("stops accepting as soon as it starts shutting down", function()
    local proc = server.start({ "--shutdown-timeout", "5", server.fixture("flood.lua") })
    local conn = client.connect(proc.host, proc.port)
    flood(proc, conn) -- the server now waits for a reader that never comes
    proc:signal("sigterm")
    proc:wait_output("stderr", "shutting down")
    assert.has_error(function() client.connect(proc.host, proc.port, 2) end)
  end)

  it("aborts what cannot flush when the shutdown timeout expires, and exits 0", function()
    local proc = server.start({ "--shutdown-timeout", "1", server.fixture("flood.lua") })
    local conn = client.connect(proc.host, proc.port)
    flood(proc, conn)
    local start = wait.now()
    proc:signal("sigterm")
    assert.are.equal(0, (proc:wait_exit(1 + 3)))
    assert.is_true(wait.now() - start >= 0.5, "exited before trying to flush")
    assert.are.equal(1, proc:count("stdout", "^connection_lost"))
  end)

  it("is not killed by SIGPIPE", function()
    local proc = server.start({})
    proc:signal("sigpipe")
    -- A signal is delivered before the process runs again, so once it has
    -- answered, SIGPIPE has come and gone.
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("alive?")
    assert.are.equal("echo:alive?", conn:receive_exactly(11))
    assert.is_false(proc:exited())
  end)

  it("survives peers that reset while it is writing to them", function()
    local proc = server.start({ server.fixture("flood.lua") })
    for round = 1, 10 do
      local conn = client.connect(proc.host, proc.port)
      if round % 2 == 1 then
        flood(proc, conn) -- reset with output queued in the host
      else
        conn:send_all("flood") -- reset before the host starts writing
      end
      conn:reset()
      proc:wait_count("stdout", "^connection_lost", round)
    end
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("alive?")
    assert.are.equal("alive?", conn:receive_exactly(6))
    assert.is_false(proc:exited())
  end)
end)

describe("a script closing the server #integration", function()
  local proc

  before_each(function()
    proc = server.start({ server.script("examples/simple_echo.lua") })
  end)

  after_each(cleanup.expect_clean)

  it("ends the process with 0 once its one connection has gone", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("hello")
    assert.are.equal("echo:hello", conn:receive_exactly(10))
    conn:close()
    assert.are.equal(0, (proc:wait_exit(5)))
    assert.are.equal('Connection received!\n"hello"\nConnection lost!\n', proc:stdout())
  end)

  it("stops accepting but serves open connections until the last one goes", function()
    local first = client.connect(proc.host, proc.port)
    local second = client.connect(proc.host, proc.port)
    first:send_all("1")
    second:send_all("2")
    assert.are.equal("echo:1", first:receive_exactly(6))
    assert.are.equal("echo:2", second:receive_exactly(6))
    first:close()
    proc:wait_output("stdout", "Connection lost!\n")
    assert.has_error(function() client.connect(proc.host, proc.port, 2) end)
    second:send_all("still")
    assert.are.equal("echo:still", second:receive_exactly(10))
    assert.is_false(proc:exited())
    second:close()
    assert.are.equal(0, (proc:wait_exit(5)))
  end)
end)
