-- Several listeners (--listen SPEC, repeatable): the command line's usage
-- errors, one script serving TCP, Unix and UDP listeners in one process
-- (each transport naming its own listener), UDP listeners served by a
-- script's datagram_received (the bundled echo.lua included), --workers
-- with a shared UDP port and a shared Unix socket, and a hot swap reaching
-- a UDP endpoint. The fixture spec/fixtures/listeners/tagged.lua tags each
-- answer with its version, kind, listener and worker. Every receive and
-- wait has a deadline.
local socket = require "socket"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local sanitizer = require "support.sanitizer"
local server = require "support.server"
local sockets = require "support.sockets"
local text = require "support.text"
local wait = require "support.wait"

local TIMEOUT = 5

local function fixture(name)
  return server.fixture("listeners/" .. name)
end

after_each(function()
  sockets.close_all()
  cleanup.expect_clean() -- no crash, a clean exit on SIGTERM, no sanitizer report; scratch removed
end)

-- A UDP socket on 127.0.0.1, any port.
local function udp_socket()
  return (sockets.udp())
end

-- Send `data` to the listener and return the one datagram answered.
local function ask_udp(sock, listener, data)
  assert(sock:sendto(data, listener.host, listener.port))
  local answer, host, port = sock:receivefrom(65536)
  if not answer then error(("no answer to a datagram within %ds: %s"):format(TIMEOUT, tostring(host)), 2) end
  assert.are.same({ listener.host, listener.port }, { host, tonumber(port) })
  return answer
end

local unix_connect = sockets.unix_connect

-- Send a line on a Unix connection and return the line answered.
local function ask_unix(sock, line)
  assert(sock:send(line .. "\n"))
  local answer, err, partial = sock:receive("*l")
  if not answer then error(("%s after %q"):format(tostring(err), partial or ""), 2) end
  return answer
end

-- Run luaecho to completion; returns code, stdout, stderr. No sanitizer report.
local function run(args)
  local code, out, err = server.run(args, nil, TIMEOUT)
  assert.is_false(sanitizer.reported(err), err)
  return code, out, err
end

-- The lines of `s`.
local function lines(s)
  local list = {}
  for line in s:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

-- A scratch directory's socket path.
local function socket_path()
  return files.scratch("listen"):path("luaecho.sock")
end

-- tagged.lua's answer split into its fields.
local function fields(answer)
  local version, kind, listener, worker, data = answer:match("^([^|]*)|([^|]*)|([^|]*)|(%d+)|(.*)$")
  assert(version, ("not a tagged answer: %q"):format(answer))
  return { version = version, kind = kind, listener = listener, worker = math.tointeger(tonumber(worker)),
    data = data }
end

describe("--listen usage errors #integration", function()
  local long_path = "/tmp/" .. ("a"):rep(103) -- 108 bytes: one over
  local seventeen = {}
  for i = 1, 17 do
    seventeen[#seventeen + 1] = "--listen"
    seventeen[#seventeen + 1] = "127.0.0.1:" .. (40000 + i)
  end
  local together = "--listen and -H/--host or -p/--port cannot be used together"
  local cases = {
    { { "--listen", "127.0.0.1:0", "-H", "127.0.0.1" }, together },
    { { "--listen", "127.0.0.1:0", "--port", "0" }, together },
    { { "-p", "0", "--listen", "127.0.0.1:0" }, together },
    { { "--listen", "sctp:1.2.3.4:5" }, "--listen 'sctp:1.2.3.4:5': unknown scheme 'sctp:'" },
    { { "--listen", "tls:udp:1.2.3.4:5" }, "--listen 'tls:udp:1.2.3.4:5': TLS runs over TCP or a Unix socket" },
    { { "--listen", "1.2.3:80" }, "--listen '1.2.3:80': the host is not a valid IPv4 address" },
    { { "--listen", "[::1:80" }, "--listen '[::1:80': an IPv6 address in brackets needs its ']'" },
    { { "--listen", "::1:80" }, "--listen '::1:80': an IPv6 address needs brackets" },
    { { "--listen", "1.2.3.4:99999" }, "--listen '1.2.3.4:99999': the port must be a number from 0 to 65535" },
    { { "--listen", "udp:1.2.3.4:99999" }, "the port must be a number from 0 to 65535" },
    { { "--listen", "unix:" }, "--listen 'unix:': needs a path after unix:" },
    { { "--listen", "unix:" .. long_path }, "the path is too long for a Unix socket (at most 107 bytes)" },
    { { "--listen", "unix:/nonexistent/a.sock", "--listen", "unix:/nonexistent/a.sock" },
      "--listen 'unix:/nonexistent/a.sock' is given twice" },
    { { "--listen", "127.0.0.1:40000", "--listen", "tcp:127.0.0.1:40000" },
      "--listen 'tcp:127.0.0.1:40000' is given twice" },
    { { "--listen", "udp:127.0.0.1:40000", "--listen", "udp:127.0.0.1:40000" }, "is given twice" },
    { seventeen, "--listen: at most 16 listeners" },
    { { "--unix-mode", "600", "--listen", "127.0.0.1:0" }, "--unix-mode applies to Unix socket listeners" },
    { { "--unix-mode", "600" }, "--unix-mode applies to Unix socket listeners" },
    { { "--unix-mode", "999", "--listen", "unix:/nonexistent/a.sock" },
      "--unix-mode must be octal permissions from 0 to 777, such as 660, not '999'" },
    { { "--proxy-protocol", "--listen", "udp:127.0.0.1:0" },
      "--proxy-protocol applies to TCP and Unix listeners, and every listener is UDP" },
    { { "run", "--listen", "127.0.0.1:0", fixture("tagged.lua") }, "--listen is for serving" },
  }
  for _, case in ipairs(cases) do
    local args, message = case[1], case[2]
    local shown = table.concat(args, " ")
    if #shown > 80 then shown = shown:sub(1, 77) .. "..." end
    it(("exits 2 with one line for: %s"):format(shown), function()
      local code, out, err = run(args)
      assert.are.equal(2, code, err)
      assert.are.equal("", out)
      local got = lines(err)
      assert.are.equal(2, #got, err)
      assert.are.equal("luaecho: ", got[1]:sub(1, 9), err)
      assert.matches(message, got[1], 1, true)
      assert.are.equal("Try 'luaecho --help' for more information.", got[2])
    end)
  end

  it("accepts a Unix socket path of 107 bytes, the most there is room for", function()
    local dir = files.scratch("listen").dir
    local path = dir .. "/" .. ("s"):rep(107 - #dir - 1)
    assert.are.equal(107, #path)
    local proc = server.start_listeners({ "--listen", "unix:" .. path })
    assert.are.equal(path, proc.listeners[1].path)
    assert.are.equal("echo:x", ask_unix(unix_connect(path), "x"):sub(1, 6))
  end)
end)

describe("--listen start-up failures #integration", function()
  for _, script in ipairs({ "listeners/no_datagram.lua", "examples/stream_echo.lua" }) do
    it("refuses (exit 1) to serve a udp: listener with a script that has no datagram_received: " .. script,
      function()
        local path = script:match("^examples/") and server.script(script) or server.fixture(script)
        local code, _, err = run({ "--listen", "127.0.0.1:0", "--listen", "udp:127.0.0.1:0", path })
        assert.are.equal(1, code, err)
        assert.not_matches("listening on", err, 1, true)
        local got = lines(err)
        assert.are.equal(1, #got, err)
        assert.matches("udp:127.0.0.1:0", got[1], 1, true)
        assert.matches("no datagram_received", got[1], 1, true)
      end)
  end

  it("refuses (exit 1) a Unix socket another process listens on, among other listeners", function()
    local path = socket_path()
    local first = server.start_listeners({ "--listen", "unix:" .. path })
    local code, _, err = run({ "--listen", "127.0.0.1:0", "--listen", "unix:" .. path })
    assert.are.equal(1, code, err)
    assert.are.equal(1, #lines(err), err)
    assert.matches("another process is listening on it", err, 1, true)
    assert.are.equal("echo:still", ask_unix(unix_connect(path), "still"):sub(1, 10))
    assert.is_false(first:exited())
  end)
end)

describe("several listeners in one process #integration", function()
  it("without --listen, -p 0 still makes one TCP listener", function()
    local proc = server.start_listeners({ "-p", "0" }, { count = 1 })
    assert.are.equal(1, #proc.listeners)
    assert.are.equal("tcp", proc.listeners[1].kind)
    assert.are.equal(1, proc:count("stderr", "^luaecho: listening on "))
  end)

  it("serves TCP, Unix and UDP with one script, in the order given, each naming its listener", function()
    local path = socket_path()
    local proc = server.start_listeners({ "--listen", "tcp:127.0.0.1:0", "--listen", "unix:" .. path,
      "--listen", "udp:127.0.0.1:0", fixture("tagged.lua") })
    local tcp, uds, udp = table.unpack(proc.listeners)
    assert.are.same({ "tcp", "unix", "udp" }, { tcp.kind, uds.kind, udp.kind })
    assert.are.equal("127.0.0.1", tcp.host)
    assert.are.equal(path, uds.path)
    assert.are.equal("127.0.0.1", udp.host)
    assert.is_true(tcp.port > 0 and udp.port > 0, "port 0 must be printed as the real port")
    assert.are.equal(3, proc:count("stderr", "^luaecho: listening on "))

    local conn = client.connect(tcp.host, tcp.port)
    conn:send_all("over tcp\n")
    local want = ("v1|stream|127.0.0.1:%d|1|over tcp\n"):format(tcp.port)
    assert.are.equal(want, conn:receive_exactly(#want))
    assert.are.equal("v1|stream|unix:" .. path .. "|1|over unix", ask_unix(unix_connect(path), "over unix"))
    assert.are.equal(("v1|udp|udp:127.0.0.1:%d|1|over udp"):format(udp.port), ask_udp(udp_socket(), udp, "over udp"))
  end)

  it("prints [IPv6]:PORT and plain HOST:PORT listeners with their real ports", function()
    local probe = socket.tcp6()
    local has_ipv6 = probe and probe:bind("::1", 0)
    if probe then probe:close() end
    if not has_ipv6 then
      pending("IPv6 not checked: this machine has no ::1 loopback address")
      return
    end
    local proc = server.start_listeners({ "--listen", "[::1]:0", "--listen", "127.0.0.1:0", fixture("tagged.lua") })
    local six, four = table.unpack(proc.listeners)
    assert.are.same({ "tcp", "::1", "tcp", "127.0.0.1" }, { six.kind, six.host, four.kind, four.host })
    assert.matches("luaecho: listening on [::1]:" .. six.port .. "\n", proc:stderr(), 1, true)
    local conn = client.connect("::1", six.port)
    conn:send_all("six\n")
    local want = ("v1|stream|[::1]:%d|1|six\n"):format(six.port)
    assert.are.equal(want, conn:receive_exactly(#want))
  end)
end)

describe("UDP listeners #integration", function()
  it("are served by the bundled echo.lua with no script: 'echo:' + data, and 'echo:' for an empty datagram",
    function()
      local proc = server.start_listeners({ "--listen", "udp:127.0.0.1:0" })
      local udp = proc.listeners[1]
      local sock = udp_socket()
      assert.are.equal("echo:hello", ask_udp(sock, udp, "hello"))
      assert.are.equal("echo:", ask_udp(sock, udp, ""))
      assert.are.equal("echo:again", ask_udp(sock, udp, "again"))
    end)

  it("deliver a 65507-byte datagram whole", function()
    local proc = server.start_listeners({ "--listen", "udp:127.0.0.1:0", fixture("tagged.lua") })
    local udp = proc.listeners[1]
    local sock = udp_socket()
    assert.are.equal("len|65507", ask_udp(sock, udp, text.payload(65507, 3)))
    assert.are.equal("len|1001", ask_udp(sock, udp, text.payload(1001, 4)))
  end)

  it("log a failing datagram_received and answer the next datagram", function()
    local proc = server.start_listeners({ "--listen", "udp:127.0.0.1:0", fixture("tagged.lua") })
    local udp = proc.listeners[1]
    local sock = udp_socket()
    assert(sock:sendto("boom", udp.host, udp.port))
    proc:wait_output("stderr", "datagram_received failed for udp:127%.0%.0%.1:" .. udp.port
      .. ": [^\n]*tagged%.lua:%d+: datagram exploded", TIMEOUT, "the failure's log line")
    assert.are.equal(("v1|udp|udp:127.0.0.1:%d|1|next"):format(udp.port), ask_udp(sock, udp, "next"))
    assert.is_false(proc:exited())
  end)

  it("get a fresh instance of the new code on SIGHUP, and refuse (keeping it) newer code with no datagram_received",
    function()
      local scratch = files.scratch("listen-reload")
      local original = files.read(fixture("tagged.lua"))
      local script = scratch:write("tagged.lua", original)
      local proc = server.start_listeners({ "--listen", "udp:127.0.0.1:0", script })
      local udp = proc.listeners[1]
      local sock = udp_socket()
      assert.are.equal("v1", fields(ask_udp(sock, udp, "before")).version)

      local edited = original:gsub('local VERSION = "v1"', 'local VERSION = "v2"')
      assert.are_not.equal(original, edited)
      scratch:replace("tagged.lua", edited)
      proc:signal("sighup")
      proc:wait_output("stderr", "luaecho: reloaded " .. text.literal(script) .. " %(generation %d+%)\n",
        TIMEOUT, "the 'reloaded' line")
      local after = fields(ask_udp(sock, udp, "after"))
      assert.are.same({ version = "v2", kind = "udp", listener = "udp:127.0.0.1:" .. udp.port, worker = 1,
        data = "after" }, after)

      scratch:replace("tagged.lua", files.read(fixture("no_datagram.lua")))
      proc:signal("sighup")
      -- A reload the UDP listener cannot take fails as a whole, as start-up
      -- would, naming the listener: everything keeps the code it has.
      proc:wait_output("stderr", "reload %(SIGHUP%) failed, still serving generation 2: udp:127%.0%.0%.1:"
        .. udp.port .. "[^\n]*no datagram_received", TIMEOUT, "the reload's refusal of the new code")
      assert.are.equal("v2", fields(ask_udp(sock, udp, "kept")).version)
    end)
end)

describe("--workers 2 with a UDP and a Unix listener #integration", function()
  it("answers every datagram and connection, and both workers serve each listener", function()
    local path = socket_path()
    local proc = server.start_listeners({ "--workers", "2", "--listen", "udp:127.0.0.1:0",
      "--listen", "unix:" .. path, fixture("tagged.lua") })
    local udp = proc.listeners[1]
    assert.are.equal("unix", proc.listeners[2].kind)

    -- SO_REUSEPORT spreads datagrams by a hash of the source address and
    -- port: 40 sockets, 40 source ports. All 40 on one worker: 1 in 2^39.
    local udp_workers, socks = {}, {}
    for i = 1, 40 do
      socks[i] = udp_socket()
      assert(socks[i]:sendto("d" .. i, udp.host, udp.port))
    end
    for i, sock in ipairs(socks) do
      local answer, err = sock:receivefrom(65536)
      assert(answer, ("datagram %d unanswered: %s"):format(i, tostring(err)))
      local got = fields(answer)
      assert.are.same({ "udp", "udp:127.0.0.1:" .. udp.port, "d" .. i }, { got.kind, got.listener, got.data })
      udp_workers[got.worker] = (udp_workers[got.worker] or 0) + 1
    end
    assert.is_truthy(udp_workers[1] and udp_workers[2], ("datagrams by worker: 1: %s, 2: %s"):format(
      tostring(udp_workers[1]), tostring(udp_workers[2])))

    -- One socket both workers accept on: 20 connections, all answered; and
    -- more (up to the deadline) until each worker has taken one.
    local unix_workers, n = {}, 0
    local function one_connection()
      n = n + 1
      local sock = unix_connect(path)
      local got = fields(ask_unix(sock, "c" .. n))
      assert.are.same({ "stream", "unix:" .. path, "c" .. n }, { got.kind, got.listener, got.data })
      unix_workers[got.worker] = (unix_workers[got.worker] or 0) + 1
      sock:close()
    end
    for _ = 1, 20 do one_connection() end
    wait.until_true(function()
      if unix_workers[1] and unix_workers[2] then return true end
      one_connection()
    end, TIMEOUT, "a Unix connection on each worker")
  end)
end)
