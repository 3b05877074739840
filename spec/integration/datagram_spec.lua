-- UDP endpoints over real sockets: `luaecho run` programs from
-- spec/fixtures/udp/ built on luaecho.create_datagram_endpoint, talking to
-- UDP sockets this spec owns (luasocket). Every receive has a deadline.
local socket = require "socket"
local cleanup = require "support.cleanup"
local sanitizer = require "support.sanitizer"
local server = require "support.server"
local sockets = require "support.sockets"

local TIMEOUT = 5

local udp_socket = sockets.udp

-- A port on 127.0.0.1 where nothing listens (bound, then let go).
local function closed_port()
  local sock = assert(socket.udp())
  assert(sock:setsockname("127.0.0.1", 0))
  local _, port = sock:getsockname()
  sock:close()
  return tonumber(port)
end

-- Receive one datagram within the deadline: data, host, port.
local function receive(sock, what)
  local data, host, port = sock:receivefrom(65536)
  if not data then error(("no datagram (%s) within %ds: %s"):format(what, TIMEOUT, tostring(host)), 2) end
  return data, host, tonumber(port)
end

-- Start the echo server program; returns the process and its port.
local function start_echo()
  local proc = server.spawn({ "run", server.fixture("udp/echo_server.lua") })
  local port = tonumber(proc:wait_output("stdout", "serving udp 127%.0%.0%.1 port (%d+)\n", TIMEOUT,
    "the 'serving udp' line"))
  return proc, port
end

-- Run a program to completion; fail on a sanitizer report.
local function run(args, timeout)
  local code, out, err = server.run(args, nil, timeout or 10)
  assert.is_false(sanitizer.reported(err), err)
  return code, out, err
end

after_each(function()
  sockets.close_all()
  cleanup.expect_clean() -- no crash, a clean exit on SIGTERM, no sanitizer report
end)

describe("a UDP server written with create_datagram_endpoint #integration", function()
  it("echoes each datagram to the socket that sent it", function()
    local proc, port = start_echo()
    local sock = udp_socket()
    assert(sock:sendto("hello", "127.0.0.1", port))
    local data, host, from = receive(sock, "the echo")
    assert.are.same({ "hello", "127.0.0.1", port }, { data, host, from })
    assert(sock:sendto("again", "127.0.0.1", port))
    assert.are.equal("again", (receive(sock, "the second echo")))
    assert.matches("connection_made luaecho.datagram_transport (udp 127.0.0.1:" .. port .. ")", proc:stdout(),
      1, true)
  end)

  it("echoes an empty datagram as empty and a 65507-byte one whole", function()
    local _, port = start_echo()
    local sock = udp_socket()
    assert(sock:sendto("", "127.0.0.1", port))
    assert.are.equal("", (receive(sock, "the empty echo")))
    local big = {}
    for i = 1, 65507 do big[i] = string.char(i % 251) end
    big = table.concat(big)
    assert(sock:sendto(big, "127.0.0.1", port))
    local echoed = receive(sock, "the 65507-byte echo")
    assert.are.equal(65507, #echoed)
    assert.is_true(echoed == big, "the echo differs from what was sent")
  end)

  it("logs a failing datagram_received with its traceback and answers the next datagram", function()
    local proc, port = start_echo()
    local sock = udp_socket()
    assert(sock:sendto("boom", "127.0.0.1", port))
    proc:wait_output("stderr", "datagram_received failed for udp:127%.0%.0%.1:" .. port
      .. ": [^\n]*echo_server%.lua:%d+: datagram exploded", TIMEOUT, "the failure's log line")
    assert.matches("stack traceback:", proc:stderr(), 1, true)
    assert(sock:sendto("still there?", "127.0.0.1", port))
    assert.are.equal("still there?", (receive(sock, "the echo after a failure")))
    assert.are.equal(0, proc:count("stdout", "^connection_lost"))
  end)

  it("has the flow-control methods, an empty write buffer when idle, and its sockname", function()
    local _, port = start_echo()
    local sock = udp_socket()
    assert(sock:sendto("info", "127.0.0.1", port))
    local info = receive(sock, "the info answer")
    assert.are.equal(("size=0 limits=100,1000 defaults=16384,65536 sockname=127.0.0.1:%d peername=none "
      .. "listener=nil worker=1 closing=false"):format(port), info)
  end)

  it("calls connection_lost(nil) once when SIGTERM closes it, and exits 0", function()
    local proc, port = start_echo()
    local sock = udp_socket()
    assert(sock:sendto("x", "127.0.0.1", port))
    receive(sock, "the echo")
    proc:signal("sigterm")
    assert.are.equal(0, (proc:wait_exit(TIMEOUT)))
    assert.are.equal(1, proc:count("stdout", "^connection_lost nil$"))
  end)
end)

describe("UDP clients written with create_datagram_endpoint #integration", function()
  it("talk to the spec's socket and print the answer and where it came from", function()
    local sock, port = udp_socket()
    local proc = server.spawn({ "run", server.fixture("udp/client.lua"), "127.0.0.1", tostring(port),
      "hello from luaecho" })
    local data, host, from = receive(sock, "the client's datagram")
    assert.are.equal("hello from luaecho", data)
    assert.are.equal("127.0.0.1", host)
    assert(sock:sendto("reply:" .. data, host, from))
    assert.are.equal(0, (proc:wait_exit(TIMEOUT)))
    local out = proc:stdout()
    assert.matches("sending from 127.0.0.1 " .. from .. "\n", out, 1, true)
    assert.matches(('got "reply:hello from luaecho" from 127.0.0.1 %d\n'):format(port), out, 1, true)
    assert.matches("connection_lost nil\n", out, 1, true)
  end)

  it("hear error_received('connection refused') when they send to a closed port", function()
    local port = closed_port()
    local code, out, err = run({ "run", server.fixture("udp/refused.lua"), "127.0.0.1", tostring(port) })
    assert.are.equal(0, code, err)
    assert.matches("peername 127.0.0.1 " .. port .. "\n", out, 1, true)
    assert.matches("error_received connection refused\n", out, 1, true)
    assert.matches("connection_lost nil\n", out, 1, true)
    assert.not_matches("no error_received", out, 1, true)
  end)
end)

describe("create_datagram_endpoint misuse #integration", function()
  it("refuses a Protocol without datagram_received with a clear error", function()
    local code, out, err = run({ "run", server.fixture("udp/no_datagram_received.lua") })
    assert.are.equal(1, code)
    assert.matches("the Protocol has no datagram_received(data, host, port), so it cannot serve datagrams",
      err, 1, true)
    assert.matches("no_datagram_received.lua:9", err, 1, true)
    assert.not_matches("not reached", out, 1, true)
  end)

  it("raises a ConnectionError when the Protocol's new() fails, after logging it", function()
    local code, out, err = run({ "run", server.fixture("udp/new_fails.lua") })
    assert.are.equal(0, code, err)
    assert.matches("creating the datagram protocol instance failed for udp:127%.0%.0%.1:%d+: [^\n]*new_fails%.lua:%d+: "
      .. "no instance today", err)
    assert.are.equal("false\tConnectionError: luaecho.create_datagram_endpoint(): the endpoint could not start: "
      .. "creating its Protocol instance failed (logged above)\n", out)
  end)

  it("raises clear errors for bad arguments, and a closed transport is harmless", function()
    local code, out, err = run({ "run", server.fixture("udp/misuse.lua") }, 20)
    assert.are.equal(0, code, err)
    local expected = {
      "no opts: false luaecho.create_datagram_endpoint(): give a local address",
      "bad option: false luaecho.create_datagram_endpoint(): unknown option local_addr",
      "port alone: false luaecho.create_datagram_endpoint(): opts.local_port needs opts.local_host",
      "remote without port: false luaecho.create_datagram_endpoint(): give opts.remote_host and opts.remote_port",
      "not a Protocol: false luaecho.create_datagram_endpoint(): protocol must be a Protocol table",
      "core without datagram_received: false luaecho.create_datagram_endpoint(): the Protocol has no "
        .. "datagram_received(data, host, port), so it cannot serve datagrams (a streams handler "
        .. "function(reader, writer) serves only stream listeners)",
      "core without address: false luaecho.create_datagram_endpoint(): give a local address, a remote one, or both",
      "core bad port: false bad argument #3",
      "bad host: false ConnectionError: cannot resolve no-such-host.invalid port 0",
      "sendto a name: false transport:sendto(): host must be an IP address, not 'localhost'",
      "sendto no address: false transport:sendto(): the endpoint has no remote address",
      "sendto bad port: false transport:sendto(): port must be 1 to 65535, not 70000",
      "sendto no data: false bad argument #2",
      "idle write buffer 0\n",
      "low above high: false transport:set_write_buffer_limits(): high (10) must be >= low (20)",
      "closing true\n",
      "sendto after close: false transport:sendto(): datagram transport is closed",
      "connection_lost nil\n",
      "after close luaecho.datagram_transport (closed)\n",
      "sockname after close gone\n",
      "write buffer after close 0\n",
      "sendto when gone: false transport:sendto(): datagram transport is closed",
    }
    local at = 1
    for _, line in ipairs(expected) do
      local found = out:find(line, at, true)
      assert(found, ("expected %q after position %d in:\n%s"):format(line, at, out))
      at = found + #line
    end
  end)
end)
