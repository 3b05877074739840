-- luaecho.testing's UDP: testing.datagram (a script's DatagramProtocol on
-- a fake udp: listener) and luaecho.create_datagram_endpoint on the fake
-- host (endpoints that reach each other by address), as src/datagram.c
-- behaves (spec/integration/datagram_spec.lua checks the real one).
local testing = require "luaecho.testing"
local luaecho = require "luaecho"
local defaults = require "luaecho.defaults"

-- A DatagramProtocol that records its callbacks (with their arguments)
-- in 'seen', and keeps its transport.
local function recorder(seen, extra)
  local P = {}
  for _, name in ipairs({ "connection_made", "datagram_received", "error_received", "pause_writing",
    "resume_writing", "connection_lost" }) do
    P[name] = function(self, ...)
      if name == "connection_made" then
        self.transport = ...
        seen[#seen + 1] = name
        return
      end
      local parts = { name }
      for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
      seen[#seen + 1] = table.concat(parts, " ")
    end
  end
  for k, v in pairs(extra or {}) do P[k] = v end
  return P
end

-- A Protocol answering each datagram with 'prefix' .. data, to its sender.
local function answering(prefix)
  return {
    connection_made = function(self, t) self.transport = t end,
    datagram_received = function(self, data, host, port) self.transport:sendto(prefix .. data, host, port) end,
  }
end

describe("luaecho.testing's datagrams #unit", function()
  before_each(testing.reset)

  describe("the default script, lua/echo.lua", function()
    it("answers each datagram to its sender with echo: and prints what came", function()
      local ep = testing.datagram("lua/echo.lua")
      ep:send("hello")
      ep:send("again", "10.0.0.7", 4444)
      assert.are.same({
        { data = "echo:hello", host = "127.0.0.1", port = 50000 },
        { data = "echo:again", host = "10.0.0.7", port = 4444 },
      }, ep:sent())
      assert.are.same({}, ep:sent())
      assert.are.same({ '"hello"', '"again"' }, ep:printed())
      assert.are.same({ "connection_made", "datagram_received", "datagram_received" }, ep:events())
    end)

    it("prints no Connection received!/lost! for its endpoint, which is no connection", function()
      local ep = testing.datagram("echo.lua")
      ep:send("")
      ep:close()
      assert.are.same({ true, nil }, { ep:lost() })
      assert.are.same({ '""' }, ep:printed())
      assert.are.same({ { data = "echo:", host = "127.0.0.1", port = 50000 } }, ep:sent())
      assert.are.same({ "connection_made", "datagram_received", "connection_lost" }, ep:events())
    end)

    it("goes on answering past the high mark: a datagram transport has nothing to pause", function()
      local ep = testing.datagram("lua/echo.lua")
      local half = defaults.high_water // 2
      ep:hold()
      ep:send(("x"):rep(half))
      assert.is_true(ep:protocol().transport:get_write_buffer_size() <= defaults.high_water)
      ep:send(("y"):rep(half))
      assert.are.same({ "connection_made", "datagram_received", "datagram_received", "pause_writing" }, ep:events())
      assert.are.same({}, ep:errors())
      ep:release()
      local sent = ep:sent()
      assert.are.same({ 2, #"echo:" + half }, { #sent, #sent[1].data })
    end)
  end)

  describe("testing.datagram", function()
    it("serves one instance on a udp: listener, named as luaecho names it", function()
      local ep = testing.datagram({ datagram_received = function() end }, { port = 2223 })
      local t = ep:transport()
      assert.are.same({ "127.0.0.1", 2223 }, { ep:address() })
      assert.are.same({ "127.0.0.1", 2223 }, { t:get_extra_info("sockname") })
      assert.are.same({ "udp:127.0.0.1:2223", 1, 1 },
        { t:get_extra_info("listener"), t:get_extra_info("worker"), t:get_extra_info("generation") })
      assert.are.equal("none", t:get_extra_info("peername", "none"))
      assert.are.equal("luaecho.datagram_transport (udp 127.0.0.1:2223)", tostring(t))
      local named = testing.datagram({ datagram_received = function() end },
        { host = "::1", listener = "udp:[::1]:53" })
      assert.are.equal("udp:[::1]:53", named:transport():get_extra_info("listener"))
      assert.are.same({ "::1", 40000 }, { named:address() })
    end)

    it("refuses, as luaecho does at start, a script without datagram_received", function()
      local message = "cannot load script: udp:127.0.0.1:40000: the script's Protocol has no "
        .. "datagram_received(data, host, port), so it cannot serve datagrams (a streams handler "
        .. "function(reader, writer) serves only stream listeners)"
      -- (assert.has_error would take "cannot load script: udp:127.0.0.1:40000: " for a source position)
      local function refusal(...)
        local ok, err = pcall(testing.datagram, ...)
        assert.is_false(ok)
        return (err:gsub("^spec/luaecho/testing_datagram_spec%.lua:%d+: ", ""))
      end
      assert.are.equal(message, refusal("examples/plain_echo.lua"))
      assert.are.equal(message:gsub("40000", "40001"), refusal(function() end))
      assert.are.equal(message:gsub("40000", "7"), refusal({ data_received = function() end }, { port = 7 }))
    end)

    it("refuses a port already bound", function()
      testing.datagram("echo.lua", { port = 2223 })
      local ok, err = pcall(testing.datagram, "echo.lua", { port = 2223 })
      assert.is_false(ok)
      assert.matches(":%d+: luaecho%.testing: cannot listen on udp:127%.0%.0%.1:2223: address already in use$", err)
    end)

    it("gives each datagram whole, with the sender's address", function()
      local seen = {}
      local ep = testing.datagram(recorder(seen))
      ep:send("one", "192.0.2.1", 9)
      ep:send("", "::1", 65535)
      assert.are.same({ "connection_made", "datagram_received one 192.0.2.1 9", "datagram_received  ::1 65535" },
        seen)
      assert.has_error(function() ep:send(("x"):rep(65508)) end,
        "luaecho.testing: a datagram carries at most 65507 bytes, not 65508")
    end)

    it("passes error() to error_received", function()
      local seen = {}
      local ep = testing.datagram(recorder(seen))
      ep:error("connection refused")
      assert.are.same({ "connection_made", "error_received connection refused" }, seen)
    end)

    it("logs a failing datagram_received as the host does, and goes on serving", function()
      testing.expect_errors()
      local ep = testing.datagram({
        connection_made = function(self, t) self.transport = t end,
        datagram_received = function(self, data, host, port)
          if data == "boom" then error("datagram exploded") end
          self.transport:sendto(data, host, port)
        end,
      })
      ep:send("boom")
      ep:send("still there?")
      assert.are.equal("still there?", ep:sent()[1].data)
      assert.is_false(ep:closed())
      assert.matches("^datagram_received failed for udp:127%.0%.0%.1:40000: [^\n]*testing_datagram_spec%.lua:%d+: "
        .. "datagram exploded$", ep:errors()[1])
      assert.matches("^luaecho: error: datagram_received failed for udp:127%.0%.0%.1:40000: .*\nstack traceback:",
        testing.logs()[1])
    end)

    it("fails the spec at its next call when a callback fails unexpectedly", function()
      local ep = testing.datagram({ datagram_received = function() error("oops") end })
      local ok, err = pcall(ep.send, ep, "x")
      assert.is_false(ok)
      assert.matches("an error the spec does not expect", err, 1, true)
      assert.matches("datagram_received failed for udp:127.0.0.1:40000", err, 1, true)
    end)

    it("closes the endpoint whose connection_made fails, with its error", function()
      testing.expect_errors()
      local lost = {}
      local ep = testing.datagram({
        connection_made = function() error("no start") end,
        datagram_received = function() lost[#lost + 1] = "datagram" end,
        connection_lost = function(_, err) lost[#lost + 1] = err end,
      })
      ep:send("ignored")
      assert.is_true(ep:closed())
      assert.are.equal(1, #lost)
      assert.matches("no start$", lost[1])
      assert.matches("^connection_made failed for udp:127%.0%.0%.1:40000: ", ep:errors()[1])
    end)

    it("warns of an instance from Protocol.new() that has no datagram_received", function()
      local ep = testing.datagram({ datagram_received = function() end, new = function() return {} end })
      ep:send("lost")
      assert.matches("^luaecho: warning: a datagram protocol instance has no datagram_received",
        testing.logs()[1])
      assert.are.same({}, ep:events()) -- the instance has no method at all
    end)

    it("closes as luaecho does: connection_lost(nil) once, no datagram after, sendto raises", function()
      local seen = {}
      local ep = testing.datagram(recorder(seen))
      local t = ep:transport()
      ep:close()
      ep:send("too late")
      ep:close()
      assert.are.same({ "connection_made", "connection_lost nil" }, seen)
      assert.are.same({ true, true }, { ep:closed(), t:is_closing() })
      assert.has_error(function() t:sendto("x", "127.0.0.1", 9) end,
        "transport:sendto(): datagram transport is closed")
      assert.are.equal("luaecho.datagram_transport (closed)", tostring(t))
      assert.is_nil(t:get_extra_info("sockname"))
      assert.are.equal(0, t:get_write_buffer_size())
    end)

    it("lets the script abort or close from its callbacks", function()
      local seen = {}
      local ep = testing.datagram(recorder(seen, {
        datagram_received = function(self, data) if data == "bye" then self.transport:abort() end end,
      }))
      ep:send("bye")
      assert.are.same({ true, nil }, { ep:lost() })
      assert.are.same({ "connection_made", "connection_lost nil" }, seen)
    end)

    it("checks sendto's arguments as the host does", function()
      local ep = testing.datagram(recorder({}))
      local t = ep:transport()
      assert.has_error(function() t:sendto("x", "localhost", 9) end,
        "transport:sendto(): host must be an IP address, not 'localhost'")
      assert.has_error(function() t:sendto("x", "127.0.0.1", 70000) end,
        "transport:sendto(): port must be 1 to 65535, not 70000")
      assert.has_error(function() t:sendto("x") end,
        "transport:sendto(): the endpoint has no remote address: give host and port")
      assert.has_error(function() t.sendto(t) end,
        "bad argument #2 to 'sendto' (string expected, got nil)")
      assert.has_error(function() t:sendto({}) end, "bad argument #1 to 'sendto' (string expected, got table)")
      assert.has_error(function() t.extra = 1 end)
      assert.has_error(function() t:set_write_buffer_limits(10, 20) end,
        "transport:set_write_buffer_limits(): high (10) must be >= low (20) >= 0")
    end)
  end)

  describe("flow control", function()
    it("queues sends while held: pause_writing past the high mark, resume_writing at the low one", function()
      local seen = {}
      local ep = testing.datagram(recorder(seen))
      local t = ep:protocol().transport
      t:set_write_buffer_limits(10, 4)
      assert.are.same({ 4, 10 }, { t:get_write_buffer_limits() })
      ep:hold()
      t:sendto("123456", "127.0.0.1", 9)
      assert.are.same({ "connection_made" }, seen)
      t:sendto("abcdef", "127.0.0.1", 9)
      assert.are.same({ "connection_made", "pause_writing" }, seen)
      assert.are.same({ 12, 12, {} }, { t:get_write_buffer_size(), ep:buffered(), ep:sent() })
      ep:release()
      assert.are.same({ "connection_made", "pause_writing", "resume_writing" }, seen)
      local sent = ep:sent()
      assert.are.same({ "123456", "abcdef" }, { sent[1].data, sent[2].data })
    end)

    it("sends the queue in order on release, and pauses at once when the marks drop below it", function()
      local seen = {}
      local ep = testing.datagram(recorder(seen))
      local t = ep:protocol().transport
      ep:hold()
      t:sendto("a", "127.0.0.1", 9)
      t:sendto("b", "127.0.0.2", 10)
      t:set_write_buffer_limits(1)
      assert.are.same({ "connection_made", "pause_writing" }, seen)
      ep:release()
      assert.are.same({ { data = "a", host = "127.0.0.1", port = 9 }, { data = "b", host = "127.0.0.2", port = 10 } },
        ep:sent())
      assert.are.same({ "connection_made", "pause_writing", "resume_writing" }, seen)
      t:sendto("c", "127.0.0.1", 9)
      assert.are.equal(1, #ep:sent())
    end)

    it("drops, with a warning, a datagram that would pass max_write_buffer", function()
      local ep = testing.datagram(answering(""), { max_write_buffer = 10 })
      ep:hold()
      ep:send("123456")
      ep:send("7890ab")
      ep:release()
      local sent = ep:sent()
      assert.are.same({ 1, "123456" }, { #sent, sent[1].data })
      assert.are.same({ "luaecho: warning: dropped a datagram of 6 bytes for udp:127.0.0.1:40000: its send "
        .. "queue is over --max-write-buffer (6 bytes queued, cap 10)" }, testing.logs())
    end)

    it("finishes a close once the queue is sent; an abort drops it", function()
      local seen = {}
      local closing = testing.datagram(recorder(seen))
      closing:hold()
      closing:protocol().transport:sendto("queued", "127.0.0.1", 9)
      closing:protocol().transport:close()
      assert.are.same({ true, false }, { closing:closed(), (closing:lost()) })
      closing:send("not read: the socket stops reading at close()")
      closing:error("nor are errors reported")
      assert.are.same({ "connection_made" }, seen)
      closing:release()
      assert.are.same({ "connection_made", "connection_lost nil" }, seen)
      assert.are.same({ true, "queued" }, { (closing:lost()), closing:sent()[1].data })
      local aborting = testing.datagram(recorder({}))
      aborting:hold()
      aborting:protocol().transport:sendto("dropped", "127.0.0.1", 9)
      aborting:protocol().transport:abort()
      aborting:release()
      assert.are.same({ true, {} }, { (aborting:lost()), aborting:sent() })
    end)
  end)

  describe("luaecho.create_datagram_endpoint on the fake host", function()
    it("lets two endpoints talk by address", function()
      local got
      local program = testing.run(function()
        luaecho.create_datagram_endpoint(answering("re:"), { local_host = "127.0.0.1", local_port = 9999 })
        local Client = recorder({}, {
          datagram_received = function(self, data, host, port)
            got = { data, host, port }
            self.transport:close()
          end,
        })
        local t = luaecho.create_datagram_endpoint(Client, { remote_host = "localhost", remote_port = 9999 })
        print(tostring(t), t:get_extra_info("peername"))
        t:sendto("ping")
      end)
      testing.advance()
      assert.are.equal("done", program:status())
      assert.are.same({ "re:ping", "127.0.0.1", 9999 }, got)
      assert.are.same({ "luaecho.datagram_transport (udp 127.0.0.1:40000 -> 127.0.0.1:9999)\t127.0.0.1\t9999" },
        program:printed())
    end)

    it("reaches a testing.datagram endpoint, and hears only its remote once connected", function()
      local echo = testing.datagram("echo.lua", { port = 2223 })
      local heard = {}
      testing.run(function()
        local Client = { datagram_received = function(_, data, host, port)
          heard[#heard + 1] = ("%s from %s %d"):format(data, host, port)
        end }
        local t = luaecho.create_datagram_endpoint(Client, { remote_host = "127.0.0.1", remote_port = 2223 })
        t:sendto("hello")
      end)
      testing.advance()
      assert.are.same({ "echo:hello from 127.0.0.1 2223" }, heard)
      assert.are.same({ { data = "echo:hello", host = "127.0.0.1", port = 40000 } }, echo:sent())
      local client = testing.datagram_at("127.0.0.1", 40000)
      client:send("from elsewhere", "127.0.0.1", 1234)
      client:send("from the echo", "127.0.0.1", 2223)
      assert.are.same({ "echo:hello from 127.0.0.1 2223", "from the echo from 127.0.0.1 2223" }, heard)
      assert.are.same({ { data = "hello", host = "127.0.0.1", port = 2223 } }, client:sent())
    end)

    it("reaches an endpoint bound to the wildcard address, which answers from 127.0.0.1", function()
      local heard
      testing.run(function()
        luaecho.create_datagram_endpoint(answering("re:"), { local_host = "0.0.0.0", local_port = 7000 })
        luaecho.create_datagram_endpoint({ datagram_received = function(_, data, host, port)
          heard = ("%s from %s %d"):format(data, host, port)
        end }, { remote_host = "127.0.0.1", remote_port = 7000 }):sendto("hi")
      end)
      testing.advance()
      assert.are.equal("re:hi from 127.0.0.1 7000", heard)
      assert.are.same({ "0.0.0.0", 7000 }, { testing.datagram_at("127.0.0.1", 7000):address() })
    end)

    it("gives a connected endpoint error_received('connection refused') when nothing is there", function()
      local seen = {}
      testing.run(function()
        local t = luaecho.create_datagram_endpoint(recorder(seen), { remote_host = "127.0.0.1", remote_port = 9 })
        t:sendto("anyone?")
      end)
      testing.advance()
      assert.are.same({ "connection_made", "error_received connection refused" }, seen)
    end)

    it("serves datagrams a streams handler asks for while it serves its connection", function()
      testing.datagram(answering("pong:"), { port = 5353 })
      local conn = testing.connect(function(reader, writer)
        local question = reader:readline()
        local answer
        local Ask = {
          connection_made = function(self, t) self.transport = t end,
          datagram_received = function(self, data)
            answer = data
            self.transport:close()
          end,
        }
        local t = luaecho.create_datagram_endpoint(Ask, { remote_host = "127.0.0.1", remote_port = 5353 })
        t:sendto(question)
        while answer == nil do luaecho.sleep(0.1) end
        writer:write(answer)
      end)
      conn:send("ping\n")
      testing.advance(0.1)
      assert.are.equal("pong:ping\n", conn:output())
    end)

    it("raises what the host raises for addresses it cannot use", function()
      testing.datagram("echo.lua", { port = 9999 })
      local results = {}
      local function try(name, fn, ...)
        local ok, err = pcall(fn, ...)
        results[#results + 1] = name .. ": " .. tostring(ok) .. " " .. tostring(err)
      end
      testing.run(function()
        try("taken", luaecho.create_datagram_endpoint, answering(""), { local_host = "127.0.0.1", local_port = 9999 })
        try("unknown", luaecho.create_datagram_endpoint, answering(""), { local_host = "nowhere.invalid" })
        try("no datagram_received", luaecho.create_datagram_endpoint, {}, { local_host = "127.0.0.1" })
        try("core without datagram_received", require("luaecho.core").datagram_endpoint, {}, "127.0.0.1", 0, nil, nil,
          function() end)
        try("core bad port", require("luaecho.core").datagram_endpoint, answering(""), "127.0.0.1", 70000, nil, nil,
          function() end)
      end)
      testing.advance()
      assert.are.same({
        "taken: false ConnectionError: cannot bind to 127.0.0.1 port 9999: address already in use",
        "unknown: false ConnectionError: cannot resolve nowhere.invalid port 0: unknown node or service",
        "no datagram_received: false luaecho.create_datagram_endpoint(): the Protocol has no datagram_received"
          .. "(data, host, port), so it cannot serve datagrams",
        "core without datagram_received: false luaecho.create_datagram_endpoint(): the Protocol has no "
          .. "datagram_received(data, host, port), so it cannot serve datagrams (a streams handler "
          .. "function(reader, writer) serves only stream listeners)",
        "core bad port: false bad argument #3 to 'datagram_endpoint' (port must be 0 to 65535)",
      }, results)
    end)

    it("closes every endpoint at shutdown, and makes none after", function()
      local seen = {}
      local ep = testing.datagram(recorder(seen))
      local result
      testing.shutdown()
      assert.are.same({ "connection_made", "connection_lost nil" }, seen)
      assert.is_true((ep:lost()))
      testing.run(function()
        result = { pcall(luaecho.create_datagram_endpoint, answering(""), { local_host = "127.0.0.1" }) }
      end)
      testing.advance()
      assert.are.same({ false, "ConnectionError: cannot create a datagram endpoint: operation canceled" },
        { result[1], tostring(result[2]) })
    end)

    it("forgets every endpoint at reset", function()
      testing.datagram("echo.lua", { port = 2223 })
      testing.reset()
      assert.is_nil(testing.datagram_at("127.0.0.1", 2223))
      assert.are.same({ "127.0.0.1", 2223 }, { testing.datagram("echo.lua", { port = 2223 }):address() })
    end)
  end)
end)
