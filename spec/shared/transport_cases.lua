--- The transport contract as behavioural cases, run twice: against
-- luaecho.testing's fake (spec/luaecho/transport_cases_spec.lua) and
-- against the real binary over TCP (spec/integration/transport_cases_spec.lua),
-- so the two cannot drift apart. Each case names a fixture handler under
-- spec/fixtures/cases/, the host options it needs, and a run(h) that
-- talks to it through a harness both spec files provide:
--
--   h:connect() -> peer        a new connection to the fixture
--   h:printed(pattern)         every line the handler printed so far, once
--                              one of them matches the Lua pattern
--   h:logged(pattern)          the host's log (stderr) text, once it matches
--   h:advance(seconds)         time passes (the fake's clock; the real
--                              binary is simply waited for afterwards)
--   h:refused()                true when a new connection is refused
--   peer:send(data)            peer:eof()  peer:reset()  peer:port()
--   peer:receive(n)            exactly n bytes
--   peer:receive_until(s)      bytes up to and including s
--   peer:receive_until_close() the rest, once the handler's side has ended
--   peer:hold()                stop reading: writes queue in the transport
--
-- The expectations are the README's contract ("Lua API"). Where the real
-- binary disagrees, the case fails on the integration side: that is a
-- finding to report, not a case to weaken.
local assert = require "luassert"

local M = {}

local function case(name, script, run, options)
  M[#M + 1] = { name = name, script = script, run = run, options = options or {} }
end

-- Lines of 'lines' starting with 'prefix', without it.
local function starting(lines, prefix)
  local out = {}
  for _, line in ipairs(lines) do
    if line:sub(1, #prefix) == prefix then out[#out + 1] = line:sub(#prefix + 1) end
  end
  return out
end

-- The "<stage> <method> <outcome>" lines probe.lua printed for 'stage'.
local function probed(lines, stage)
  local results = {}
  for _, line in ipairs(starting(lines, stage .. " ")) do
    local method, outcome = line:match("^(%S+) (.*)$")
    if method then results[method] = outcome end
  end
  return results
end

-- What the README promises of a transport after close()/abort(): the
-- write methods raise, the rest are no-ops or report it closed;
-- get_extra_info answers "peername" always, "server" and "generation"
-- until connection_lost has returned, and gives the default for the rest.
local function closed_transport(port, server)
  local until_lost = server == "ok default" and "ok default" or "ok 1"
  return {
    write = "error transport:write(): transport is closed",
    writelines = "error transport:writelines(): transport is closed",
    write_eof = "error transport:write_eof(): transport is closed",
    can_write_eof = "ok true",
    is_closing = "ok true",
    is_reading = "ok false",
    get_write_buffer_size = "ok 0",
    peername = "ok 127.0.0.1 " .. port,
    sockname = "ok default",
    generation = until_lost,
    server = server,
    pause_reading = "ok",
    resume_reading = "ok",
    set_write_buffer_limits = "ok 16384 65536", -- a no-op: the defaults stay
    close = "ok",
    abort = "ok",
  }
end

-- Compare probe results method by method, so that a failure lists every
-- method that differs, not only the first.
local function assert_probed(expected, actual)
  local differences = {}
  local methods = {}
  for method in pairs(expected) do methods[#methods + 1] = method end
  for method in pairs(actual) do
    if expected[method] == nil then methods[#methods + 1] = method end
  end
  table.sort(methods)
  for _, method in ipairs(methods) do
    if expected[method] ~= actual[method] then
      differences[#differences + 1] = ("%s: expected %q, got %q"):format(method, tostring(expected[method]),
        tostring(actual[method]))
    end
  end
  assert.are.same({}, differences)
end

------------------------------------------------------------------------------
-- Flow-control marks: asyncio's defaults, and a clear error for any mark
-- outside 0..4294967295 (never an overflow of 4 * low).

case("checks the range of set_write_buffer_limits' marks", "limit_values.lua", function(h)
  h:connect()
  local lines = h:printed("^limits done$")
  local range = "transport:set_write_buffer_limits(): %s must be between 0 and 4294967295 bytes, not %s"
  assert.are.same({
    "limits nil, huge: " .. range:format("low", "9223372036854775807"),
    "limits huge: " .. range:format("high", "9223372036854775807"),
    "limits negative high: " .. range:format("high", "-1"),
    "limits negative low: " .. range:format("low", "-5"),
    "limits low above high: transport:set_write_buffer_limits(): high (10) must be >= low (20) >= 0",
    "limits max: ok 0 4294967295",
    "limits above max: " .. range:format("high", "4294967296"),
    "limits low derives high: ok 2000000000 4294967295",
    "limits float: bad argument #1 to 'set_write_buffer_limits' (number has no integer representation)",
    "limits done",
  }, lines)
end)

------------------------------------------------------------------------------
-- Callbacks: order, count, arguments.

case("calls connection_made, data_received per chunk, eof_received, then connection_lost(nil)", "trace.lua",
  function(h)
    local p = h:connect()
    p:send("hello")
    assert.are.equal("hello", p:receive(5))
    p:eof()
    assert.are.equal("", p:receive_until_close()) -- eof_received returned nothing: the host closed
    local port = p:port()
    assert.are.same({ port .. " connection_made", port .. " data_received 5", port .. " eof_received",
      port .. " connection_lost nil" }, h:printed(" connection_lost "))
  end)

case("gives connection_lost 'connection reset by peer' when the peer resets", "trace.lua", function(h)
  local p = h:connect()
  p:send("x")
  assert.are.equal("x", p:receive(1))
  p:reset()
  local lines = h:printed(" connection_lost ")
  assert.are.equal(p:port() .. " connection_lost connection reset by peer", lines[#lines])
end)

case("delivers data in chunks of at most 64 KiB, every byte once", "chunks.lua", function(h)
  local p = h:connect()
  p:send(("x"):rep(200000))
  p:eof()
  p:receive_until_close()
  local total, largest = h:printed("^total ")[1]:match("^total (%d+) largest (%d+)$")
  assert.are.equal(200000, tonumber(total))
  assert.is_true(tonumber(largest) <= 65536, "a chunk of " .. largest .. " bytes")
end)

case("keeps our side open when eof_received returns true, and stops reading", "keep_open.lua", function(h)
  local p = h:connect()
  p:send("abc")
  p:eof()
  assert.are.equal("got 3 bytes\n", p:receive_until("\n"))
  h:advance(0.05)
  assert.are.equal("later\n", p:receive_until_close())
  assert.are.same({ "eof_received reading false closing false", "connection_lost nil" },
    h:printed("^connection_lost "))
end)

------------------------------------------------------------------------------
-- Protocol instances.

case("makes each connection's instance with Protocol.new() when the Protocol has one", "new.lua", function(h)
  local a = h:connect()
  assert.are.equal("instance 1\n", a:receive_until("\n"))
  local b = h:connect()
  assert.are.equal("instance 2\n", b:receive_until("\n"))
end)

case("otherwise makes a fresh table inheriting from the Protocol, one metatable for all", "inherit.lua",
  function(h)
    local a = h:connect()
    assert.are.equal("inherits true fresh true shared true\n", a:receive_until("\n"))
    local b = h:connect()
    assert.are.equal("inherits true fresh true shared true\n", b:receive_until("\n"))
  end)

case("runs no callback when Protocol.new() does not return a table, and logs why", "bad_new.lua", function(h)
  local p = h:connect()
  assert.are.equal("", p:receive_until_close())
  local log = h:logged("creating the protocol instance failed")
  assert.matches("luaecho: error: creating the protocol instance failed for 127%.0%.0%.1:" .. p:port()
    .. ": Protocol%.new%(%) must return a table, not number\n", log)
  local second = h:connect() -- the server goes on
  assert.are.equal("", second:receive_until_close())
  assert.are.same({}, h:printed(nil))
end)

------------------------------------------------------------------------------
-- Errors in callbacks.

case("logs an error in data_received with the peer and a traceback, aborts that connection alone, "
  .. "and passes the error to connection_lost", "boom.lua", function(h)
  local victim, bystander = h:connect(), h:connect()
  bystander:send("ping")
  assert.are.equal("ping", bystander:receive(4))
  victim:send("boom")
  assert.are.equal("", victim:receive_until_close())
  local port = victim:port()
  local lost = starting(h:printed("^" .. port .. " connection_lost "), port .. " connection_lost ")
  assert.are.equal(1, #lost)
  assert.matches("^[^\n]*boom%.lua:%d+: boom in data_received$", lost[1])
  local log = h:logged("data_received failed")
  assert.matches("luaecho: error: data_received failed for 127%.0%.0%.1:" .. port
    .. ": [^\n]*boom%.lua:%d+: boom in data_received\nstack traceback:\n", log)
  bystander:send("still here")
  assert.are.equal("still here", bystander:receive(10))
end)

case("words an error value that is not a string as the host does", "boom.lua", function(h)
  local expected = { { "table", "(error object is a table value)" }, { "tostring", "a custom error" },
    { "number", "42" } }
  for _, pair in ipairs(expected) do
    local command, message = pair[1], pair[2]
    local p = h:connect()
    p:send(command)
    assert.are.equal("", p:receive_until_close())
    local prefix = p:port() .. " connection_lost "
    assert.are.same({ message }, starting(h:printed("^" .. prefix), prefix))
    -- The log says at most one failure a second: the first one is there.
    if command == expected[1][1] then
      assert.matches("luaecho: error: data_received failed for 127%.0%.0%.1:" .. p:port() .. ": "
        .. message:gsub("%p", "%%%0") .. "\n", h:logged("failed for 127%.0%.0%.1:" .. p:port()))
    end
  end
end)

case("aborts on an error in eof_received and passes it to connection_lost", "boom.lua", function(h)
  local p = h:connect()
  p:send("eof")
  assert.are.equal("eof", p:receive(3))
  p:eof()
  assert.are.equal("", p:receive_until_close())
  local prefix = p:port() .. " connection_lost "
  local lost = starting(h:printed("^" .. prefix), prefix)
  assert.matches("^[^\n]*boom%.lua:%d+: boom in eof_received$", lost[1])
  assert.matches("eof_received failed for 127%.0%.0%.1:" .. p:port(), h:logged("eof_received failed"))
end)

case("logs an error in connection_lost, and nothing else happens", "boom.lua", function(h)
  local p = h:connect()
  p:send("lost")
  assert.are.equal("lost", p:receive(4))
  p:eof()
  assert.are.equal("", p:receive_until_close())
  local prefix = p:port() .. " connection_lost "
  assert.are.same({ "nil" }, starting(h:printed("^" .. prefix), prefix))
  local log = h:logged("connection_lost failed")
  assert.matches("luaecho: error: connection_lost failed for 127%.0%.0%.1:" .. p:port()
    .. ": [^\n]*boom%.lua:%d+: boom in connection_lost\n", log)
  local _, errors = log:gsub("luaecho: error: ", "")
  assert.are.equal(1, errors)
end)

case("aborts on an error in connection_made and passes it to connection_lost", "boom_made.lua", function(h)
  local p = h:connect()
  assert.are.equal("", p:receive_until_close())
  local lines = h:printed("^connection_lost ")
  assert.are.equal(1, #lines)
  assert.matches("^connection_lost [^\n]*boom_made%.lua:%d+: no welcome$", lines[1])
  assert.matches("luaecho: error: connection_made failed for 127%.0%.0%.1:" .. p:port(),
    h:logged("connection_made failed"))
end)

------------------------------------------------------------------------------
-- The transport's methods, open and closed.

case("answers get_extra_info and reports an open transport's state", "info.lua", function(h)
  local p = h:connect()
  p:send("info")
  local text = p:receive_until("info done\n")
  local expected = table.concat({
    "peername 127.0.0.1 " .. p:port(),
    "sockname " .. h.host .. " " .. h.port,
    "server " .. h.host .. " " .. h.port,
    "serving true",
    "generation 1",
    "unknown default",
    "state false true true 0",
    "limits 16384 65536",
    "transport luaecho.transport (127.0.0.1:" .. p:port() .. ")",
    "server_object luaecho.server (" .. h.host .. ":" .. h.port .. ")",
    "info done",
  }, "\n") .. "\n"
  assert.are.equal(expected, text)
end)

case("writes strings and numbers in order, and refuses what is not a string", "info.lua", function(h)
  local p = h:connect()
  p:send("writes")
  assert.are.equal("a42bc\n", p:receive_until("\n"))
  assert.are.same({
    "writelines transport:writelines(): item 2 is a number, not a string",
    "write bad argument #1 to 'write' (string expected, got table)",
    "writelines string bad argument #1 to 'writelines' (table expected, got string)",
  }, h:printed("^writelines string"))
end)

case("after close(): flushes, then raises on writes and reports the transport closed", "probe.lua", function(h)
  local p = h:connect()
  p:send("close")
  assert.are.equal("closing\n", p:receive_until_close())
  local lines = h:printed("^closed done$")
  assert_probed(closed_transport(p:port(), "ok server"), probed(lines, "closed"))
end)

case("after abort(): raises on writes and reports the transport closed", "probe.lua", function(h)
  local p = h:connect()
  p:send("abort")
  assert.are.equal("", p:receive_until_close())
  assert_probed(closed_transport(p:port(), "ok server"), probed(h:printed("^aborted done$"), "aborted"))
end)

case("inside connection_lost: the transport is closed, and its server still answers", "probe.lua", function(h)
  local p = h:connect()
  p:send("close")
  p:receive_until_close()
  local lines = h:printed("^lost done$")
  assert.are.equal("nil", starting(lines, "lost ")[1]) -- connection_lost(nil), then the probes
  assert_probed(closed_transport(p:port(), "ok server"), probed(lines, "lost"))
end)

case("once the connection has gone: the transport is closed, and has no server", "probe.lua", function(h)
  local first = h:connect()
  first:send("close")
  first:receive_until_close()
  h:printed("^lost done$")
  local second = h:connect()
  second:send("probe")
  assert.are.equal("probed\n", second:receive_until("\n"))
  assert_probed(closed_transport(first:port(), "ok default"), probed(h:printed("^gone done$"), "gone"))
end)

case("after write_eof(): sends EOF, refuses writes, and still receives", "probe.lua", function(h)
  local p = h:connect()
  p:send("eof")
  assert.are.equal("bye\n", p:receive_until_close())
  assert_probed({
    write = "error transport:write(): cannot write after write_eof()",
    writelines = "error transport:writelines(): cannot write after write_eof()",
    write_eof = "ok",
    is_closing = "ok false",
    is_reading = "ok true",
    can_write_eof = "ok true",
  }, probed(h:printed("^after_eof done$"), "after_eof"))
  p:send("still talking")
  h:printed("^data still talking$")
  p:eof()
  h:printed("^lost nil$")
end)

case("holds data and EOF while reading is paused, and delivers them in order after resume_reading",
  "pausing.lua", function(h)
    local p = h:connect()
    p:send("pause")
    assert.are.equal("paused\n", p:receive_until("\n"))
    p:send("more")
    p:eof()
    h:advance(0.1)
    assert.are.equal("", p:receive_until_close())
    assert.are.same({ "reading false", "resume", "data more", "eof_received", "connection_lost nil" },
      h:printed("^connection_lost "))
  end)

------------------------------------------------------------------------------
-- Flow control.

case("calls pause_writing once above the high mark and resume_writing once at the low mark", "flow.lua",
  function(h)
    local p = h:connect()
    p:hold()
    p:send("flood")
    h:printed("^pause_writing ")
    local data = p:receive_until("end\n")
    assert.are.equal("end\n", data:sub(-4))
    local lines = h:printed("^resume_writing ")
    assert.are.equal(2, #lines)
    local paused = tonumber(lines[1]:match("^pause_writing (%d+)$"))
    local resumed = tonumber(lines[2]:match("^resume_writing (%d+)$"))
    assert.is_true(paused > 65536, "paused at " .. tostring(paused))
    assert.is_true(resumed <= 16384, "resumed at " .. tostring(resumed))
  end)

case("sets write buffer limits as asyncio does: low defaults to high/4, high to 4*low", "flow.lua",
  function(h)
    local p = h:connect()
    p:send("limits")
    assert.are.equal("limits done\n", p:receive_until("\n"))
    assert.are.same({
      "defaults 16384 65536",
      "high 1000 250 1000",
      "low 100 100 400",
      "both 300 200 200 300",
      "none 16384 65536",
      -- A negative mark is an error, as asyncio's ValueError (issue 12, defect 6).
      "negative error transport:set_write_buffer_limits(): high must be between 0 and 4294967295 bytes, not -5",
      "low above high error transport:set_write_buffer_limits(): high (10) must be >= low (20) >= 0",
      "fraction error bad argument #1 to 'set_write_buffer_limits' (number has no integer representation)",
    }, h:printed("^fraction "))
  end)

case("close() sends everything queued before closing, and reports what it still has to send", "flow.lua",
  function(h)
    local p = h:connect()
    p:hold()
    p:send("flood_close")
    local lines = h:printed("^wrote ")
    local written = tonumber(lines[#lines]:match("^wrote (%d+)$"))
    local data = p:receive_until_close()
    assert.are.equal(written, #data)
    local after = starting(lines, "after close ")
    assert.are.equal(1, #after)
    local buffered, closing = after[1]:match("^buffer (%d+) closing (%a+)$")
    assert.are.equal("true", closing)
    assert.is_true(tonumber(buffered) > 0, "close() with a client not reading: output still to send")
  end)

case("aborts a connection whose queued output passes --max-write-buffer", "flow.lua", function(h)
  local p = h:connect()
  p:hold()
  p:send("hoard")
  local lost = starting(h:printed("^connection_lost "), "connection_lost ")
  assert.matches("^write buffer over %-%-max%-write%-buffer %(%d+ bytes queued, cap 1048576%): the peer does not read$",
    lost[1])
  assert.matches("luaecho: warning: aborting 127%.0%.0%.1:" .. p:port() .. ": write buffer over",
    h:logged("aborting"))
end, { max_write_buffer = 1048576 })

------------------------------------------------------------------------------
-- Time: timers and the idle timeout.

case("fires call_later timers in time order with their arguments, and not once cancelled", "timers.lua",
  function(h)
    local p = h:connect()
    p:send("start")
    h:advance(0.3)
    assert.are.equal("at 0.1 x 7\nat 0.2\n", p:receive_until_close())
    local lines = h:printed("^sleep ")
    assert.are.equal("cancelled true", lines[1])
    assert.matches("^sleep luaecho%.sleep%(%) cannot suspend here: call it from a luaecho task", lines[2])
  end)

case("aborts a connection idle for --idle-timeout and tells connection_lost why", "trace.lua", function(h)
  local p = h:connect()
  p:send("x")
  assert.are.equal("x", p:receive(1))
  h:advance(0.2)
  assert.are.equal("", p:receive_until_close())
  local prefix = p:port() .. " connection_lost "
  assert.are.same({ "idle timeout: no traffic for 0.2 s (--idle-timeout)" },
    starting(h:printed("^" .. prefix), prefix))
  assert.matches("luaecho: closing 127%.0%.0%.1:" .. p:port() .. ": idle timeout: no traffic for 0%.2 s",
    h:logged("idle timeout"))
end, { idle_timeout = 0.2 })

case("logs idle timeouts at most once a second, however many connections they close", "trace.lua", function(h)
  local peers = { h:connect(), h:connect(), h:connect() }
  h:advance(0.2)
  for _, p in ipairs(peers) do assert.are.equal("", p:receive_until_close()) end
  h:printed(" connection_lost idle timeout")
  local log = h:logged("closing 127")
  local _, lines = log:gsub("luaecho: closing 127%.0%.0%.1:%d+: idle timeout", "")
  assert.are.equal(1, lines)
end, { idle_timeout = 0.2 })

------------------------------------------------------------------------------
-- The server.

case("stops accepting once the script closes its server (close is idempotent)", "one_shot.lua", function(h)
  local p = h:connect()
  p:send("hi")
  assert.are.equal("echo:hi", p:receive(7))
  p:eof()
  p:receive_until_close()
  assert.are.same({ "closed is_serving false sockname nil" }, h:printed("^closed "))
  assert.is_true(h:refused())
end)

case("keeps serving open connections after server:close()", "closer.lua", function(h)
  local a, b = h:connect(), h:connect()
  a:send("close_server")
  assert.are.equal("closed\n", a:receive_until("\n"))
  assert.is_true(h:refused())
  b:send("still served")
  assert.are.equal("still served", b:receive(12))
end)

------------------------------------------------------------------------------
-- Streams handlers.

case("serves a streams handler: lines however they are split, and its return closes", "lines.lua", function(h)
  local p = h:connect()
  p:send("hel")
  p:send("lo\nwor")
  p:send("ld\n")
  assert.are.equal("> hello\n> world\n", p:receive(16))
  p:eof()
  assert.are.equal("bye\n", p:receive_until_close())
end)

case("lets a streams handler sleep", "lines.lua", function(h)
  local p = h:connect()
  p:send("sleep\n")
  h:advance(0.1)
  assert.are.equal("woke\n", p:receive_until("\n"))
end)

case("logs a failing streams handler with the peer and aborts its connection", "lines.lua", function(h)
  local p = h:connect()
  p:send("boom\n")
  assert.are.equal("", p:receive_until_close())
  assert.matches("luaecho: error: stream handler failed for 127%.0%.0%.1:" .. p:port()
    .. ": [^\n]*lines%.lua:%d+: handler exploded\n", h:logged("stream handler failed"))
end)

return M
