-- --proxy-protocol end to end: a real HAProxy (send-proxy, send-proxy-v2) in
-- front of luaecho, headers written by hand (v1, v2, split, LOCAL, UNKNOWN),
-- the malformed and the silent ones closed before the script sees them, the
-- warnings rate-limited, a Unix listener, and the usage error.
-- The fixture (spec/fixtures/proxy/peers.lua) writes each client one line,
-- "peer HOST PORT socket SHOST SPORT listener NAME worker N" ("-" for a missing or
-- empty value), prints it on stdout after "MADE ", then echoes.
local socket = require "socket"
local unix = require "socket.unix"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local haproxy = require "support.haproxy"
local server = require "support.server"
local wait = require "support.wait"

local FIXTURE = "proxy/peers.lua"
local V2_SIGNATURE = "\r\n\r\n\0\r\nQUIT\n"
local WARNING = "luaecho: warning: closing "
-- What follows the reason in every rejection line.
local ADVICE = "; with --proxy-protocol every connection starts with one (HAProxy: send-proxy or send-proxy-v2)"

-- Unix stream sockets opened by a spec, closed in after_each.
local unix_socks = {}

-- luaecho with --proxy-protocol (and `extra` flags) serving the fixture.
local function start_proxied(extra, opts)
  local args = { "--proxy-protocol" }
  for _, arg in ipairs(extra or {}) do args[#args + 1] = arg end
  args[#args + 1] = server.fixture(FIXTURE)
  return server.start(args, opts)
end

-- One line (without its LF) from a luasocket stream within `timeout` s.
local function receive_line(sock, timeout)
  sock:settimeout(timeout or 5)
  local line, err, partial = sock:receive("*l")
  if not line then
    error(("no report line (%s) after %q"):format(err, partial or ""), 2)
  end
  return line
end

-- The fixture's report line, parsed.
local function parse_report(line)
  local host, port, shost, sport, listener, worker =
    line:match("^peer (%S+) (%S+) socket (%S+) (%S+) listener (%S+) worker (%S+)$")
  assert(host, "not a report line: " .. line)
  return { host = host, port = tonumber(port) or port, socket_host = shost,
           socket_port = tonumber(sport) or sport, listener = listener, worker = tonumber(worker) or worker }
end

-- Connect, send `bytes` in one send, return the conn and its report.
local function connect_and_send(proc, bytes)
  local conn = client.connect(proc.host, proc.port)
  conn:send_all(bytes)
  return conn, parse_report(receive_line(conn.sock))
end

-- Lines of stdout saying a connection reached the script.
local function made_count(proc)
  return proc:count("stdout", "^MADE ")
end

-- A v1 header line naming `src`:`sport` (to `dst`:`dport`).
local function v1(family, src, dst, sport, dport)
  return ("PROXY %s %s %s %d %d\r\n"):format(family, src, dst, sport, dport)
end

-- A v2 header, byte by byte: signature, version/command, family/protocol,
-- the length of what follows, and `body` (addresses, ports, TLVs).
local function v2(ver_cmd, fam, body)
  return V2_SIGNATURE .. string.char(ver_cmd, fam) .. string.pack(">I2", #body) .. body
end

-- The address block of a v2 PROXY over TCP4 (0x11).
local function v2_tcp4_body(src, dst, sport, dport)
  local function octets(ip)
    local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    return string.char(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
  end
  return octets(src) .. octets(dst) .. string.pack(">I2>I2", sport, dport)
end

-- A client the server must serve normally: a v1 header naming a distinct
-- address, data after it. Asserts its report and echo; the server must still run.
local function assert_still_served(proc)
  assert.is_false(proc:exited(), "luaecho exited\n" .. proc:describe())
  local conn, report = connect_and_send(proc, v1("TCP4", "198.51.100.77", "203.0.113.1", 40077, 80) .. "still")
  assert.are.equal("198.51.100.77", report.host)
  assert.are.equal(40077, report.port)
  assert.are.equal("still", conn:receive_exactly(5))
  conn:close()
end

-- `conn` was closed by the server without a byte written to it (the
-- script's report would be one), with one warning naming it and `reason`,
-- and the script never saw it (no MADE line with its port).
local function assert_rejected(proc, conn, reason)
  local _, my_port = conn:sockname()
  local data, how = conn:receive_until_close(5)
  assert.are.equal("", data, "a rejected connection got bytes back")
  assert.is_truthy(how == "closed" or how == "connection reset by peer", "ended by " .. tostring(how))
  local line = WARNING .. "127.0.0.1:" .. my_port .. " before serving it: " .. reason .. ADVICE .. "\n"
  proc:wait_output("stderr", line:gsub("%p", "%%%0"), 5, "the warning line: " .. line)
  assert.is_nil(proc:stdout():find("socket 127.0.0.1 " .. my_port .. " ", 1, true),
    "the rejected connection reached the script:\n" .. proc:stdout())
  conn:close()
end

-- After each spec: HAProxy first (it holds connections to luaecho), then
-- clients, servers and scratch directories; no crash, no sanitizer report.
local function teardown()
  for sock in pairs(unix_socks) do sock:close() end
  unix_socks = {}
  local problems = haproxy.stop_all()
  for _, problem in ipairs(cleanup.all()) do problems[#problems + 1] = problem end
  assert.are.same({}, problems)
end

describe("--proxy-protocol #integration", function()
  after_each(teardown)

  describe("behind a real HAProxy", function()
    -- The harness checks itself: HAProxy sends the version its config names
    -- (to a plain socket here), so the two specs below test v1 and v2.
    it("sends a v1 line with send-proxy and a v2 header with send-proxy-v2", function()
      local backend = assert(socket.bind("127.0.0.1", 0))
      local _, backend_port = backend:getsockname()
      finally(function() backend:close() end)
      for mode, start in pairs({ ["send-proxy"] = "PROXY TCP4 127.0", -- 16 bytes each
                                 ["send-proxy-v2"] = V2_SIGNATURE .. "\x21\x11\0\x0c" }) do
        local lb = haproxy.start({ backend_port = tonumber(backend_port), send_proxy = mode })
        local conn = client.connect(lb.host, lb.port)
        conn:send_all("x")
        backend:settimeout(5)
        local accepted = assert(backend:accept())
        accepted:settimeout(5)
        local head = assert(accepted:receive(16))
        accepted:close()
        assert.are.equal(("%q"):format(start), ("%q"):format(head), mode .. " sent another header")
        conn:close()
        assert.are.same({}, lb:stop())
      end
    end)

    for _, mode in ipairs({ "send-proxy", "send-proxy-v2" }) do
      it("with " .. mode .. ": the script sees the client, socket_peername is HAProxy", function()
        local proc = start_proxied()
        local lb = haproxy.start({ backend_port = proc.port, send_proxy = mode })
        local conn = client.connect(lb.host, lb.port)
        local my_host, my_port = conn:sockname()
        conn:send_all("through haproxy")
        local report = parse_report(receive_line(conn.sock))
        assert.are.equal(my_host, report.host)
        assert.are.equal(my_port, report.port)
        assert.are.equal("127.0.0.1", report.socket_host) -- HAProxy's own outgoing address
        assert.is_number(report.socket_port)
        assert.are_not.equal(my_port, report.socket_port)
        assert.are.equal("127.0.0.1:" .. proc.port, report.listener)
        assert.are.equal("through haproxy", conn:receive_exactly(15))
        -- A second client: its own address, not the first one's.
        local other = client.connect(lb.host, lb.port)
        other:send_all("again")
        local second = parse_report(receive_line(other.sock))
        assert.are.equal(select(2, other:sockname()), second.port)
        assert.are.equal("again", other:receive_exactly(5))
        assert.are.equal(0, proc:count("stderr", "^" .. WARNING:gsub("%p", "%%%0")))
      end)
    end
  end)

  describe("with headers written by hand", function()
    local proc
    before_each(function() proc = start_proxied() end)

    it("takes a v1 TCP4 line and hands the bytes after it to the script", function()
      local conn = client.connect(proc.host, proc.port)
      local my_host, my_port = conn:sockname()
      -- One send: the header, then more than one read buffer of payload.
      local payload = ("0123456789abcdef"):rep(8192) .. "end"
      local header = v1("TCP4", "192.0.2.10", "192.0.2.20", 4711, 443)
      local line = ("peer 192.0.2.10 4711 socket %s %d listener 127.0.0.1:%d worker 1\n"):format(
        my_host, my_port, proc.port)
      local got = client.exchange({ { conn = conn, send = header .. payload, expect = #line + #payload } }, 10)[1]
      assert.are.equal(line, got:sub(1, #line))
      assert.is_true(got:sub(#line + 1) == payload, "the payload came back changed or short")
      assert.are.equal(1, made_count(proc))
    end)

    it("takes a v1 TCP6 line on an IPv4 socket", function()
      local conn, report = connect_and_send(proc, v1("TCP6", "2001:db8::1", "2001:db8::2", 61000, 443) .. "six")
      assert.are.equal("2001:db8::1", report.host)
      assert.are.equal(61000, report.port)
      assert.are.equal(select(2, conn:sockname()), report.socket_port)
      assert.are.equal("six", conn:receive_exactly(3))
    end)

    it("takes a v1 line of 107 bytes, the longest there is", function()
      local header = "PROXY UNKNOWN "
      header = header .. ("x"):rep(107 - #header - 2) .. "\r\n"
      assert.are.equal(107, #header)
      local conn, report = connect_and_send(proc, header .. "max")
      assert.are.equal(select(2, conn:sockname()), report.port)
      assert.are.equal("max", conn:receive_exactly(3))
    end)

    it("keeps the socket's own peer for v1 PROXY UNKNOWN", function()
      local conn, report = connect_and_send(proc, "PROXY UNKNOWN\r\nunknown")
      local my_host, my_port = conn:sockname()
      assert.are.same({ my_host, my_port, my_host, my_port },
        { report.host, report.port, report.socket_host, report.socket_port })
      assert.are.equal("unknown", conn:receive_exactly(7))
    end)

    it("takes a v2 PROXY TCP4 header built byte by byte", function()
      local header = v2(0x21, 0x11, v2_tcp4_body("203.0.113.9", "127.0.0.1", 12345, 8080))
      assert.are.equal(16 + 12, #header)
      local conn, report = connect_and_send(proc, header .. "binary")
      assert.are.equal("203.0.113.9", report.host)
      assert.are.equal(12345, report.port)
      assert.are.equal("127.0.0.1", report.socket_host)
      assert.are.equal(select(2, conn:sockname()), report.socket_port)
      assert.are.equal("binary", conn:receive_exactly(6))
    end)

    it("takes a v2 PROXY TCP6 header, and skips its TLVs", function()
      local addresses = ("\x20\x01\x0d\xb8" .. ("\0"):rep(11) .. "\x05") -- 2001:db8::5
        .. ("\0"):rep(15) .. "\x01" .. string.pack(">I2>I2", 50000, 443)  -- ::1
      local tlv = "\x02" .. string.pack(">I2", 11) .. "example.org" -- PP2_TYPE_AUTHORITY
      local conn, report = connect_and_send(proc, v2(0x21, 0x21, addresses .. tlv) .. "tlv")
      assert.are.equal("2001:db8::5", report.host)
      assert.are.equal(50000, report.port)
      assert.are.equal("tlv", conn:receive_exactly(3))
    end)

    it("keeps the socket's own peer for a v2 LOCAL header", function()
      local conn, report = connect_and_send(proc, v2(0x20, 0x00, "") .. "local")
      local my_host, my_port = conn:sockname()
      assert.are.same({ my_host, my_port, my_host, my_port },
        { report.host, report.port, report.socket_host, report.socket_port })
      assert.are.equal("local", conn:receive_exactly(5))
    end)

    -- Each header in pieces with pauses between them (the pauses are what is
    -- tested: each piece arrives in a read of its own); nothing is served
    -- before the last piece, and the bytes after the header survive.
    local split = {
      v1 = { "PROX", "Y TCP4 192.0.2.", "33 192.0.2.44 5", "555 80\r", "\nsplit" },
      v2 = { "\r\n\r\n\0\r", "\nQUIT\n\x21\x11\0", "\x0c\xc0\x00\x02\x21\xc0\x00\x02", "\x2c\x15\xb3\x00\x50split" },
    }
    for version, pieces in pairs(split) do
      it("takes a " .. version .. " header that arrives in pieces", function()
        local conn = client.connect(proc.host, proc.port)
        for i, piece in ipairs(pieces) do
          if i > 1 then wait.nap(0.1) end
          conn:send_all(piece)
          if i < #pieces then
            conn.sock:settimeout(0)
            local data, err = conn.sock:receive(1)
            assert.are.same({ nil, "timeout" }, { data, err }, "served before piece " .. i + 1)
          end
        end
        local report = parse_report(receive_line(conn.sock))
        assert.are.equal("192.0.2.33", report.host)
        assert.are.equal(5555, report.port)
        assert.are.equal("split", conn:receive_exactly(5))
      end)
    end
  end)

  describe("closes before the script sees it", function()
    local proc
    before_each(function() proc = start_proxied() end)

    -- Each runs on a fresh server: a repeated reason is rate-limited.
    local malformed = {
      { "what is no header at all", "GET / HTTP/1.0\r\n\r\n", "not a PROXY protocol header" },
      -- 108 bytes, CRLF included: one past the longest line there is.
      { "a v1 line of 108 bytes", "PROXY UNKNOWN " .. ("x"):rep(92) .. "\r\n", "v1: no CRLF within 107 bytes" },
      -- No CRLF at all, and the client stays: the length decides, not a close or the timeout.
      { "a v1 line with no CRLF in 107 bytes", "PROXY UNKNOWN " .. ("x"):rep(120), "v1: no CRLF within 107 bytes" },
      { "a v1 line with a bad address", v1("TCP4", "192.0.2.300", "192.0.2.2", 1234, 80),
        "v1: bad source address" },
      { "a v2 PROXY header of the AF_UNIX family", v2(0x21, 0x31, ("\0"):rep(216)),
        "v2: unsupported address family or protocol" },
      { "a v2 PROXY header over UDP", v2(0x21, 0x12, v2_tcp4_body("192.0.2.1", "192.0.2.2", 53, 53)),
        "v2: unsupported address family or protocol" },
    }
    for _, case in ipairs(malformed) do
      local what, bytes, reason = table.unpack(case)
      it(what .. ", with a warning, and goes on serving others", function()
        local good = client.connect(proc.host, proc.port) -- open before, served after
        local conn = client.connect(proc.host, proc.port)
        conn:send_all(bytes)
        assert_rejected(proc, conn, reason)
        good:send_all(v1("TCP4", "192.0.2.50", "192.0.2.2", 5050, 80) .. "good")
        local report = parse_report(receive_line(good.sock))
        assert.are.equal(5050, report.port)
        assert.are.equal("good", good:receive_exactly(4))
        assert_still_served(proc)
        assert.are.equal(2, made_count(proc))
        assert.are.equal(1, proc:count("stderr", "^" .. WARNING:gsub("%p", "%%%0")))
      end)
    end

    it("a peer that closes half-way through its header", function()
      local conn = client.connect(proc.host, proc.port)
      local _, my_port = conn:sockname()
      conn:send_all("PROXY TCP4 192.0.2.1 ")
      conn:shutdown_send()
      local data = conn:receive_until_close(5)
      assert.are.equal("", data)
      proc:wait_output("stderr", "closing 127%.0%.0%.1:" .. my_port
        .. " before serving it: the peer closed before its PROXY header was complete;", 5)
      assert_still_served(proc)
      assert.are.equal(1, made_count(proc))
    end)
  end)

  describe("with --proxy-timeout 0.5", function()
    local proc
    before_each(function() proc = start_proxied({ "--proxy-timeout", "0.5" }) end)

    for what, opening in pairs({ ["a silent client"] = "", ["a header that stops half-way"] = "PROXY TCP4 19" }) do
      it("closes " .. what .. " at the timeout and serves others meanwhile", function()
        local silent = client.connect(proc.host, proc.port)
        local started = wait.now()
        if #opening > 0 then silent:send_all(opening) end
        -- A client that comes meanwhile is served at once.
        local good, report = connect_and_send(proc, v1("TCP4", "192.0.2.60", "192.0.2.2", 6060, 80) .. "meanwhile")
        assert.are.equal(6060, report.port)
        assert.are.equal("meanwhile", good:receive_exactly(9))
        if wait.now() - started < 0.4 then -- (on a loaded machine it may not be)
          silent.sock:settimeout(0)
          assert.are.equal("timeout", select(2, silent.sock:receive(1)), "closed before its timeout")
        end
        assert_rejected(proc, silent, "no complete PROXY header within 0.5 s (--proxy-timeout)")
        local elapsed = wait.now() - started
        assert.is_true(elapsed >= 0.4, ("closed after %.3f s, before the 0.5 s timeout"):format(elapsed))
        assert.is_true(elapsed < 3, ("closed after %.3f s, not at the 0.5 s timeout"):format(elapsed))
        -- The good one is still open and served after the timeout.
        good:send_all("later")
        assert.are.equal("later", good:receive_exactly(5))
        assert_still_served(proc)
      end)
    end
  end)

  it("rate-limits the warnings of a flood of bad connections", function()
    local proc = start_proxied()
    for _ = 1, 50 do
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("GET / HTTP/1.0\r\n\r\n")
      local data = conn:receive_until_close(5)
      assert.are.equal("", data)
      conn:close()
    end
    assert_still_served(proc)
    local warnings = proc:count("stderr", "^" .. WARNING:gsub("%p", "%%%0"))
    assert.is_true(warnings >= 1, "no warning at all\n" .. proc:stderr())
    assert.is_true(warnings < 5, warnings .. " warnings for 50 bad connections\n" .. proc:stderr())
    assert.are.equal(1, made_count(proc))
  end)

  it("reads the header on a Unix listener too", function()
    local scratch = files.scratch("proxy")
    local path = scratch:path("s.sock")
    local proc = server.spawn({ "--listen", "unix:" .. path, "--listen", "127.0.0.1:0", "--proxy-protocol",
                                server.fixture(FIXTURE) })
    proc:wait_count("stderr", "^luaecho: listening on ", 2, 5, "both 'listening on' lines")
    assert.is_truthy(proc:stderr():find("luaecho: listening on unix:" .. path .. "\n", 1, true), proc:stderr())
    proc.host = "127.0.0.1"
    proc.port = tonumber(proc:stderr():match("luaecho: listening on 127%.0%.0%.1:(%d+)\n"))

    local function unix_connect()
      local sock = unix.stream()
      unix_socks[sock] = true
      sock:settimeout(5)
      assert(sock:connect(path))
      return sock
    end

    local sock = unix_connect()
    assert(sock:send(v1("TCP4", "192.0.2.70", "192.0.2.2", 7070, 80) .. "over unix"))
    local report = parse_report(receive_line(sock))
    assert.are.equal("192.0.2.70", report.host)
    assert.are.equal(7070, report.port)
    assert.are.equal("-", report.socket_host) -- the client's path: "" for an unbound client
    assert.are.equal("-", report.socket_port) -- and no port
    assert.are.equal("unix:" .. path, report.listener)
    assert.are.equal("over unix", sock:receive(9))

    -- Without a header, a Unix client is refused like a TCP one.
    local bare = unix_connect()
    assert(bare:send("no header"))
    local data, err, partial = bare:receive("*a") -- until the server closes it
    assert.are_not.equal("timeout", err, "still open")
    assert.are.equal("", data or partial)
    proc:wait_output("stderr", "closing unix peer[^\n]* before serving it: not a PROXY protocol header;", 5)
    assert.are.equal(1, made_count(proc))

    -- And the TCP listener of the same process wants its header as well.
    assert_still_served(proc)
  end)

  describe("with --workers 2 and no SO_REUSEPORT (worker 1 hands sockets round)", function()
    local HANDOFF = { LUAECHO_NO_REUSEPORT = "1" }

    -- Six clients, each with a header naming 192.0.2.(100 + i): their reports.
    local function six_reports(proc)
      local reports = {}
      for i = 1, 6 do
        local header = v1("TCP4", "192.0.2." .. 100 + i, "192.0.2.2", 41000 + i, 80)
        local conn, report = connect_and_send(proc, header .. "w")
        assert.are.equal("w", conn:receive_exactly(1))
        report.my_port = select(2, conn:sockname())
        reports[i] = report
        conn:close()
      end
      return reports
    end

    it("reads the header in every worker, on handed-over sockets too", function()
      local proc = start_proxied({ "--workers", "2" }, { env = HANDOFF })
      local seen = {}
      for i, report in ipairs(six_reports(proc)) do
        assert.are.equal("192.0.2." .. 100 + i, report.host, "worker " .. report.worker)
        assert.are.equal(41000 + i, report.port, "worker " .. report.worker)
        assert.are.equal(report.my_port, report.socket_port, "worker " .. report.worker)
        seen[report.worker] = true
      end
      assert.are.same({ [1] = true, [2] = true }, seen)
      local bad = client.connect(proc.host, proc.port)
      bad:send_all("no header\r\n")
      assert_rejected(proc, bad, "not a PROXY protocol header")
      assert_still_served(proc)
    end)

    -- Fails on a bug (not of the PROXY stage): a worker that is handed its
    -- sockets never learns its listener's name (server_open_without_socket).
    it("names the listener in every worker", function()
      local proc = start_proxied({ "--workers", "2" }, { env = HANDOFF })
      for _, report in ipairs(six_reports(proc)) do
        assert.are.equal("127.0.0.1:" .. proc.port, report.listener, "listener in worker " .. report.worker)
      end
    end)
  end)

  -- The timeout is kept in whole milliseconds, where 0 would mean no PROXY
  -- stage at all: a timeout the command line accepts must never turn the
  -- header off. Either it is refused (exit 2), or a client's header is still
  -- read (or its connection closed at the timeout), never handed to the
  -- script as data with the load balancer taken for the client.
  it("never lets a --proxy-timeout below a millisecond turn the header off", function()
    local proc = server.spawn({ "--proxy-protocol", "--proxy-timeout", "0.0004", "--port", "0",
                                server.fixture(FIXTURE) })
    local listening = wait.until_true(function()
      if proc:stderr():find("luaecho: listening on ", 1, true) then return "listening" end
      if proc:exited() then return "exited" end
    end, 5, "the 'listening on' line or an exit")
    if listening == "exited" then
      assert.are.equal(2, proc.code, proc:describe())
      return
    end
    proc:wait_listening()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all(v1("TCP4", "192.0.2.80", "192.0.2.2", 8080, 80) .. "data")
    conn.sock:settimeout(5)
    local line, err, partial = conn.sock:receive("*l")
    if not line then -- closed: at its (tiny) timeout, as it should be then
      assert.are.same({ "closed", "" }, { err, partial })
      return
    end
    local report = parse_report(line)
    assert.are.same({ "192.0.2.80", 8080 }, { report.host, report.port }, "the header was not read: " .. line)
    assert.are.equal("data", conn:receive_exactly(4))
  end)

  it("refuses --proxy-timeout without --proxy-protocol (exit 2)", function()
    local code, out, err = server.run({ "--proxy-timeout", "2", "--port", "0", server.fixture(FIXTURE) }, nil, 10)
    assert.are.equal(2, code, err)
    assert.are.equal("", out)
    assert.matches("^luaecho: %-%-proxy%-timeout needs %-%-proxy%-protocol\n", err)
    local _, luaecho_lines = err:gsub("luaecho: ", "")
    assert.are.equal(1, luaecho_lines, err)
  end)
end)
