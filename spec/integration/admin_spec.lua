-- The admin console (issue 15): `--admin unix:PATH` (or a loopback
-- HOST:PORT), a line protocol for a person with socat and for `luaecho
-- ctl`. Each spec starts the real binary with the console on a Unix socket
-- in a scratch directory, holds connections to its TCP listener, and asks
-- the commands over a raw session and through `luaecho ctl`, whose exit
-- status says how it went (0 an answer, 1 an error answer or no console,
-- 2 a usage mistake). Every wait has a deadline; nothing sleeps.
local uv = require "luv"
local client = require "support.client"
local console = require "support.console"
local files = require "support.files"
local server = require "support.server"
local sockets = require "support.sockets"
local wait = require "support.wait"

local COMMANDS = {
  "help", "show info", "show conns", "show errors", "show generations", "kill ID", "reload", "set log-level LEVEL",
  "quit",
}
local CONNS_HEADER = "id worker listener peer age idle in out buffered generation state"
local STUCK_LINE = "# worker 1 did not answer within 1 s (a callback is running); its connections are not listed"
local NO_CONSOLE = "luaecho ctl: no console given: use --admin SPEC or set LUAECHO_ADMIN (the server's --admin)\n"

-- Everything `sock` receives until the server closes, and how it ended.
local function read_to_close(sock)
  local data, err, partial = sock:receive("*a")
  if data then return data, "closed" end
  return partial, err
end

-- The "key: value" lines of an answer as a table.
local function fields(lines)
  local t = {}
  for _, line in ipairs(lines) do
    local key, value = line:match("^([^:]+): (.*)$")
    if key then t[key] = value end
  end
  return t
end

-- The rows of a `show conns` answer by peer, each field named.
local function conn_rows(lines)
  assert.are.equal(CONNS_HEADER, lines[1])
  local rows = {}
  for i = 2, #lines do
    if lines[i]:sub(1, 1) ~= "#" then
      local f = {}
      for word in lines[i]:gmatch("%S+") do f[#f + 1] = word end
      assert.are.equal(11, #f, lines[i])
      rows[f[4]] = {
        id = f[1], worker = f[2], listener = f[3], peer = f[4], age = f[5], idle = f[6], bytes_in = tonumber(f[7]),
        bytes_out = tonumber(f[8]), buffered = tonumber(f[9]), generation = tonumber(f[10]), state = f[11],
      }
    end
  end
  return rows
end

-- `luaecho ctl --admin SPEC ARGS...`: exit code, stdout, stderr.
local function ctl(spec, ...)
  return server.run({ "ctl", "--admin", spec, ... }, nil, 35)
end

-- The permission bits of `path`, as an octal string such as "600".
local function permissions(path)
  local stat = assert(uv.fs_lstat(path))
  return ("%o"):format(math.tointeger(stat.mode) & tonumber("777", 8))
end

-- Serve `script` on 127.0.0.1 with the console on scratch's admin.sock
-- (`extra`: more flags); returns the Proc with proc.admin, its name as
-- printed, and proc.admin_path.
local function start(scratch, script, extra)
  local path = scratch:path("admin.sock")
  local args = { "--listen", "127.0.0.1:0", "--admin", "unix:" .. path }
  for _, arg in ipairs(extra or {}) do args[#args + 1] = arg end
  args[#args + 1] = script
  local proc = server.start_listeners(args)
  assert.are.equal("unix:" .. path, proc:wait_admin())
  proc.admin_path = path
  return proc
end

-- A connection to the server that has had `payload` echoed; returns it and
-- its port (the peer's port in rows and in the fixture's lines).
local function hold(proc, payload)
  local conn = client.connect(proc.host, proc.port)
  conn:send_all(payload)
  assert.are.equal(payload, conn:receive_exactly(#payload))
  local _, port = conn:sockname()
  return conn, port
end

describe("admin console #integration", function()
  local scratch, proc, script

  before_each(function()
    scratch = files.scratch("admin")
    script = scratch:write("held.lua", files.read(server.fixture("admin/held.lua")))
  end)

  after_each(function()
    sockets.close_all()
    client.close_all()
    local problems = server.stop_all()
    files.remove_scratches()
    assert.are.same({}, problems)
  end)

  describe("on a Unix socket", function()
    before_each(function()
      proc = start(scratch, script)
    end)

    it("makes its socket file 0600 and removes it at exit", function()
      assert.are.equal("600", permissions(proc.admin_path))
      proc:signal("sigterm")
      assert.are.equal(0, proc:wait_exit())
      assert.is_nil(uv.fs_lstat(proc.admin_path))
    end)

    it("answers help with every command, over a session and through ctl", function()
      local lines = console.ask(sockets.unix_connect(proc.admin_path), "help")
      assert.are.equal(#COMMANDS, #lines)
      for i, command in ipairs(COMMANDS) do
        assert.are.equal(command .. " ", lines[i]:sub(1, #command + 1))
        assert.matches("%S", lines[i]:sub(#command + 2), "no description: " .. lines[i])
      end
      local code, out, err = ctl(proc.admin, "help")
      assert.are.same({ 0, table.concat(lines, "\n") .. "\n", "" }, { code, out, err })
    end)

    it("shows the server's info", function()
      local info = fields(console.ask(sockets.unix_connect(proc.admin_path), "show info"))
      assert.matches("^%d+%.%d+%.%d+", info.version)
      assert.are.equal(tostring(proc.pid), info.pid)
      assert.matches("^%d+%.%d s$", info.uptime)
      assert.are.equal("1", info.workers)
      assert.are.equal("127.0.0.1:" .. proc.port, info.listeners)
      assert.are.equal("1", info.generation)
      assert.matches("^%d+$", info.connections)
      assert.matches("^max%-connections=%d+ idle%-timeout=", info.limits)
      local code, out, err = ctl(proc.admin, "show", "info")
      assert.are.same({ 0, "" }, { code, err })
      assert.are.equal(tostring(proc.pid), out:match("\npid: (%d+)\n"))
    end)

    it("lists each connection held with its peer and its bytes in and out", function()
      local _, port_a = hold(proc, "hello")
      local _, port_b = hold(proc, "0123456789abcdef")
      local rows = conn_rows(console.ask(sockets.unix_connect(proc.admin_path), "show conns"))
      local a, b = rows["127.0.0.1:" .. port_a], rows["127.0.0.1:" .. port_b]
      assert.is_not_nil(a, "no row for the first connection")
      assert.is_not_nil(b, "no row for the second connection")
      assert.are.same({ 5, 5, 0, 1, "reading", "1", "127.0.0.1:" .. proc.port },
        { a.bytes_in, a.bytes_out, a.buffered, a.generation, a.state, a.worker, a.listener })
      assert.are.same({ 16, 16 }, { b.bytes_in, b.bytes_out })
      assert.matches("^%d+%.%ds$", a.age)
      assert.matches("^%d+%.%ds$", a.idle)
      assert.are_not.equal(a.id, b.id)
      local code, out, err = ctl(proc.admin, "show", "conns")
      assert.are.same({ 0, "" }, { code, err })
      assert.are.equal(CONNS_HEADER .. "\n", out:sub(1, #CONNS_HEADER + 1))
      assert.matches("\n" .. a.id .. " 1 [^\n]* 127%.0%.0%.1:" .. port_a .. " ", out)
    end)

    it("shows the errors of failed callbacks, oldest first, with their tracebacks", function()
      local sock = sockets.unix_connect(proc.admin_path)
      assert.are.same({ "no errors" }, console.ask(sock, "show errors"))
      local port = {}
      for _, word in ipairs({ "first", "second" }) do
        local conn = client.connect(proc.host, proc.port)
        local _, p = conn:sockname()
        port[word] = p
        conn:send_all(word)
        conn:receive_until_close()
        proc:wait_output("stdout", p .. " connection_lost [^\n]*" .. word .. " failure")
      end
      local lines = console.ask(sock, "show errors")
      local entries, traceback = {}, {}
      for _, line in ipairs(lines) do
        if line:sub(1, 2) == "  " then traceback[#traceback + 1] = line else entries[#entries + 1] = line end
      end
      assert.are.equal(2, #entries, table.concat(lines, "\n"))
      assert.matches("^%S+ data_received 127%.0%.0%.1:" .. port.first .. " .*generation 1: .*first failure", entries[1])
      assert.matches("^%S+ data_received 127%.0%.0%.1:" .. port.second .. " .*generation 1: .*second failure",
        entries[2])
      assert.matches("first_failure", table.concat(traceback, "\n"))
      local code, out, err = ctl(proc.admin, "show", "errors")
      assert.are.same({ 0, table.concat(lines, "\n") .. "\n", "" }, { code, out, err })
    end)

    it("kills a connection by its id: connection_lost runs and the client sees the close", function()
      local conn, port = hold(proc, "hi")
      local sock = sockets.unix_connect(proc.admin_path)
      local row = conn_rows(console.ask(sock, "show conns"))["127.0.0.1:" .. port]
      assert.is_not_nil(row)
      assert.are.same({ "killed connection " .. row.id }, console.ask(sock, "kill " .. row.id))
      proc:wait_output("stdout", port .. " connection_lost [^\n]*\n", 5, "connection_lost of the killed connection")
      conn:receive_until_close()
      assert.is_nil(conn_rows(console.ask(sock, "show conns"))["127.0.0.1:" .. port])
      local code, out, err = ctl(proc.admin, "kill", row.id)
      assert.are.same({ 1, "" }, { code, out })
      assert.matches("^error: no connection " .. row.id .. "[^\n]*\n$", err)
      local _, other = hold(proc, "there")
      local other_id = conn_rows(console.ask(sock, "show conns"))["127.0.0.1:" .. other].id
      code, out, err = ctl(proc.admin, "kill", other_id)
      assert.are.same({ 0, "killed connection " .. other_id .. "\n", "" }, { code, out, err })
      proc:wait_output("stdout", other .. " connection_lost [^\n]*\n")
    end)

    it("reloads a fixed script as generation 2, and keeps generation 1 serving when the new one is broken", function()
      local conn = hold(proc, "before")
      local sock = sockets.unix_connect(proc.admin_path)
      scratch:replace("held.lua", files.read(server.fixture("bad_syntax.lua")))
      local lines = console.ask(sock, "reload")
      assert.are.equal(1, #lines)
      assert.matches("^error: reload failed, still serving generation 1: ", lines[1])
      local code, out, err = ctl(proc.admin, "reload")
      assert.are.same({ 1, "" }, { code, out })
      assert.matches("^error: reload failed, still serving generation 1: [^\n]*\n$", err)
      assert.are.equal("1", fields(console.ask(sock, "show info")).generation)
      conn:send_all("still")
      assert.are.equal("still", conn:receive_exactly(5))
      hold(proc, "new ones too")
      scratch:replace("held.lua", files.read(server.fixture("admin/held.lua")))
      code, out, err = ctl(proc.admin, "reload")
      assert.are.same({ 0, "reloaded: generation 2\n", "" }, { code, out, err })
      assert.are.equal("2", fields(console.ask(sock, "show info")).generation)
      assert.are.same({ "reloaded: generation 3" }, console.ask(sock, "reload"))
    end)

    it("sets the log level", function()
      local sock = sockets.unix_connect(proc.admin_path)
      assert.are.same({ "log level: debug" }, console.ask(sock, "set log-level debug"))
      local code, out, err = ctl(proc.admin, "set", "log-level", "warn")
      assert.are.same({ 0, "log level: warn\n", "" }, { code, out, err })
      code, out, err = ctl(proc.admin, "set", "log-level", "loud")
      assert.are.same({ 1, "", "error: unknown log level 'loud': error, warn, info or debug\n" }, { code, out, err })
    end)

    it("answers an unknown command with an error and goes on", function()
      local sock = sockets.unix_connect(proc.admin_path)
      assert.are.same({ "error: unknown command 'foo' (type help)" }, console.ask(sock, "foo"))
      assert.are.same({ "error: kill needs one connection id, a number (see show conns)" }, console.ask(sock, "kill"))
      assert.are.equal("1", fields(console.ask(sock, "show info")).generation)
      local code, out, err = ctl(proc.admin, "foo", "bar")
      assert.are.same({ 1, "", "error: unknown command 'foo' (type help)\n" }, { code, out, err })
    end)

    it("answers binary garbage with one printable error line", function()
      local sock = sockets.unix_connect(proc.admin_path)
      assert.are.same({ "error: unknown command '\\x00\\x01\\x02\\xff\\x1b[2J' (type help)" },
        console.ask(sock, "\0\1\2\255\27[2J"))
      assert.are.equal("1", fields(console.ask(sock, "show info")).generation)
    end)

    it("answers a line over 1024 bytes with an error and closes that session", function()
      local sock = sockets.unix_connect(proc.admin_path)
      assert(sock:send(("x"):rep(2000) .. "\n"))
      local data, how = read_to_close(sock)
      assert.are.same({ "error: line too long (at most 1024 bytes): closing\n\n", "closed" }, { data, how })
      assert.are.equal("1", fields(console.ask(sockets.unix_connect(proc.admin_path), "show info")).generation)
    end)

    it("answers lines sent together in order, and closes after them when the client half-closes", function()
      local sock = sockets.unix_connect(proc.admin_path)
      assert(sock:send("show conns\n\nbogus\r\nshow info\nquit\nhelp\n"))
      assert(sock:shutdown("send"))
      local data, how = read_to_close(sock)
      assert.are.equal("closed", how)
      local answers = {}
      for answer in data:gmatch("(.-\n)\n") do answers[#answers + 1] = answer end
      assert.are.equal(3, #answers, data)
      assert.are.equal(CONNS_HEADER .. "\n", answers[1])
      assert.are.equal("error: unknown command 'bogus' (type help)\n", answers[2])
      assert.matches("^version: ", answers[3])
    end)

    it("closes the session on quit", function()
      local sock = sockets.unix_connect(proc.admin_path)
      assert(sock:send("quit\n"))
      assert.are.same({ "", "closed" }, { read_to_close(sock) })
    end)

    it("serves 16 sessions at once and tells a 17th so", function()
      local sessions = {}
      for i = 1, 16 do
        sessions[i] = sockets.unix_connect(proc.admin_path)
        assert.are.equal("1", fields(console.ask(sessions[i], "show info")).generation)
      end
      local extra = sockets.unix_connect(proc.admin_path)
      assert(extra:send("show info\n"))
      assert.are.same({ "error: too many console sessions\n\n", "closed" }, { read_to_close(extra) })
      local code, _, err = ctl(proc.admin, "show", "info")
      assert.are.same({ 1, "error: too many console sessions\n" }, { code, err })
      sessions[1]:close()
      wait.until_true(function()
        local code_now = ctl(proc.admin, "show", "info")
        return code_now == 0
      end, 5, "a session once one has gone")
    end)
  end)

  it("listens on a loopback TCP address", function()
    proc = server.start_listeners({ "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", script })
    local name = proc:wait_admin()
    local host, port = name:match("^(127%.0%.0%.1):(%d+)$")
    assert.is_not_nil(host, name)
    local conn = client.connect(host, tonumber(port))
    assert.are.equal("1", fields(console.ask(conn.sock, "show info")).generation)
    local code, out, err = ctl(name, "show", "info")
    assert.are.same({ 0, "" }, { code, err })
    assert.matches("\ngeneration: 1\n", out)
  end)

  it("refuses a console on an address that is not loopback without --admin-allow-remote", function()
    local code, _, err = server.run({ "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0", script })
    assert.are.equal(2, code)
    assert.matches("--admin 0.0.0.0:0 is not a loopback address: add --admin-allow-remote to allow it", err, 1, true)
  end)

  it("answers show info while a callback is stuck, and show conns within 1.5 s without that worker", function()
    -- Under valgrind (the memcheck entry) threads take turns on one lock
    -- and a spinning one holds it for long slices: the console still
    -- answers during the stall, only later. The stall is longer there.
    local slow = os.getenv("LUAECHO_MEMCHECK_BIN") ~= nil
    local info_bound, conns_bound = slow and 5 or 1, slow and 6 or 1.5
    proc = start(scratch, server.fixture("admin/stall.lua"), { "--script-timeout", slow and "15000" or "3000" })
    local sock = sockets.unix_connect(proc.admin_path)
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("x")
    proc:wait_output("stdout", "stalling\n", 5, "the stuck callback's 'stalling' line")
    local started = wait.now()
    assert.are.equal("1", fields(console.ask(sock, "show info")).workers)
    local took = wait.now() - started
    assert.is_true(took < info_bound, ("show info took %.2f s"):format(took))
    started = wait.now()
    local lines = console.ask(sock, "show conns")
    took = wait.now() - started
    assert.is_true(took < conns_bound, ("show conns took %.2f s"):format(took))
    assert.are.same({ CONNS_HEADER, STUCK_LINE }, lines)
    conn:receive_until_close(slow and 30 or 10) -- --script-timeout ends it
  end)

  describe("luaecho ctl", function()
    it("says where to find the console when none is given", function()
      local code, out, err = server.run({ "ctl", "show", "info" }, { env = { LUAECHO_ADMIN = false } })
      assert.are.same({ 2, "", NO_CONSOLE }, { code, out, err })
    end)

    it("reads the console from $LUAECHO_ADMIN", function()
      proc = start(scratch, script)
      local code, out, err = server.run({ "ctl", "show", "info" }, { env = { LUAECHO_ADMIN = proc.admin } })
      assert.are.same({ 0, "" }, { code, err })
      assert.matches("^version: ", out)
    end)

    it("prints its usage with --help, and a usage line without a command", function()
      local code, out, err = server.run({ "ctl", "--help" })
      assert.are.same({ 0, "" }, { code, err })
      assert.matches("^usage: luaecho ctl %[%-%-admin SPEC%] COMMAND%.%.%.\n", out)
      code, out, err = server.run({ "ctl", "--admin", "unix:" .. scratch:path("none.sock") })
      assert.are.same({ 2, "" }, { code, out })
      assert.matches("^luaecho ctl: no command given", err)
    end)

    it("refuses a UDP console and a bad SPEC as usage mistakes", function()
      for _, spec in ipairs({ "udp:127.0.0.1:9", "127.0.0.1", "bogus:x" }) do
        local code, out, err = ctl(spec, "show", "info")
        assert.are.same({ 2, "" }, { code, out }, spec)
        assert.matches("^luaecho ctl: %-%-admin '[^\n]*': [^\n]+\n$", err)
      end
    end)

    it("says it cannot connect when no server listens there", function()
      local spec = "unix:" .. scratch:path("none.sock")
      local code, out, err = ctl(spec, "show", "info")
      assert.are.same({ 1, "", ("luaecho ctl: cannot connect to %s: No such file or directory (is luaecho running " ..
        "with --admin %s?)\n"):format(spec, spec) }, { code, out, err })
    end)
  end)
end)
