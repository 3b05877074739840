-- Regressions found reviewing the transports (issue 14): Unix sockets, UDP
-- endpoints, the PROXY protocol, several listeners. Each `describe` names
-- the bug it pins down; fixtures are under spec/fixtures/review/.
local unix = require "socket.unix"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local server = require "support.server"
local sockets = require "support.sockets"
local wait = require "support.wait"

local TIMEOUT = 5

local function fixture(name)
  return server.fixture("review/" .. name)
end

after_each(function()
  sockets.close_all()
  cleanup.expect_clean()
end)

-- A connection whose reading waits for the next loop turn (bytes put back
-- after a PROXY header, or one that read its fill this turn) stopped
-- reading, so libuv no longer counted its handle; once the script had
-- closed its server nothing kept the loop running, and luaecho exited with
-- the connection open and its bytes unread.
describe("a connection whose reading waits for the next loop turn #integration", function()
  it("is served after a PROXY header once the script has closed its server", function()
    local proc = server.start({ "--proxy-protocol", fixture("one_shot.lua") })
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("PROXY TCP4 10.0.0.1 10.0.0.2 1234 80\r\nhello")
    assert.are.equal("echo:hello", conn:receive_exactly(10, TIMEOUT))
    assert.is_false(proc:exited())
    conn:close()
    assert.are.equal(0, proc:wait_exit(TIMEOUT)) -- its server closed and its last connection gone
  end)

  it("reads all of a flood that fills the read buffer once the script has closed its server", function()
    local proc = server.start({ fixture("one_shot.lua") })
    local conn = client.connect(proc.host, proc.port)
    local size = 300000 -- several 64 KiB reads
    conn:send_all(string.rep("x", size))
    -- Every chunk comes back as "echo:" .. chunk: read until every x is back.
    local parts, xs = {}, 0
    local deadline = wait.now() + TIMEOUT
    while xs < size do
      assert(wait.now() < deadline, ("timed out with %d of %d bytes back"):format(xs, size))
      conn.sock:settimeout(0.1)
      local data, err, partial = conn.sock:receive(65536)
      local piece = data or partial or ""
      parts[#parts + 1] = piece
      xs = xs + select(2, piece:gsub("x", ""))
      assert(not err or err == "timeout", ("%s with %d of %d bytes back"):format(tostring(err), xs, size))
    end
    assert.are.equal("", (table.concat(parts):gsub("echo:", ""):gsub("x", "")))
    assert.is_false(proc:exited())
    conn:close()
    assert.are.equal(0, proc:wait_exit(TIMEOUT))
  end)
end)

-- Every worker accepted on the coordinator's one Unix socket, which stayed
-- open until exit: after server:close() the kernel still took new clients
-- into its backlog, and they hung unserved, where a closed TCP listener
-- refuses them.
describe("a Unix listener closed by the script #integration", function()
  -- Connect to `path` until the connection is refused; returns the error.
  local function refused(path)
    return wait.until_true(function()
      local sock = assert(unix.stream())
      sock:settimeout(1)
      local ok, err = sock:connect(path)
      sock:close()
      if not ok then return err end
    end, TIMEOUT, "the closed Unix listener to refuse a client")
  end

  for _, workers in ipairs({ "1", "2" }) do
    it("refuses new clients, as a closed TCP listener does (--workers " .. workers .. ")", function()
      local path = files.scratch("review"):path("one_shot.sock")
      server.start_listeners({ "--workers", workers, "--listen", "unix:" .. path, fixture("one_shot.lua") })
      local first = sockets.unix_connect(path) -- its connection_made closes the server
      assert(first:send("hi"))
      assert.are.equal("echo:hi", first:receive(7))
      assert.are.equal("connection refused", refused(path))
      assert(first:send("still"))
      assert.are.equal("echo:still", first:receive(10)) -- the open connection goes on
    end)
  end

  -- A server closed while a later worker was still starting was closed in
  -- the workers running then: the later one came up listening.
  it("stays closed in a worker that was still starting when the script closed it", function()
    local path = files.scratch("review"):path("slow.sock")
    -- No --script-timeout: each worker spends half a second of CPU loading,
    -- longer than a second on a busy machine.
    local proc = server.spawn({ "--workers", "2", "--script-timeout", "0", "--listen", "unix:" .. path,
                                fixture("slow_one_shot.lua") })
    proc:wait_count("stdout", "^loading$", 2, TIMEOUT, "worker 2 to start loading") -- worker 1 listens
    local first = sockets.unix_connect(path) -- worker 1's connection_made closes the server
    assert(first:send("hi"))
    assert.are.equal("echo:hi", first:receive(7))
    proc:wait_output("stderr", "listening on ", TIMEOUT, "the listening line")
    assert.are.equal("connection refused", refused(path))
    assert.are.equal(1, proc:count("stdout", "^made$")) -- worker 2 served none of the probes
  end)
end)

-- With workers every UDP socket has SO_REUSEPORT, and only TCP ports were
-- checked first: a second luaecho with workers joined the first's UDP port
-- and took a share of its datagrams, where it exits 1 for a TCP port.
describe("a UDP port that another luaecho with workers serves #integration", function()
  it("is refused: exit 1, not a share of its datagrams", function()
    local first = server.start_listeners({ "--workers", "2", "--listen", "udp:127.0.0.1:0" })
    local spec = "udp:127.0.0.1:" .. first.listeners[1].port
    local second = server.spawn({ "--workers", "2", "--listen", spec })
    wait.until_true(function()
      return second:exited() or second:stderr():find("listening on", 1, true)
    end, TIMEOUT, "the second luaecho to exit or listen")
    assert.is_true(second:exited(), "a second luaecho took a share of a UDP port in use:\n" .. second:describe())
    assert.are.equal(1, second.code)
    assert.matches("luaecho: error: cannot listen on " .. spec:gsub("%p", "%%%0") .. ": address already in use",
      second:stderr())
  end)
end)
