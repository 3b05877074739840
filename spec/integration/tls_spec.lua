-- TLS (issue 16) end to end: certificates made at test time by the openssl
-- command (support.tls), clients that are not luaecho (`openssl s_client`,
-- Python's ssl module: spec/fixtures/tls/client.py) against the TLS echo;
-- TLS 1.2 and 1.3 served, 1.1 refused; SNI; mutual TLS; ALPN; the handshake
-- timeout; bad input (plaintext, a cut ClientHello, a slow one, a reset,
-- garbage after the handshake), each closing its own connection with at
-- most one log line; the command line's usage and file errors; a
-- certificate swapped by SIGHUP; `luaecho run` as a TLS client; STARTTLS in
-- both styles.
-- Fixtures (spec/fixtures/tls/): info.lua writes each client a line of its
-- get_extra_info("tls") and prints MADE/LOST on stdout; starttls_protocol.lua
-- and starttls_streams.lua answer STARTTLS; run_client.lua is the client.
local socket = require "socket"
local prometheus = require "support.prometheus"
local cleanup = require "support.cleanup"
local client = require "support.client"
local exits = require "support.exits"
local files = require "support.files"
local server = require "support.server"
local text = require "support.text"
local tls = require "support.tls"
local wait = require "support.wait"

local FAILED_LINE = "^luaecho: warning: TLS handshake with (%S+) failed: (.+)$"

local pki

-- Start luaecho with `args`, one listener per --listen; returns the Proc,
-- with proc.port the first tls: listener's port (proc.tls_ports all of them).
local function start(args, opts)
  local proc = server.start_listeners(args, opts)
  proc.tls_ports = {}
  for _, listener in ipairs(proc.listeners) do
    local port = listener.name:match("^tls:127%.0%.0%.1:(%d+)$")
    if port then proc.tls_ports[#proc.tls_ports + 1] = tonumber(port) end
  end
  proc.host, proc.port = "127.0.0.1", proc.tls_ports[1]
  return proc
end

-- The TLS echo with the default certificate, `extra` flags, then `script` if any.
local function start_tls(extra, script, opts)
  local args = pki:server_args(extra)
  if script then args[#args + 1] = server.fixture(script) end
  local proc = start(args, opts)
  proc.info = script == "tls/info.lua" -- writes a line before echoing
  return proc
end

-- The Python client against proc; `args` are its options after --port.
local function python(proc, args, timeout)
  local full = { "--port", proc.port }
  for _, arg in ipairs(args or {}) do full[#full + 1] = arg end
  return tls.python(full, timeout)
end

-- A verifying Python exchange: "ping" sent, "echo:ping" expected.
local function python_echo(proc, args)
  local full = { "--cafile", pki.ca, "--send", "ping", "--expect", 9 }
  for _, arg in ipairs(args or {}) do full[#full + 1] = arg end
  return python(proc, full)
end

local function describe_report(report)
  local parts = {}
  for k, v in pairs(report) do parts[#parts + 1] = ("%s=%s"):format(k, tostring(v)) end
  table.sort(parts)
  return table.concat(parts, "\n")
end

-- The server still serves a new TLS client.
local function assert_still_served(proc)
  assert.is_false(proc:exited(), "luaecho exited\n" .. proc:describe())
  local report = python_echo(proc, proc.info and { "--lines", 1 } or {})
  assert.are.equal("done", report.stage, describe_report(report))
  assert.matches("echo:ping$", report.received)
end

-- The handshake-failure warning lines so far: a list of { peer, reason }.
local function failure_lines(proc)
  local found = {}
  for _, line in ipairs(text.lines(proc:stderr())) do
    local peer, reason = line:match(FAILED_LINE)
    if peer then found[#found + 1] = { peer = peer, reason = reason, line = line } end
  end
  return found
end

-- Wait for one warning naming the client on local port `port`; returns its reason.
local function wait_failure_line(proc, port)
  return wait.until_true(function()
    for _, found in ipairs(failure_lines(proc)) do
      if found.peer == "127.0.0.1:" .. port then return found.reason end
    end
    if proc:exited() then error("luaecho exited\n" .. proc:describe(), 0) end
  end, 5, "the 'TLS handshake with 127.0.0.1:" .. port .. " failed' line")
end

-- At most one warning line per kind (per reason): `n` failures of one
-- kind make one line at most, whatever n.
local function assert_one_line_per_kind(proc)
  local seen = {}
  for _, found in ipairs(failure_lines(proc)) do
    assert.is_nil(seen[found.reason], ("a second warning for %q:\n%s"):format(found.reason, proc:stderr()))
    seen[found.reason] = true
  end
end

-- `conn` (luasocket, support.client) is closed by the server within
-- `timeout`; returns what it got and how long it waited.
local function assert_closed(conn, timeout)
  local started = wait.now()
  local data, how = conn:receive_until_close(timeout)
  assert.is_truthy(how == "closed" or how == "connection reset by peer", "ended by " .. tostring(how))
  assert.is_nil(data:find("echo:", 1, true), "the script answered a failed handshake")
  return data, wait.now() - started
end

-- A ClientHello as bytes (Python's, for localhost).
local function client_hello()
  local child = tls.python_spawn({ "--client-hello", "--servername", "localhost" })
  child:wait_exit(10)
  local hex = child:stdout():match("^(%x+)\n")
  child:stop()
  assert(hex and #hex > 200, "no ClientHello from the Python client")
  return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- Lines of stdout starting with `prefix`.
local function stdout_lines(proc, prefix)
  local found = {}
  for _, line in ipairs(text.lines(proc:stdout())) do
    if line:sub(1, #prefix) == prefix then found[#found + 1] = line end
  end
  return found
end

describe("TLS #integration", function()
  setup(function() pki = tls.pki() end)
  teardown(function() tls.remove_all() end)
  after_each(function()
    tls.stop_clients()
    cleanup.expect_clean()
  end)

  describe("the TLS echo", function()
    it("prints its tls: listener and echoes to openssl s_client, verified, over TLS 1.3", function()
      local proc = start_tls()
      assert.matches("^tls:127%.0%.0%.1:%d+$", proc.listeners[1].name)
      assert.is_true(proc.port > 0)
      local s = tls.s_client(proc.host, proc.port, { "-CAfile", pki.ca, "-servername", "localhost",
        "-verify_return_error", "-verify_hostname", "localhost" })
      s:write("hello over tls\n")
      local out = s:wait_for("echo:hello over tls\n")
      local session = tls.s_client_session(out)
      assert.are.equal("CN = localhost", session.subject)
      assert.are.equal("TLSv1.3", session.protocol)
      assert.are.equal(0, session.verify_code, out)
      s:write("Q and R are data here\n")
      s:wait_for("echo:Q and R are data here\n")
      s:close_stdin()
      assert.are.equal(0, s:wait_exit(5), s:describe())
      assert.are.same({}, failure_lines(proc))
    end)

    it("echoes to Python's ssl client with the hostname checked", function()
      local proc = start_tls()
      local report = python_echo(proc, { "--servername", "localhost", "--check-hostname" })
      assert.are.equal("done", report.stage, describe_report(report))
      assert.are.equal("echo:ping", report.received)
      assert.are.equal("TLSv1.3", report.version)
      assert.are.equal("CN=localhost", report.peer_subject)
      assert.is_string(report.cipher)
      -- Verified by IP address too (the certificate names 127.0.0.1).
      report = python_echo(proc, { "--servername", "127.0.0.1", "--check-hostname" })
      assert.are.equal("done", report.stage, describe_report(report))
    end)

    it("serves TLS 1.2 and TLS 1.3 and refuses TLS 1.1", function()
      local proc = start_tls()
      local v12 = python_echo(proc, { "--max", "1.2" })
      assert.are.equal("done", v12.stage, describe_report(v12))
      assert.are.equal("TLSv1.2", v12.version)
      assert.are.equal("echo:ping", v12.received)
      local v13 = python_echo(proc, { "--min", "1.3" })
      assert.are.equal("done", v13.stage, describe_report(v13))
      assert.are.equal("TLSv1.3", v13.version)
      -- s_client too, both versions.
      for flag, version in pairs({ ["-tls1_2"] = "TLSv1.2", ["-tls1_3"] = "TLSv1.3" }) do
        local s = tls.s_client(proc.host, proc.port, { flag, "-CAfile", pki.ca })
        s:write("v\n")
        local session = tls.s_client_session(s:wait_for("echo:v\n"))
        assert.are.equal(version, session.protocol)
        s:stop()
      end
      -- TLS 1.1 (the client allows it at security level 0): the server says no.
      local v11 = python(proc, { "--max", "1.1", "--send", "x", "--expect", 1 })
      assert.are.equal("handshake", v11.stage, describe_report(v11))
      assert.matches("PROTOCOL_VERSION", (v11.error:upper():gsub(" ", "_")))
      local s = tls.s_client(proc.host, proc.port, { "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0" })
      assert.are_not.equal(0, s:wait_exit(5))
      assert.is_nil(s:stdout():find("New, TLSv1.1", 1, true), s:describe())
      assert_one_line_per_kind(proc)
      assert_still_served(proc)
    end)

    it("tells the script the session through get_extra_info(\"tls\")", function()
      local proc = start_tls({ "--tls-cert", pki.a_cert, "--tls-key", pki.a_key, "--tls-alpn", "h2,http/1.1" },
        "tls/info.lua")
      for _, max in ipairs({ "1.2", "1.3" }) do
        local report = python(proc, { "--cafile", pki.ca, "--servername", "a.test", "--alpn", "h2", "--max", max,
          "--lines", 1 })
        assert.are.equal("done", report.stage, describe_report(report))
        assert.are.equal(("tls version=TLSv1.%s cipher=%s server_name=a.test alpn=h2 peer_subject=- "
          .. "peer_verified=false\n"):format(max:sub(3), report.cipher), report.received)
      end
      -- No name, no ALPN: those fields are nil.
      local bare = python(proc, { "--cafile", pki.ca, "--lines", 1 })
      assert.are.equal(("tls version=TLSv1.3 cipher=%s server_name=- alpn=- peer_subject=- peer_verified=false\n")
        :format(tostring(bare.cipher)), bare.received)
    end)

    it("gives get_extra_info(\"tls\") nil on a plain connection", function()
      local proc = start({ "--listen", "127.0.0.1:0", "--listen", "tls:127.0.0.1:0", "--tls-cert", pki.server_cert,
        "--tls-key", pki.server_key, server.fixture("tls/info.lua") })
      local conn = client.connect("127.0.0.1", proc.listeners[1].port)
      assert.are.equal("tls nil\n", conn:receive_exactly(8))
    end)

    it("serves a tls:unix: listener", function()
      local scratch = files.scratch("tls-unix")
      local path = scratch:path("tls.sock")
      local proc = server.start_listeners({ "--listen", "tls:unix:" .. path, "--tls-cert", pki.server_cert,
        "--tls-key", pki.server_key })
      assert.are.equal("tls:unix:" .. path, proc.listeners[1].name)
      local s = tls.s_client(nil, nil, { "-unix", path, "-CAfile", pki.ca, "-verify_return_error" })
      s:write("over unix\n")
      local session = tls.s_client_session(s:wait_for("echo:over unix\n"))
      assert.are.equal(0, session.verify_code)
    end)
  end)

  describe("SNI", function()
    local proc
    before_each(function()
      proc = start_tls({ "--tls-cert", pki.a_cert, "--tls-key", pki.a_key,
                         "--tls-cert", pki.b_cert, "--tls-key", pki.b_key })
    end)

    it("picks the certificate that names the server name, else the first", function()
      for name, subject in pairs({ ["a.test"] = "CN=a.test", ["b.test"] = "CN=b.test",
                                   ["localhost"] = "CN=localhost", ["c.test"] = "CN=localhost" }) do
        local report = python_echo(proc, { "--servername", name })
        assert.are.equal("done", report.stage, name .. ":\n" .. describe_report(report))
        assert.are.equal(subject, report.peer_subject, "the certificate served for " .. name)
      end
      -- Hostname checked by the client: a.test is a.test's.
      local checked = python_echo(proc, { "--servername", "a.test", "--check-hostname" })
      assert.are.equal("done", checked.stage, describe_report(checked))
    end)

    it("serves the default certificate to a client that sends no name", function()
      local report = python_echo(proc)
      assert.are.equal("CN=localhost", report.peer_subject, describe_report(report))
      local s = tls.s_client(proc.host, proc.port, { "-noservername", "-CAfile", pki.ca })
      s:write("x\n")
      assert.are.equal("CN = localhost", tls.s_client_session(s:wait_for("echo:x\n")).subject)
    end)

    it("shows openssl s_client b.test's certificate for -servername b.test", function()
      local s = tls.s_client(proc.host, proc.port, { "-servername", "b.test", "-CAfile", pki.ca,
        "-verify_return_error", "-verify_hostname", "b.test" })
      s:write("x\n")
      local out = s:wait_for("echo:x\n")
      local session = tls.s_client_session(out)
      assert.are.equal("CN = b.test", session.subject)
      assert.are.equal(0, session.verify_code, out)
    end)
  end)

  describe("mutual TLS", function()
    local proc
    before_each(function() proc = start_tls({ "--tls-client-ca", pki.ca }, "tls/info.lua") end)

    it("accepts a client certificate signed by the CA and shows it to the script", function()
      for _, max in ipairs({ "1.2", "1.3" }) do
        local report = python(proc, { "--cafile", pki.ca, "--servername", "localhost", "--max", max,
          "--cert", pki.client_cert, "--key", pki.client_key, "--lines", 1, "--send", "hi", "--expect", 7 })
        assert.are.equal("done", report.stage, describe_report(report))
        local line = report.received:match("^([^\n]*)\n")
        assert.matches("^tls version=TLSv1%." .. max:sub(3) .. " cipher=%S+ server_name=localhost alpn=%- "
          .. "peer_subject=CN=client peer_verified=true$", line)
        assert.are.equal("echo:hi", report.received:sub(#line + 2))
      end
    end)

    it("refuses a client without a certificate and one with a self-signed certificate", function()
      local refused = {
        { "--max", "1.3" },
        { "--max", "1.2" },
        { "--cert", pki.selfsigned_cert, "--key", pki.selfsigned_key },
        { "--cert", pki.selfsigned_cert, "--key", pki.selfsigned_key, "--max", "1.2" },
      }
      for _, extra in ipairs(refused) do
        local args = { "--cafile", pki.ca, "--lines", 1 }
        for _, arg in ipairs(extra) do args[#args + 1] = arg end
        local report = python(proc, args)
        -- TLS 1.3: the client's side of the handshake ends before the
        -- server has checked the certificate; the refusal comes at the read.
        assert.are_not.equal("done", report.stage, table.concat(extra, " ") .. "\n" .. describe_report(report))
        assert.is_string(report.error)
        assert.are.equal("", report.received)
      end
      assert.are.same({}, stdout_lines(proc, "MADE "))
      assert_one_line_per_kind(proc)
      assert.is_true(#failure_lines(proc) >= 1, "no warning for 4 refused handshakes:\n" .. proc:stderr())
      local ok = python(proc, { "--cafile", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key, "--lines", 1 })
      assert.are.equal("done", ok.stage, describe_report(ok))
    end)
  end)

  describe("ALPN", function()
    local proc
    before_each(function() proc = start_tls({ "--tls-alpn", "h2,http/1.1" }) end)

    it("agrees on a protocol both offer", function()
      for _, protocol in ipairs({ "h2", "http/1.1" }) do
        local report = python_echo(proc, { "--alpn", "spdy/1," .. protocol })
        assert.are.equal("done", report.stage, describe_report(report))
        assert.are.equal(protocol, report.alpn, describe_report(report))
      end
      local s = tls.s_client(proc.host, proc.port, { "-alpn", "h2", "-CAfile", pki.ca })
      s:write("x\n")
      assert.are.equal("h2", tls.s_client_session(s:wait_for("echo:x\n")).alpn)
    end)

    it("gives no ALPN, and no failure, to a client offering none of them or nothing", function()
      for _, extra in ipairs({ { "--alpn", "spdy/1,imap" }, {} }) do
        local report = python_echo(proc, extra)
        assert.are.equal("done", report.stage, describe_report(report))
        assert.is_nil(report.alpn)
        assert.are.equal("echo:ping", report.received)
      end
    end)
  end)

  describe("the handshake timeout", function()
    it("closes a client that connects and sends nothing", function()
      local proc = start_tls({ "--tls-handshake-timeout", "0.5" }, "tls/info.lua")
      local started = wait.now()
      local conn = client.connect(proc.host, proc.port)
      assert_closed(conn, 5)
      local took = wait.now() - started
      assert.is_true(took >= 0.4 and took < 2.5, ("closed after %.2fs, timeout 0.5s"):format(took))
      assert.are.same({}, stdout_lines(proc, "MADE "))
      assert_one_line_per_kind(proc)
      assert_still_served(proc) -- a handshake well within 0.5 s
    end)

    it("waits 10 s by default", function()
      local proc = start_tls()
      local conn = client.connect(proc.host, proc.port)
      conn.sock:settimeout(1.5)
      local data, err = conn.sock:receive(1)
      assert.is_nil(data)
      assert.are.equal("timeout", err, "a silent client was closed within 1.5 s")
      assert_still_served(proc)
    end)
  end)

  describe("bad input", function()
    it("closes plaintext sent to the TLS port with one warning, and serves on", function()
      local proc = start_tls({}, "tls/info.lua")
      local bystander = tls.s_client(proc.host, proc.port, { "-CAfile", pki.ca })
      bystander:write("before\n")
      bystander:wait_for("echo:before\n")
      local conn = client.connect(proc.host, proc.port)
      local _, port = conn:sockname()
      conn:send_all("hello, plain text\n")
      assert_closed(conn, 3)
      local reason = wait_failure_line(proc, port)
      assert.matches("%a", reason)
      assert.matches("wrong version number", reason)
      assert.are.equal(1, #failure_lines(proc))
      assert.are.equal(1, #stdout_lines(proc, "MADE ")) -- the bystander only
      bystander:write("after\n")
      bystander:wait_for("echo:after\n")
      assert_still_served(proc)
    end)

    it("rate-limits the warnings of a flood of plaintext clients", function()
      local proc = start_tls()
      local conns = client.connect_many(proc.host, proc.port, 20)
      for _, conn in ipairs(conns) do conn:send_all("GET / HTTP/1.0\r\n\r\n") end
      for _, conn in ipairs(conns) do assert_closed(conn, 5) end
      proc:wait_count("stderr", FAILED_LINE:sub(1, -6), 1, 5, "a handshake warning")
      assert_one_line_per_kind(proc)
      assert_still_served(proc)
    end)

    it("closes a cut ClientHello ended by the client", function()
      local proc = start_tls({}, "tls/info.lua")
      local hello = client_hello()
      local conn = client.connect(proc.host, proc.port)
      local _, port = conn:sockname()
      conn:send_all(hello:sub(1, #hello // 2))
      conn:shutdown_send()
      local _, took = assert_closed(conn, 3) -- long before the 10 s timeout
      assert.is_true(took < 3)
      assert.is_true(#failure_lines(proc) <= 1, proc:stderr())
      for _, found in ipairs(failure_lines(proc)) do assert.are.equal("127.0.0.1:" .. port, found.peer) end
      assert.are.same({}, stdout_lines(proc, "MADE "))
      assert_still_served(proc)
    end)

    it("closes a cut ClientHello left hanging at the handshake timeout", function()
      local proc = start_tls({ "--tls-handshake-timeout", "0.5" }, "tls/info.lua")
      local hello = client_hello()
      local conn = client.connect(proc.host, proc.port)
      conn:send_all(hello:sub(1, 60))
      local _, took = assert_closed(conn, 3)
      assert.is_true(took < 2.5, ("closed after %.2fs"):format(took))
      assert_one_line_per_kind(proc)
      assert_still_served(proc)
    end)

    it("closes a ClientHello sent a byte at a time at the timeout, not at its last byte", function()
      -- A byte every 0.25 s against a 1 s timeout: every byte comes well
      -- within the timeout of the one before, and still the connection ends
      -- about 1 s after it began, long before the ClientHello does.
      local proc = start_tls({ "--tls-handshake-timeout", "1" }, "tls/info.lua")
      local hello = client_hello()
      local started = wait.now()
      local conn = client.connect(proc.host, proc.port)
      local sent, closed = 0, false
      while not closed and sent < 16 do
        sent = sent + 1
        local ok = pcall(conn.send_all, conn, hello:sub(sent, sent), 1)
        if not ok then closed = true break end
        -- Wait up to 0.25 s for the server to close (readable), not longer.
        local readable = socket.select({ conn.sock }, nil, 0.25)
        if readable[1] then
          conn.sock:settimeout(0)
          local _, err = conn.sock:receive(1)
          closed = err == "closed" or err == "connection reset by peer"
        end
      end
      local took = wait.now() - started
      assert.is_true(closed, ("still open after %d bytes, %.2fs"):format(sent, took))
      assert.is_true(sent < 12 and took < 2.5, ("closed after %d bytes, %.2fs"):format(sent, took))
      assert_one_line_per_kind(proc)
      assert.are.same({}, stdout_lines(proc, "MADE "))
      assert_still_served(proc)
    end)

    it("survives a client that resets mid-handshake", function()
      local proc = start_tls({}, "tls/info.lua")
      local hello = client_hello()
      for _ = 1, 5 do
        local conn = client.connect(proc.host, proc.port)
        conn:send_all(hello:sub(1, 100))
        conn:reset()
        local whole = client.connect(proc.host, proc.port) -- a whole ClientHello, then a reset
        whole:send_all(hello)
        whole:reset()
      end
      assert_still_served(proc)
      assert_one_line_per_kind(proc)
      assert.are.equal(1, #stdout_lines(proc, "MADE "))
    end)

    it("closes random bytes sent instead of a handshake", function()
      local proc = start_tls({}, "tls/info.lua")
      local conn = client.connect(proc.host, proc.port)
      local _, port = conn:sockname()
      conn:send_all(text.payload(300, 16))
      assert_closed(conn, 3)
      wait_failure_line(proc, port)
      assert.are.equal(1, #failure_lines(proc))
      assert_still_served(proc)
    end)

    it("ends only the connection that sends random bytes after the handshake", function()
      local proc = start_tls({}, "tls/info.lua")
      local bystander = tls.s_client(proc.host, proc.port, { "-CAfile", pki.ca })
      bystander:write("before\n")
      bystander:wait_for("echo:before\n")
      local report = python(proc, { "--cafile", pki.ca, "--lines", 1, "--send", "hi", "--expect", 7,
        "--garbage", 200 })
      assert.are.equal("done", report.stage, describe_report(report))
      assert.matches("echo:hi$", report.received)
      assert.is_truthy(report.raw_end == "closed" or report.raw_end == "reset",
        "after garbage the connection was " .. tostring(report.raw_end))
      -- connection_lost(err), err naming the TLS error.
      local lost = proc:wait_output("stdout", "\nLOST ([^\n]+)\n", 5, "the LOST line")
      assert.are_not.equal("nil", lost, "connection_lost had no error after garbage")
      bystander:write("after\n")
      bystander:wait_for("echo:after\n")
      assert_still_served(proc)
    end)
  end)

  describe("metrics", function()
    -- The sum of luaecho_tls_handshakes_total{result=RESULT} over the workers.
    local function handshakes(proc, result)
      local status, body = prometheus.http_get(proc.metrics_port, "/metrics", 5)
      assert.are.equal(200, status, tostring(body))
      local total
      for line in body:gmatch("[^\n]+") do
        local labels, value = line:match("^luaecho_tls_handshakes_total{([^}]*)} (%S+)$")
        if labels and labels:find('result="' .. result .. '"', 1, true) then
          total = (total or 0) + tonumber(value)
        end
      end
      return total
    end

    it("counts handshakes by result: ok, failed, timeout", function()
      local proc = start_tls({ "--metrics", "127.0.0.1:0", "--tls-handshake-timeout", "0.3" })
      proc:wait_metrics()
      assert_still_served(proc)
      local plain = client.connect(proc.host, proc.port)
      plain:send_all("plain text\n")
      assert_closed(plain, 3)
      local silent = client.connect(proc.host, proc.port)
      assert_closed(silent, 3)
      for result, want in pairs({ ok = 1, failed = 1, timeout = 1 }) do
        local last
        local ok = pcall(wait.until_true, function()
          last = handshakes(proc, result)
          return last == want
        end, 5)
        assert.is_true(ok, ('luaecho_tls_handshakes_total{result="%s"} is %s, not %d'):format(result,
          tostring(last), want))
      end
    end)
  end)

  describe("the command line", function()
    local assert_usage_error = exits.assert_usage_error

    -- exit 1 before listening, one `luaecho: error:` line naming `file`.
    local function assert_file_error(args, file)
      exits.assert_load_error(args, { file })
    end

    it("refuses a TLS option without a TLS listener (exit 2)", function()
      assert_usage_error({ "--port", "0", "--tls-cert", pki.server_cert, "--tls-key", pki.server_key },
        "--tls-cert needs a TLS listener: add --listen tls:HOST:PORT")
      for _, option in ipairs({ { "--tls-client-ca", pki.ca }, { "--tls-alpn", "h2" },
                                { "--tls-handshake-timeout", "1" } }) do
        assert_usage_error({ "--listen", "127.0.0.1:0", option[1], option[2] }, option[1] .. " needs a TLS listener")
      end
    end)

    it("refuses a tls: listener without --tls-cert and --tls-key (exit 2)", function()
      assert_usage_error({ "--listen", "tls:127.0.0.1:0" }, "needs --tls-cert FILE and --tls-key FILE")
      assert_usage_error({ "--listen", "tls:127.0.0.1:0", "--tls-cert", pki.server_cert }, "--tls-")
      assert_usage_error({ "--listen", "tls:127.0.0.1:0", "--tls-key", pki.server_key }, "--tls-")
    end)

    it("refuses more --tls-cert than --tls-key and the reverse (exit 2)", function()
      assert_usage_error(pki:server_args({ "--tls-cert", pki.a_cert }), "--tls-cert")
      assert_usage_error(pki:server_args({ "--tls-key", pki.a_key }), "--tls-key")
    end)

    it("refuses a handshake timeout out of 0.001..3600 (exit 2)", function()
      for _, value in ipairs({ "0", "3601", "-1", "soon" }) do
        assert_usage_error(pki:server_args({ "--tls-handshake-timeout", value }), "--tls-handshake-timeout")
      end
    end)

    it("names a missing or unreadable certificate, key or CA file (exit 1)", function()
      local scratch = files.scratch("tls-files")
      local missing = scratch:path("missing.pem")
      local junk = scratch:write("junk.pem", "not a certificate\n")
      local function args(cert, key, extra)
        local list = { "--listen", "tls:127.0.0.1:0", "--tls-cert", cert, "--tls-key", key }
        for _, arg in ipairs(extra or {}) do list[#list + 1] = arg end
        return list
      end
      assert_file_error(args(missing, pki.server_key), missing)
      assert_file_error(args(pki.server_cert, missing), missing)
      assert_file_error(args(junk, pki.server_key), junk)
      assert_file_error(args(pki.server_cert, junk), junk)
      assert_file_error(args(pki.server_cert, pki.server_key, { "--tls-client-ca", missing }), missing)
      assert_file_error(args(pki.server_cert, pki.server_key, { "--tls-client-ca", junk }), junk)
      assert_file_error(args(pki.server_cert, pki.server_key, { "--tls-cert", pki.a_cert, "--tls-key", missing }),
        missing)
    end)

    it("names a key that does not match its certificate (exit 1)", function()
      assert_file_error({ "--listen", "tls:127.0.0.1:0", "--tls-cert", pki.server_cert, "--tls-key", pki.other_key },
        pki.other_key)
      assert_file_error(pki:server_args({ "--tls-cert", pki.a_cert, "--tls-key", pki.b_key }), pki.b_key)
    end)
  end)

  describe("a certificate swap by SIGHUP", function()
    it("serves the new certificate to new connections while an old one keeps its session", function()
      local scratch = files.scratch("tls-swap")
      local cert = scratch:write("cert.pem", files.read(pki.server_cert))
      local key = scratch:write("key.pem", files.read(pki.server_key))
      local proc = start({ "--listen", "tls:127.0.0.1:0", "--tls-cert", cert, "--tls-key", key })
      local old = tls.s_client(proc.host, proc.port, { "-CAfile", pki.ca })
      old:write("before\n")
      assert.are.equal("CN = localhost", tls.s_client_session(old:wait_for("echo:before\n")).subject)
      assert.are.equal("CN=localhost", python_echo(proc).peer_subject)

      scratch:replace("cert.pem", files.read(pki.renewed_cert))
      scratch:replace("key.pem", files.read(pki.renewed_key))
      proc:signal("sighup")
      proc:wait_count("stderr", "^luaecho: reloaded ", 1, 10, "the 'reloaded' line")

      local report = python_echo(proc, { "--servername", "localhost", "--check-hostname" })
      assert.are.equal("done", report.stage, describe_report(report))
      assert.are.equal("O=renewed,CN=localhost", report.peer_subject)
      old:write("after\n")
      old:wait_for("echo:after\n")
    end)

    it("happens with --watch when the certificate file changes, the script untouched", function()
      local scratch = files.scratch("tls-swap")
      local cert = scratch:write("cert.pem", files.read(pki.server_cert))
      local key = scratch:write("key.pem", files.read(pki.server_key))
      local proc = start({ "--watch", "--listen", "tls:127.0.0.1:0", "--tls-cert", cert, "--tls-key", key })
      assert.are.equal("CN=localhost", python_echo(proc).peer_subject)
      -- The key first: a reload between the two writes would fail on a key
      -- that does not match, and the settled one after the second succeeds.
      scratch:replace("key.pem", files.read(pki.renewed_key))
      scratch:replace("cert.pem", files.read(pki.renewed_cert))
      proc:wait_output("stderr", "luaecho: reloaded [^\n]* and the TLS certificates %(generation %d+%)\n", 10,
        "the 'reloaded' line")
      wait.until_true(function() return python_echo(proc).peer_subject == "O=renewed,CN=localhost" end, 10,
        "the renewed certificate served")
    end)

    it("keeps the old certificate when the new file is bad", function()
      local scratch = files.scratch("tls-swap")
      local cert = scratch:write("cert.pem", files.read(pki.server_cert))
      local key = scratch:write("key.pem", files.read(pki.server_key))
      local proc = start({ "--listen", "tls:127.0.0.1:0", "--tls-cert", cert, "--tls-key", key })
      scratch:replace("cert.pem", "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
      proc:signal("sighup")
      local line = proc:wait_output("stderr", "\n(luaecho: [^\n]*reload %([^\n]*failed, still serving generation %d+: "
        .. "cannot load certificate [^\n]*)\n", 10, "the failed reload line")
      assert.matches(cert, line, 1, true)
      local report = python_echo(proc)
      assert.are.equal("done", report.stage, describe_report(report))
      assert.are.equal("CN=localhost", report.peer_subject)
      assert.are.equal(0, proc:count("stderr", "^luaecho: reloaded "))
    end)
  end)

  describe("luaecho run as a TLS client", function()
    -- run_client.lua against proc; returns its output line.
    local function run_client(proc, ca, name)
      local code, out, err = server.run({ "run", server.fixture("tls/run_client.lua"), proc.host,
        tostring(proc.port), ca or "-", name or "-" }, nil, 15)
      assert.are.equal(0, code, "luaecho run exited " .. tostring(code) .. "\n" .. out .. err)
      return (out:match("^([^\n]*)\n") or out), err
    end

    it("connects to a server signed by the CA it is given", function()
      local proc = start_tls()
      assert.are.equal("GOT echo:ping", run_client(proc, pki.ca, "localhost"))
    end)

    it("refuses a server its CA store does not know, saying so", function()
      local proc = start_tls()
      local line = run_client(proc, nil, "localhost")
      assert.matches("^REFUSED ", line)
      assert.matches("certificate verify failed: unable to get local issuer certificate", line, 1, true)
    end)

    it("refuses an expired certificate, saying so", function()
      local proc = start({ "--listen", "tls:127.0.0.1:0", "--tls-cert", pki.expired_cert,
        "--tls-key", pki.expired_key })
      local line = run_client(proc, pki.ca, "localhost")
      assert.matches("^REFUSED ", line)
      assert.matches("certificate has expired", line, 1, true)
    end)

    it("refuses a certificate for another name, saying so", function()
      local proc = start_tls()
      local line = run_client(proc, pki.ca, "wrong.test")
      assert.matches("^REFUSED ", line)
      assert.matches("hostname mismatch", line:lower(), 1, true)
    end)
  end)

  describe("STARTTLS", function()
    local env
    before_each(function() env = { TLS_CERT = pki.server_cert, TLS_KEY = pki.server_key } end)

    for _, style in ipairs({ "protocol", "streams" }) do
      local fixture = "tls/starttls_" .. style .. ".lua"

      describe(style .. " style", function()
        local proc
        before_each(function() proc = server.start({ server.fixture(fixture) }, { env = env }) end)

        it("answers plain text, then upgrades on STARTTLS", function()
          local report = python(proc, { "--starttls", "--plain", "HELO plain", "--cafile", pki.ca,
            "--servername", "localhost", "--check-hostname", "--expect-line", "secure", "--send", "hi",
            "--expect", 7 })
          assert.are.equal("done", report.stage, describe_report(report))
          assert.are.equal("plain:HELO plain\nOK\n", report.plain)
          assert.are.equal("secure\necho:hi", report.received)
          assert.are.equal("CN=localhost", report.peer_subject)
          proc:wait_output("stdout", "SECURE TLSv1%.3\n", 5, "the SECURE line")
        end)

        it("loses no byte sent with the STARTTLS line", function()
          -- STARTTLS\n and the ClientHello in one write: the hello arrives
          -- before start_tls is called.
          local report = python(proc, { "--starttls", "--pipelined", "--cafile", pki.ca,
            "--expect-line", "secure", "--send", "hi", "--expect", 7 })
          assert.are.equal("done", report.stage, describe_report(report) .. "\n--- server stdout:\n" .. proc:stdout())
          assert.are.equal("OK\n", report.plain)
          assert.are.equal("secure\necho:hi", report.received)
        end)

        it("ends the connection when the handshake fails", function()
          local conn = client.connect(proc.host, proc.port)
          conn:send_all("STARTTLS\n")
          assert.are.equal("OK\n", conn:receive_exactly(3))
          conn:send_all("this is no ClientHello\n")
          assert_closed(conn, 5)
          if style == "protocol" then
            local lost = proc:wait_output("stdout", "\nLOST ([^\n]+)\n", 5, "the LOST line")
            assert.are_not.equal("nil", lost, "connection_lost had no error for a failed handshake")
          else
            proc:wait_output("stdout", "FAILED [^\n]+\n", 5, "the FAILED line")
          end
          assert.is_nil(proc:stdout():find("SECURE", 1, true))
          local report = python(proc, { "--starttls", "--cafile", pki.ca, "--expect-line", "secure" })
          assert.are.equal("done", report.stage, describe_report(report))
        end)
      end)
    end

    it("upgrades with the certificate of --tls-cert when start_tls is given none", function()
      local proc = start({ "--listen", "127.0.0.1:0", "--listen", "tls:127.0.0.1:0",
        "--tls-cert", pki.server_cert, "--tls-key", pki.server_key, server.fixture("tls/starttls_protocol.lua") })
      local plain_port = assert(proc.listeners[1].port, proc.listeners[1].name)
      local report = tls.python({ "--port", plain_port, "--starttls", "--cafile", pki.ca,
        "--expect-line", "secure", "--send", "hi", "--expect", 7 })
      assert.are.equal("done", report.stage, describe_report(report))
      assert.are.equal("CN=localhost", report.peer_subject)
    end)
  end)
end)
