-- luaecho.testing itself: loading scripts the host's way, the fake peer's
-- controls, the virtual clock, fake servers and programs, reset. The
-- transport's contract is in spec/shared/transport_cases.lua, run against
-- this fake and the real binary alike.
local testing = require "luaecho.testing"
local luaecho = require "luaecho"
local errors = require "luaecho.errors"

local FIXTURES = "spec/fixtures/testing/"

-- A Protocol that records its callbacks (with their argument) in 'seen'.
local function recorder(seen)
  local P = {}
  for _, name in ipairs({ "connection_made", "data_received", "eof_received", "pause_writing", "resume_writing",
    "connection_lost" }) do
    P[name] = function(self, arg)
      if name == "connection_made" then self.transport = arg end
      seen[#seen + 1] = (name == "connection_made" or arg == nil) and name or name .. " " .. tostring(arg)
    end
  end
  return P
end

describe("luaecho.testing #unit", function()
  before_each(testing.reset)

  describe("loading a script", function()
    it("runs it in a fresh environment whose reads fall back to the globals", function()
      local conn = testing.connect(FIXTURES .. "globals.lua")
      assert.are.equal("hello from the script's environment, and string.upper is a function", conn:output())
      assert.is_nil(rawget(_G, "greeting"))
    end)

    it("serves a returned function as a streams handler", function()
      local P = testing.load(FIXTURES .. "uses_helper.lua")
      assert.are.equal("function", type(P.new))
    end)

    it("finds modules next to the script, and reset() takes that directory off package.path", function()
      local before = package.path
      local conn = testing.connect(FIXTURES .. "uses_helper.lua")
      conn:send("quiet\n")
      assert.are.equal("QUIET\n", conn:output())
      testing.reset()
      assert.are.equal(before, package.path)
      package.loaded.testing_helper = nil
    end)

    it("finds a bundled script by its name under lua/", function()
      local conn = testing.connect("examples/plain_echo.lua")
      conn:send("found")
      assert.are.equal("found", conn:output())
    end)

    it("raises what the host would say of a script that cannot load", function()
      assert.has_error(function() testing.connect("spec/fixtures/nope.lua") end,
        "cannot load script: cannot open spec/fixtures/nope.lua: No such file or directory")
      local _, syntax = pcall(testing.connect, "spec/fixtures/bad_syntax.lua")
      assert.matches("^cannot load script: spec/fixtures/bad_syntax%.lua:%d+: ", syntax)
      local _, number = pcall(testing.connect, "spec/fixtures/returns_number.lua")
      assert.are.equal("cannot load script: spec/fixtures/returns_number.lua: the script must return a Protocol "
        .. "table or a streams handler function(reader, writer), not number", number)
    end)

    it("takes a Protocol table or a streams function as it is", function()
      local seen = {}
      local conn = testing.connect(recorder(seen))
      conn:send("x")
      assert.are.same({ "connection_made", "data_received x" }, seen)
      conn = testing.connect(function(reader, writer) writer:write(reader:read(1)) end)
      conn:send("y")
      assert.are.equal("y", conn:output())
    end)
  end)

  describe("a connection", function()
    it("delivers what is sent in chunks of the size asked for, 64 KiB at most", function()
      local seen = {}
      local conn = testing.connect(recorder(seen))
      conn:send("abc", 2)
      conn:send(("z"):rep(65537))
      local sizes = {}
      for i = 2, #seen do sizes[#sizes + 1] = #seen[i] - #"data_received " end
      assert.are.same({ 2, 1, 65536, 1 }, sizes)
    end)

    it("gives output() only what was written since the last call", function()
      local conn = testing.connect("lua/examples/plain_echo.lua")
      conn:send("one")
      conn:send("two")
      assert.are.equal("onetwo", conn:output())
      assert.are.equal("", conn:output())
    end)

    it("lists the callbacks the handler defines, in the order they ran", function()
      local conn = testing.connect({ data_received = function() end, connection_lost = function() end })
      conn:send("x")
      conn:eof()
      assert.are.same({ "data_received", "connection_lost" }, conn:events())
    end)

    it("shows the handler a peer of its own at 127.0.0.1, or the one asked for", function()
      local server = testing.serve({})
      local a, b = server:connect(), server:connect()
      local c = server:connect({ peername = { "::1", 7000 } })
      assert.are.same({ "127.0.0.1", 50000 }, { a:transport():get_extra_info("peername") })
      assert.are.same({ "127.0.0.1", 50001 }, { b:address() })
      assert.are.same({ "::1", 7000 }, { c:transport():get_extra_info("peername") })
    end)

    it("refuses to send after the peer has half-closed or reset: a mistake in the spec", function()
      local conn = testing.connect({})
      conn:send("fine")
      conn:eof()
      assert.has_error(function() conn:send("more") end,
        "luaecho.testing: send() after eof(): the peer has half-closed")
      conn = testing.connect({ eof_received = function() return true end })
      conn:reset()
      assert.has_error(function() conn:eof() end)
    end)

    it("drops what is sent once the handler has closed, as the host's socket would", function()
      local seen = {}
      local conn = testing.connect(recorder(seen))
      conn:transport():close()
      conn:send("too late")
      assert.are.same({ "connection_made", "connection_lost" }, seen)
    end)

    it("tells a clean close from an abort", function()
      local closed = testing.connect({ data_received = function(self) self.transport:close() end,
        connection_made = function(self, t) self.transport = t end })
      local aborted = testing.connect({ data_received = function(self) self.transport:abort() end,
        connection_made = function(self, t) self.transport = t end })
      closed:send("x")
      aborted:send("x")
      assert.are.same({ true, false, true }, { closed:closed(), closed:aborted(), closed:at_eof() })
      assert.are.same({ true, true }, { aborted:closed(), aborted:aborted() })
    end)

    it("reports write_eof: the peer reads EOF, the handler may still read", function()
      local got = {}
      local conn = testing.connect({
        connection_made = function(_, t)
          t:write("done")
          t:write_eof()
        end,
        data_received = function(_, data) got[#got + 1] = data end,
      })
      assert.are.same({ true, false, "done" }, { conn:wrote_eof(), conn:closed(), conn:output() })
      assert.is_true(conn:at_eof())
      conn:send("still read")
      assert.are.same({ "still read" }, got)
    end)

    it("keeps what the handler writes in its transport while the peer holds its output", function()
      local conn = testing.connect("lua/examples/plain_echo.lua", { hold_output = true })
      conn:send("abcdef")
      assert.are.same({ "", 6 }, { conn:output(), conn:buffered() })
      assert.are.equal(6, conn:transport():get_write_buffer_size())
      conn:drain(2)
      assert.are.same({ "ab", 4 }, { conn:output(), conn:buffered() })
      conn:release_output()
      conn:send("gh")
      assert.are.same({ "cdefgh", 0 }, { conn:output(), conn:buffered() })
    end)

    it("finishes a close only once the peer has read what was queued", function()
      local conn = testing.connect({ connection_made = function(_, t)
        t:write("queued")
        t:close()
      end }, { hold_output = true })
      assert.are.same({ true, false, false }, { conn:closed(), (conn:lost()), conn:at_eof() })
      conn:release_output()
      assert.are.same({ true, "queued" }, { (conn:lost()), conn:output() })
      assert.is_true(conn:at_eof())
    end)

    it("aborts a connection whose queued output passes max_write_buffer", function()
      local conn = testing.connect("lua/examples/plain_echo.lua", { hold_output = true, max_write_buffer = 100 })
      conn:send(("x"):rep(101))
      assert.are.same({ true, "write buffer over --max-write-buffer (101 bytes queued, cap 100): the peer does "
        .. "not read" }, { conn:lost() })
      assert.are.same({ "luaecho: warning: aborting 127.0.0.1:50000: write buffer over --max-write-buffer "
        .. "(101 bytes queued, cap 100): the peer does not read" }, testing.logs())
    end)

    it("records a failed callback as the host logs it, and passes the message to connection_lost", function()
      testing.expect_errors()
      local lost
      local conn = testing.connect({
        data_received = function() error("no thanks") end,
        connection_lost = function(_, err) lost = err end,
      })
      conn:send("x")
      assert.matches("^spec/luaecho/testing_spec%.lua:%d+: no thanks$", lost)
      assert.are.same({ "data_received failed for 127.0.0.1:50000: " .. lost }, conn:errors())
      assert.matches("^luaecho: error: data_received failed for 127%.0%.0%.1:50000: [^\n]+\nstack traceback:\n",
        testing.logs()[1])
      assert.is_true(conn:aborted())
    end)

    it("keeps the handler's prints, and leaves print as it was", function()
      local print_before = print
      local conn = testing.connect({ data_received = function(_, data) print("got", data, #data) end })
      conn:send("x\ny")
      assert.are.same({ "got\tx", "y\t3" }, conn:printed())
      assert.are.equal(print_before, print)
    end)

    it("refuses fields on the transport, which is userdata in the host", function()
      local conn = testing.connect({})
      assert.has_error(function() conn:transport().extra = true end)
    end)

    it("holds input while the handler pauses reading, and counts it", function()
      local seen = {}
      local conn = testing.connect(recorder(seen))
      local t = conn:transport()
      t:pause_reading()
      conn:send("abc")
      conn:eof()
      assert.are.same({ false, 3 }, { conn:reading(), conn:held() })
      t:resume_reading()
      testing.advance()
      assert.are.same({ "connection_made", "data_received abc", "eof_received", "connection_lost" }, seen)
    end)
  end)

  describe("where a connection comes from", function()
    -- get_extra_info(name) for each name, as "name=value[,value]".
    local function info(conn, names)
      local out = {}
      for _, name in ipairs(names) do
        local values = table.pack(conn:transport():get_extra_info(name))
        local parts = {}
        for i = 1, values.n do
          local v = values[i]
          parts[i] = type(v) == "table" and ("{pid=%s uid=%s gid=%s}"):format(v.pid, v.uid, v.gid) or tostring(v)
        end
        out[#out + 1] = name .. "=" .. table.concat(parts, ",")
      end
      return table.concat(out, " ")
    end
    local NAMES = { "listener", "peername", "socket_peername", "sockname", "peercred" }

    it("names the listener it came in on: the server's address, or the one the spec gives", function()
      local server = testing.serve({}, { port = 2222 })
      assert.are.equal("listener=127.0.0.1:2222 peername=127.0.0.1,50000 socket_peername=127.0.0.1,50000 "
        .. "sockname=127.0.0.1,2222 peercred=nil", info(server:connect(), NAMES))
      assert.are.equal("127.0.0.1:2222", server:listener())
      local conn = server:connect({ listener = "0.0.0.0:2222" })
      assert.are.equal("0.0.0.0:2222", conn:transport():get_extra_info("listener"))
      conn:transport():close()
      assert.is_true((conn:lost()))
      assert.is_nil(conn:transport():get_extra_info("listener")) -- only until connection_lost has returned
      local ok, err = pcall(server.connect, server, { listener = "udp:127.0.0.1:2222" })
      assert.is_false(ok)
      assert.matches("luaecho.testing: a stream connection cannot come in on udp:127.0.0.1:2222: use "
        .. "testing.datagram()", err, 1, true)
    end)

    it("tells the handler a listener's name before connection_lost has returned", function()
      local names = {}
      local conn = testing.connect({
        connection_made = function(self, t) self.t = t end,
        connection_lost = function(self) names[#names + 1] = self.t:get_extra_info("listener") end,
      }, { listener = "[::]:7" })
      conn:eof()
      assert.are.same({ "[::]:7" }, names)
    end)

    it("serves a Unix socket: peer path \"\", the socket's path, the peer's credentials", function()
      local server = testing.serve({}, { unix = "/run/echo.sock" })
      assert.are.equal("listener=unix:/run/echo.sock peername= socket_peername= sockname=/run/echo.sock "
        .. "peercred={pid=4242 uid=1000 gid=1000}", info(server:connect(), NAMES))
      assert.are.same({ "/run/echo.sock", "unix:/run/echo.sock" }, { server:address(), server:listener() })
      assert.are.equal("luaecho.server (unix:/run/echo.sock)", tostring(server:object()))
      assert.are.equal("/run/echo.sock", server:object():sockname())
      local conn = server:connect({ peercred = { pid = 7, uid = 0, gid = 5 }, peername = "/tmp/client.sock" })
      assert.are.equal("peername=/tmp/client.sock peercred={pid=7 uid=0 gid=5}",
        info(conn, { "peername", "peercred" }))
      assert.are.equal("/tmp/client.sock", conn:address())
      conn = testing.connect({}, { listener = "unix:/tmp/other.sock" })
      assert.are.equal("sockname=/tmp/other.sock peercred={pid=4242 uid=1000 gid=1000}",
        info(conn, { "sockname", "peercred" }))
    end)

    it("names a Unix peer in log lines as luaecho does", function()
      testing.expect_errors()
      local conn = testing.connect({ data_received = function() error("no") end },
        { unix = "/run/echo.sock", peercred = { pid = 99, uid = 1001, gid = 1001 } })
      conn:send("x")
      assert.matches("^data_received failed for unix peer %(pid 99, uid 1001%): ", conn:errors()[1])
      assert.are.equal("luaecho.transport (closed)", tostring(conn:transport()))
    end)

    it("answers socket_peername with the balancer's address behind a PROXY header", function()
      local conn = testing.connect({}, { peername = { "203.0.113.9", 47118 }, socket_peername = { "10.0.0.2", 36468 } })
      assert.are.equal("peername=203.0.113.9,47118 socket_peername=10.0.0.2,36468 peercred=nil",
        info(conn, { "peername", "socket_peername", "peercred" }))
      conn = testing.connect({}, { unix = "/run/lb.sock", peername = { "203.0.113.9", 47118 } })
      assert.are.equal("peername=203.0.113.9,47118 socket_peername= peercred={pid=4242 uid=1000 gid=1000}",
        info(conn, { "peername", "socket_peername", "peercred" }))
    end)

    it("refuses options that cannot go together", function()
      assert.has_error(function() testing.connect({}, { peercred = { pid = 1, uid = 0, gid = 0 } }) end,
        "luaecho.testing: opts.peercred is for a Unix connection: serve with opts.unix = PATH, or give "
          .. "opts.listener = \"unix:PATH\"")
      assert.has_error(function() testing.connect({}, { peername = "/tmp/x" }) end,
        "luaecho.testing: opts.peername is {host, port}, not /tmp/x")
      assert.has_error(function()
        testing.connect({}, { unix = "/run/a.sock", socket_peername = { "10.0.0.1", 1 } })
      end,
        "luaecho.testing: opts.socket_peername of a Unix connection is the peer's path (a string)")
    end)

    it("connects a program's Unix clients to its Unix servers", function()
      local program = testing.run(function()
        local server = luaecho.start_unix_server(function(reader, writer)
          writer:write(reader:readline():upper())
        end, "/tmp/up.sock")
        print(server:sockname(), tostring(server))
        local reader, writer = luaecho.open_unix_connection("/tmp/up.sock")
        writer:write("hello\n")
        print((reader:readline():gsub("\n$", "")))
        local _, err = pcall(luaecho.open_unix_connection, "/tmp/nobody.sock")
        print(tostring(err))
        local _, taken = pcall(luaecho.create_unix_server, {}, "/tmp/up.sock")
        print(tostring(taken))
        writer:close()
        server:close()
        server:wait_closed()
      end)
      assert.are.equal("done", program:status())
      assert.are.same({ "/tmp/up.sock\tluaecho.server (unix:/tmp/up.sock)", "HELLO",
        "ConnectionError: cannot connect to unix:/tmp/nobody.sock: no such file or directory",
        "ServerError: cannot listen on unix:/tmp/up.sock: address already in use (another process is listening on "
          .. "it; stop it first, it is not removed)" }, program:printed())
      -- the server is gone: its path is free again
      program = testing.run(function() luaecho.create_unix_server({}, "/tmp/up.sock"):close() end)
      assert.are.equal("done", program:status())
    end)

    it("gives a program's Unix client the server's path as peername", function()
      testing.serve({}, { unix = "/run/echo.sock" })
      local seen
      testing.run(function()
        local t = luaecho.create_unix_connection({}, "/run/echo.sock")
        seen = { t:get_extra_info("peername"), t:get_extra_info("sockname"), t:get_extra_info("peercred").pid }
      end)
      assert.are.same({ "/run/echo.sock", "", 4242 }, seen)
    end)
  end)

  describe("the virtual clock", function()
    it("fires sleeps and call_later timers in time order, without real time passing", function()
      local fired = {}
      testing.connect(function()
        luaecho.call_later(2, function() fired[#fired + 1] = "timer at 2 s" end)
        luaecho.sleep(1)
        fired[#fired + 1] = "slept until " .. luaecho.now()
        luaecho.sleep(1.5)
        fired[#fired + 1] = "slept until " .. luaecho.now()
      end)
      assert.are.same({}, fired)
      testing.advance(1)
      assert.are.same({ "slept until 1.0" }, fired)
      testing.advance(5)
      assert.are.same({ "slept until 1.0", "timer at 2 s", "slept until 2.5" }, fired)
      assert.are.same({ 6.0, 6.0 }, { testing.now(), luaecho.now() })
    end)

    it("fires timers due at the same time in the order they were set", function()
      local order = {}
      for i = 1, 5 do luaecho.call_later(0.1, function() order[#order + 1] = i end) end
      testing.advance(0.1)
      assert.are.same({ 1, 2, 3, 4, 5 }, order)
    end)

    it("fires many timers, set in any order, by their due time", function()
      local fired, seed = {}, 7
      for i = 1, 200 do
        seed = (seed * 1103515245 + 12345) % 2147483648
        local delay = seed % 50 / 10
        luaecho.call_later(delay, function() fired[#fired + 1] = { delay, i } end)
      end
      testing.advance(5)
      assert.are.equal(200, #fired)
      for k = 2, #fired do
        local a, b = fired[k - 1], fired[k]
        assert.is_true(a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]), "timer " .. b[2] .. " out of order")
      end
    end)

    it("runs what is due now on advance() with no argument", function()
      local fired = false
      luaecho.call_later(0, function() fired = true end)
      testing.advance()
      assert.are.same({ true, 0.0 }, { fired, testing.now() })
    end)

    it("keeps cancelled timers from firing, and counts those pending", function()
      local fired = false
      local handle = luaecho.call_later(1, function() fired = true end)
      luaecho.call_later(2, function() end)
      assert.are.equal(2, testing.pending_timers())
      handle:cancel()
      assert.are.same({ true, 1 }, { handle:cancelled(), testing.pending_timers() })
      testing.advance(3)
      assert.are.same({ false, 0 }, { fired, testing.pending_timers() })
    end)

    it("logs a failing timer callback and fires the others", function()
      testing.expect_errors()
      local fired = false
      luaecho.call_later(1, function() error("tick failed") end)
      luaecho.call_later(1, function() fired = true end)
      testing.advance(1)
      assert.is_true(fired)
      assert.matches("^luaecho: error: timer callback failed: [^\n]*tick failed\nstack traceback:", testing.logs()[1])
    end)

    it("aborts a connection after idle_timeout seconds without traffic either way", function()
      local conn = testing.connect("lua/examples/plain_echo.lua", { idle_timeout = 10 })
      testing.advance(6)
      conn:send("traffic") -- the idle time starts again
      testing.advance(9.999)
      assert.is_false(conn:closed())
      testing.advance(0.001)
      assert.are.same({ true, "idle timeout: no traffic for 10 s (--idle-timeout)" }, { conn:lost() })
      assert.are.same({ "luaecho: closing 127.0.0.1:50000: idle timeout: no traffic for 10 s (--idle-timeout)" },
        testing.logs())
    end)

    it("logs a limit at most once a second of virtual time, then says how many it held back", function()
      local server = testing.serve({}, { idle_timeout = 1 })
      for _ = 1, 3 do server:connect() end
      testing.advance(1)
      server:connect()
      testing.advance(1)
      assert.are.same({
        "closing 127.0.0.1:50000: idle timeout: no traffic for 1 s (--idle-timeout)",
        "closing 127.0.0.1:50003: idle timeout: no traffic for 1 s (--idle-timeout) (2 more like this since the "
          .. "last such line)",
      }, testing.logs("info"))
    end)

    it("refuses to run backwards, and says so when work keeps being scheduled for now", function()
      assert.has_error(function() testing.advance(-1) end, "luaecho.testing.advance(): seconds must be a number >= 0")
      local function again() luaecho.call_later(0, again) end
      again()
      assert.has_error(function() testing.advance() end,
        "luaecho.testing: the loop never settles: something keeps scheduling work for now")
    end)

    it("keeps luaecho's refusal to suspend outside a task", function()
      local ok, err = pcall(luaecho.sleep, 1)
      assert.is_false(ok)
      assert.matches("luaecho.sleep() cannot suspend here", err, 1, true)
    end)
  end)

  describe("servers and programs", function()
    it("shares one load of the script between a server's connections", function()
      local count = 0
      local server = testing.serve({ connection_made = function(_, t)
        count = count + 1
        t:write(tostring(count))
      end })
      assert.are.same({ "1", "2" }, { server:connect():output(), server:connect():output() })
      assert.are.equal(2, server:connections())
    end)

    it("refuses connections once a server is closed", function()
      local server = testing.serve({}, { port = 2222 })
      assert.are.equal(server, testing.server_at("localhost", 2222))
      server:close()
      assert.is_false(server:serving())
      assert.is_nil(testing.server_at("localhost", 2222))
      assert.has_error(function() testing.connect_to("localhost", 2222) end,
        "luaecho.testing: cannot connect to localhost port 2222: connection refused")
    end)

    it("resolves names given to add_host, and refuses the others", function()
      testing.add_host("echo.example", "10.1.2.3")
      testing.serve("lua/examples/plain_echo.lua", { host = "10.1.2.3", port = 7 })
      local result
      testing.run(function()
        local reader, writer = luaecho.open_connection("echo.example", 7)
        writer:write("ping\n")
        result = reader:readline()
        local ok, err = pcall(luaecho.open_connection, "nowhere.example", 7)
        result = { result, ok, tostring(err) }
      end)
      assert.are.same({ "ping\n", false, "ConnectionError: cannot resolve nowhere.example port 7: unknown node or "
        .. "service" }, result)
    end)

    it("runs a program with arg set as `luaecho run` sets it, and keeps its prints", function()
      local program = testing.run("spec/fixtures/run/args.lua", "one", "two", "three")
      assert.are.equal("done", program:status())
      assert.are.same({ "args.lua|one|two|three|3" }, program:printed())
    end)

    it("lets a handler connect to another fake server while it serves", function()
      testing.serve(function(reader, writer) writer:write(reader:readline():upper()) end, { port = 9000 })
      local conn = testing.connect(function(reader, writer)
        local line = reader:readline()
        local upstream_reader, upstream_writer = luaecho.open_connection("127.0.0.1", 9000)
        upstream_writer:write(line)
        writer:write("upstream says " .. upstream_reader:readline())
      end)
      conn:send("hello\n")
      assert.are.equal("upstream says HELLO\n", conn:output())
    end)

    it("shuts the fake host down as SIGTERM does: servers close, connections close, waiters wake", function()
      local server = testing.serve({})
      local conn = server:connect()
      local woke = false
      testing.run(function()
        server:object():wait_closed()
        woke = true
      end)
      testing.shutdown()
      assert.are.same({ false, true, true }, { server:serving(), conn:closed(), woke })
      assert.are.same({ "luaecho: shutting down (SIGTERM)" }, testing.logs())
    end)

    it("aborts, at the shutdown timeout, connections that will not finish closing", function()
      local conn = testing.connect({ connection_made = function(_, t) t:write("never read") end },
        { hold_output = true })
      testing.shutdown()
      assert.is_false((conn:lost()))
      testing.advance(5)
      assert.are.same({ true, "aborted: shutdown timeout" }, { conn:lost() })
    end)

    it("says, as luaecho run does, that a handler script is not a program", function()
      testing.expect_errors()
      local program = testing.run("echo.lua")
      assert.are.equal("failed", program:status())
      assert.matches("echo%.lua returned a Protocol table: it is a handler, which luaecho serves; "
        .. "serve it with 'luaecho [^']*echo%.lua' %('luaecho run' runs programs%)", (program:error()))
    end)

    it("reports a program that fails as luaecho run does, and shuts down", function()
      testing.expect_errors()
      local server = testing.serve({})
      local program = testing.run(function() error(errors.new("ServerError", "no luck")) end)
      assert.are.same({ "failed", "ServerError: no luck" }, { program:status(), (program:error()) })
      assert.is_true(errors.is(select(2, program:error()), "ServerError"))
      assert.is_false(server:serving())
    end)
  end)

  describe("an error the spec does not expect", function()
    -- Call fn(...) and return the error it raises (failing if it returns).
    local function raised(fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok, "expected an error")
      return err
    end

    it("fails the spec's next call into the fake with the error and its traceback", function()
      local conn = testing.connect({ data_received = function() error("boom") end })
      local err = raised(conn.send, conn, "x")
      assert.matches("^spec/luaecho/testing_spec%.lua:%d+: luaecho%.testing: an error the spec does not expect "
        .. "%(testing%.expect_errors%(%) declares them%):\ndata_received failed for 127%.0%.0%.1:50000: "
        .. "spec/luaecho/testing_spec%.lua:%d+: boom\nstack traceback:\n", err)
      local line = err:match("testing_spec%.lua:(%d+): boom")
      assert.matches("\n\tspec/luaecho/testing_spec.lua:" .. line .. ": in ", err, 1, true) -- the handler's frame
    end)

    it("raises it once, and conn:errors() still lists it", function()
      local conn = testing.connect({ data_received = function() error("boom", 0) end })
      raised(conn.send, conn, "x")
      assert.are.same({ "data_received failed for 127.0.0.1:50000: boom" }, conn:errors())
    end)

    it("fails the spec for a streams handler, a timer or a program as well", function()
      local conn = testing.connect(function(reader) error("handler broke on " .. reader:readline(), 0) end)
      assert.matches("stream handler failed for 127.0.0.1:50000: handler broke on hi\n\nstack traceback:",
        raised(conn.send, conn, "hi\n"), 1, true)
      luaecho.call_later(1, function() error("tick failed", 0) end)
      assert.matches("timer callback failed: tick failed\nstack traceback:", raised(testing.advance, 1), 1, true)
      assert.matches("not today\nstack traceback:", raised(testing.run, function() error("not today", 0) end),
        1, true)
    end)

    it("fails the spec when the error came from the spec's own call on the transport", function()
      local conn = testing.connect({ pause_writing = function() error("no pause", 0) end }, { hold_output = true })
      conn:transport():set_write_buffer_limits(1)
      conn:transport():write("xy")                    -- pause_writing runs, and fails, here
      assert.matches("pause_writing failed for 127.0.0.1:50000: no pause", raised(conn.output, conn), 1, true)
    end)

    it("only records errors the spec expects, until the next reset", function()
      testing.expect_errors()
      local conn = testing.connect({ data_received = function() error("boom", 0) end })
      conn:send("x")
      assert.are.same({ true, { "data_received failed for 127.0.0.1:50000: boom" } }, { conn:aborted(), conn:errors() })
      testing.reset()
      conn = testing.connect({ data_received = function() error("boom", 0) end })
      raised(conn.send, conn, "x")
    end)
  end)

  describe("what it takes from the host", function()
    local defaults = require "luaecho.defaults"

    it("takes the default limits from luaecho.defaults", function()
      local conn = testing.connect({})
      assert.are.same({ defaults.high_water // 4, defaults.high_water },
        { conn:transport():get_write_buffer_limits() })
      local seen = {}
      conn = testing.connect(recorder(seen))
      conn:send(("x"):rep(defaults.read_chunk + 1), defaults.read_chunk + 100)
      assert.are.same({ defaults.read_chunk, 1 }, { #seen[2] - #"data_received ", #seen[3] - #"data_received " })
    end)

    it("loads handler scripts through luaecho.loader, the host's loader", function()
      local loader = require "luaecho.loader"
      local load_file = loader.load_file
      local asked
      loader.load_file = function(path)
        asked = path
        return load_file(path)
      end
      local ok, err = pcall(testing.load, "examples/plain_echo.lua")
      loader.load_file = load_file
      assert.is_true(ok, err)
      assert.matches("lua/examples/plain_echo%.lua$", asked)
    end)

    it("is in parts that never require the public face, nor each other in a circle", function()
      local dir = package.searchpath("luaecho.testing.world", package.path):match("^(.*)/world%.lua$")
      local needs = {}
      for _, part in ipairs({ "world", "args", "report", "clock", "conn", "transport", "server", "scripts", "core",
        "peer", "runner", "datagram", "endpoint" }) do
        local text = assert(io.open(dir .. "/" .. part .. ".lua")):read("a"):gsub("\n%-%-[^\n]*", "")
        needs[part] = {}
        for name in text:gmatch('require "luaecho%.testing%.?([%w_]*)"') do
          assert.are_not.equal("", name, part .. ".lua requires the public face")
          needs[part][#needs[part] + 1] = name
        end
      end
      local state = {}
      local function visit(part, path)
        assert.are_not.equal("visiting", state[part], "a require circle: " .. path)
        if state[part] == "done" then return end
        state[part] = "visiting"
        for _, name in ipairs(needs[part]) do visit(name, path .. " -> " .. name) end
        state[part] = "done"
      end
      for part in pairs(needs) do visit(part, part) end
    end)
  end)

  describe("reset", function()
    it("starts afresh: clock, timers, servers, logs and peer ports", function()
      luaecho.call_later(1, function() error("must not fire") end)
      testing.serve({}, { port = 2222 })
      testing.advance(0.5)
      testing.reset()
      assert.are.same({ 0.0, 0, {} }, { testing.now(), testing.pending_timers(), testing.logs() })
      testing.advance(1)
      assert.are.same({}, testing.logs())
      local server = testing.serve({}, { port = 2222 })
      assert.are.equal(50000, select(2, server:connect():address()))
    end)
  end)
end)
