-- luaecho.telnet: the session that puts codec, options and editor
-- together, in both handler styles, driven by a fake client that speaks
-- (or does not speak) telnet, in any chunking.
local testing = require "luaecho.testing"
local telnet = require "luaecho.telnet"
local char = string.char

local IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
local IP, EOF, AYT = 244, 236, 246
local BINARY, ECHO, SGA, TTYPE, NAWS = 0, 1, 3, 24, 31

local function neg(verb, option) return char(IAC, verb, option) end
local function sb(option, payload) return char(IAC, SB, option) .. payload .. char(IAC, SE) end

local FIXTURES = "spec/fixtures/telnet_session/"

-- A Handler that records what it is told; its session in self.session,
-- and the last instance made in Recorder.last.
local function recorder(extra)
  local R = {}
  function R.new()
    local h = setmetatable({ calls = {} }, { __index = R })
    R.last = h
    return h
  end
  function R:connection_made(session)
    self.session = session
    self.calls[#self.calls + 1] = "connection_made"
  end
  function R:line_received(line) self.calls[#self.calls + 1] = "line " .. line end
  function R:key_received(key) self.calls[#self.calls + 1] = "key " .. key end
  function R:window_resized(w, h) self.calls[#self.calls + 1] = ("resized %dx%d"):format(w, h) end
  function R:terminal_type_received(name) self.calls[#self.calls + 1] = "ttype " .. name end
  for k, v in pairs(extra or {}) do R[k] = v end
  return R
end

describe("luaecho.telnet session #unit", function()
  before_each(testing.reset)

  describe("negotiation at start", function()
    it("line mode asks DO NAWS and DO TTYPE, nothing more", function()
      local conn = testing.connect(telnet.protocol(recorder()))
      assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE), conn:output())
    end)

    it("character mode also says WILL ECHO, WILL SGA and asks DO SGA", function()
      local conn = testing.connect(telnet.protocol(recorder(), { mode = "character" }))
      assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE) .. neg(WILL, ECHO) .. neg(WILL, SGA) .. neg(DO, SGA),
        conn:output())
    end)

    it("keys mode too", function()
      local conn = testing.connect(telnet.protocol(recorder(), { mode = "keys" }))
      assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE) .. neg(WILL, ECHO) .. neg(WILL, SGA) .. neg(DO, SGA),
        conn:output())
    end)

    it("binary = true offers BINARY both ways", function()
      local conn = testing.connect(telnet.protocol(recorder(), { binary = true }))
      assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE) .. neg(WILL, BINARY) .. neg(DO, BINARY), conn:output())
    end)

    it("sends it all in one write, before connection_made writes", function()
      local H = recorder({ connection_made = function(self, s)
        self.session = s
        s:prompt("> ")
      end })
      local conn = testing.connect(telnet.protocol(H))
      assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE) .. "> ", conn:output())
    end)

    it("refuses an option it does not support, once", function()
      local conn = testing.connect(telnet.protocol(recorder()))
      conn:output()
      conn:send(neg(WILL, 77) .. neg(DO, 77))
      assert.are.equal(neg(DONT, 77) .. neg(WONT, 77), conn:output())
    end)

    it("line mode refuses to echo", function()
      local conn = testing.connect(telnet.protocol(recorder()))
      conn:output()
      conn:send(neg(DO, ECHO))
      assert.are.equal(neg(WONT, ECHO), conn:output())
    end)
  end)

  describe("NAWS", function()
    it("gives window_resized(width, height) and window_size()", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      assert.is_nil(H.last.session:window_size())
      conn:send(neg(WILL, NAWS) .. sb(NAWS, "\0\80\0\24"))
      assert.are.same({ "connection_made", "resized 80x24" }, H.last.calls)
      assert.are.same({ 80, 24 }, { H.last.session:window_size() })
      conn:send(sb(NAWS, "\1\44\0\50"), 1) -- 300x50, one byte at a time
      assert.are.same({ 300, 50 }, { H.last.session:window_size() })
      assert.are.equal("resized 300x50", H.last.calls[3])
    end)

    it("decodes a dimension of 255, sent doubled", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:send(neg(WILL, NAWS) .. sb(NAWS, "\0\255\255\0\40"))
      assert.are.same({ 255, 40 }, { H.last.session:window_size() })
    end)
  end)

  describe("TTYPE", function()
    it("asks SEND once the client WILL TTYPE, and remembers what IS", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:output()
      conn:send(neg(WILL, TTYPE))
      assert.are.equal(char(IAC, SB, TTYPE, 1, IAC, SE), conn:output())
      assert.is_nil(H.last.session:terminal_type())
      conn:send(sb(TTYPE, "\0XTERM-256COLOR"), 3)
      assert.are.equal("XTERM-256COLOR", H.last.session:terminal_type())
      assert.are.equal("ttype XTERM-256COLOR", H.last.calls[2])
      conn:send(neg(WILL, TTYPE)) -- said again: no second SEND
      assert.are.equal("", conn:output())
    end)

    it("asks nothing of a client that WONT TTYPE", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:output()
      conn:send(neg(WONT, TTYPE))
      assert.are.equal("", conn:output())
      assert.is_nil(H.last.session:terminal_type())
    end)
  end)

  describe("commands", function()
    it("IAC IP interrupts: the line is dropped and the prompt drawn again", function()
      local H = recorder({ connection_made = function(self, s)
        self.session = s
        s:prompt("> ")
      end })
      local conn = testing.connect(telnet.protocol(H, { mode = "character" }))
      conn:send(neg(DO, ECHO) .. neg(DO, SGA) .. neg(WILL, SGA))
      conn:output()
      conn:send("abc" .. char(IAC, IP))
      assert.are.equal("abc\r\n> ", conn:output())
      conn:send("d\r\n")
      assert.are.same({ "line d" }, { H.last.calls[#H.last.calls] })
    end)

    it("Ctrl-C does the same in character mode", function()
      local H = recorder({ connection_made = function(self, s)
        self.session = s
        s:prompt("> ")
      end })
      local conn = testing.connect(telnet.protocol(H, { mode = "character" }))
      conn:send(neg(DO, ECHO))
      conn:output()
      conn:send("abc\3xy\r\n")
      assert.are.equal("abc\r\n> xy\r\n", conn:output())
      assert.are.equal("line xy", H.last.calls[#H.last.calls])
    end)

    it("a Handler's interrupt() replaces the default", function()
      local H = recorder({ interrupt = function(self) self.session:write("stopped\n") end })
      local conn = testing.connect(telnet.protocol(H))
      conn:output()
      conn:send("half a line" .. char(IAC, IP) .. "other\r\n")
      assert.are.equal("stopped\r\n", conn:output())
      assert.are.equal("line other", H.last.calls[#H.last.calls])
    end)

    it("IAC EOF closes by default, or calls eof()", function()
      local conn = testing.connect(telnet.protocol(recorder()))
      conn:send(char(IAC, EOF))
      assert.is_true(conn:closed())
      local H = recorder({ eof = function(self) self.session:write("bye\n") end })
      conn = testing.connect(telnet.protocol(H))
      conn:output()
      conn:send(char(IAC, EOF))
      assert.are.equal("bye\r\n", conn:output())
      assert.is_false(conn:closed())
    end)

    it("answers IAC AYT with [yes]", function()
      local conn = testing.connect(telnet.protocol(recorder()))
      conn:output()
      conn:send(char(IAC, AYT))
      assert.are.equal("[yes]\r\n", conn:output())
    end)

    it("the client's half-close calls eof() too, else closes", function()
      local conn = testing.connect(telnet.protocol(recorder()))
      conn:eof()
      assert.is_true(conn:closed())
    end)
  end)

  describe("data", function()
    it("doubles 0xFF on write and decodes IAC IAC", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:output()
      H.last.session:write("a\255b")
      assert.are.equal("a\255\255b", conn:output())
      conn:send("x\255\255y\r\n", 1)
      assert.are.equal("line x\255y", H.last.calls[2])
    end)

    it("sends \"\\n\" as \"\\r\\n\", keeps \"\\r\\n\", and a lone \"\\r\" as \"\\r\\0\"", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:output()
      H.last.session:write("one\ntwo\r\nthree\rfour")
      assert.are.equal("one\r\ntwo\r\nthree\r\0four", conn:output())
    end)

    it("in BINARY (once the client agrees) sends \"\\n\" untouched, still doubling 0xFF", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H, { binary = true }))
      conn:output()
      conn:send(neg(DO, BINARY) .. neg(WILL, BINARY))
      assert.is_true(H.last.session:option("us", BINARY))
      H.last.session:write("a\nb\255")
      assert.are.equal("a\nb\255\255", conn:output())
    end)

    it("writes plain text as it is: the same string reaches the transport", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:output()
      local text = ("plain text "):rep(100)
      assert.are.equal(text, telnet.to_wire(text, false))
      assert.is_true(rawequal(text, telnet.to_wire(text, false)))
      local nvt = ("a line\r\n"):rep(100)                       -- already NVT: not copied either
      assert.is_true(rawequal(nvt, telnet.to_wire(nvt, false)))
      for input, wire in pairs({ ["\n"] = "\r\n", ["\r"] = "\r\0", ["a\n\r\nb\r"] = "a\r\n\r\nb\r\0",
        ["\r\r\n\n"] = "\r\0\r\n\r\n", ["\255\r\n"] = "\255\255\r\n", ["x\ny"] = "x\r\ny" }) do
        assert.are.equal(wire, telnet.to_wire(input, false), input)
      end
      H.last.session:write(text)
      assert.are.equal(text, conn:output())
    end)

    it("serves a plain client that never speaks telnet (nc)", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:send("hello\r\nworld\n", 1)
      assert.are.same({ "connection_made", "line hello", "line world" }, H.last.calls)
    end)

    it("finds lines however telnet commands split them", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      local bytes = "he" .. neg(WILL, NAWS) .. "l" .. sb(NAWS, "\0\80\0\24") .. "lo\r\n"
      for chunk = 1, 4 do
        conn:send(bytes, chunk)
      end
      local lines = 0
      for _, c in ipairs(H.last.calls) do
        if c == "line hello" then lines = lines + 1 end
      end
      assert.are.equal(4, lines)
    end)

    it("drops a line over max_line, says so and prompts again (policy \"error\")", function()
      local H = recorder({ connection_made = function(self, s)
        self.session = s
        s:prompt("> ")
      end })
      local conn = testing.connect(telnet.protocol(H, { max_line = 8 }))
      conn:output()
      conn:send(("x"):rep(20) .. "\r\nshort\r\n")
      assert.matches("^\r\nline too long %(%d+ bytes dropped%)\r\n> $", conn:output())
      assert.are.equal("line short", H.last.calls[#H.last.calls])
    end)

    it("keys mode hands each key to key_received", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H, { mode = "keys" }))
      conn:send("ab\27[A", 1)
      assert.are.same({ "connection_made", "key a", "key b", "key \27[A" }, H.last.calls)
    end)

    it("echoes in character mode only once the client let us (DO ECHO)", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H, { mode = "character" }))
      conn:output()
      conn:send("ab")
      assert.are.equal("", conn:output())
      conn:send(neg(DO, ECHO) .. "c\127")
      assert.are.equal("c\b \b", conn:output())
    end)

    it("set_mode switches to character mode and back", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      conn:output()
      H.last.session:set_mode("character")
      assert.are.equal("character", H.last.session:mode())
      assert.are.equal(neg(WILL, ECHO) .. neg(WILL, SGA) .. neg(DO, SGA), conn:output())
      conn:send(neg(DO, ECHO) .. neg(DO, SGA) .. neg(WILL, SGA))
      H.last.session:set_mode("line")
      assert.are.equal(neg(WONT, ECHO) .. neg(WONT, SGA) .. neg(DONT, SGA), conn:output())
      conn:send(neg(DONT, ECHO) .. neg(DONT, SGA) .. neg(WONT, SGA))
      conn:send(neg(DO, ECHO))   -- asked again in line mode: it ends off
      assert.is_false(H.last.session:option("us", ECHO))
      conn:send("typed\r\n")
      assert.are.equal("line typed", H.last.calls[#H.last.calls])
    end)
  end)

  describe("flow control", function()
    it("passes pause_writing/resume_writing to the Handler and counts what waits", function()
      local H = recorder({
        pause_writing = function(self) self.calls[#self.calls + 1] = "pause" end,
        resume_writing = function(self) self.calls[#self.calls + 1] = "resume" end,
      })
      local conn = testing.connect(telnet.protocol(H), { hold_output = true })
      local s = H.last.session
      s:write(("x"):rep(70000))
      assert.is_true(s:is_writing_paused())
      assert.is_true(s:get_write_buffer_size() >= 70000)
      assert.are.equal("pause", H.last.calls[#H.last.calls])
      conn:release_output()
      assert.is_false(s:is_writing_paused())
      assert.are.equal("resume", H.last.calls[#H.last.calls])
      assert.are.equal(0, s:get_write_buffer_size())
    end)

    it("write() on a closed session writes nothing and says so", function()
      local H = recorder()
      local conn = testing.connect(telnet.protocol(H))
      local s = H.last.session
      s:close()
      assert.is_false(s:write("late"))
      assert.is_true(conn:closed())
    end)
  end)

  describe("hot swap", function()
    it("a Handler with upgrade() takes over open connections; without it, there is no upgrade", function()
      local Old = recorder()
      local conn = testing.connect(telnet.protocol(Old))
      local New = {}
      function New.upgrade(handler) setmetatable(handler, { __index = New }) end
      function New:line_received(line) self.session:write("new:" .. line .. "\n") end
      local P2 = telnet.protocol(New)
      P2.upgrade(conn:protocol())
      conn:output()
      conn:send("x\r\n")
      assert.are.equal("new:x\r\n", conn:output())
      assert.is_nil(telnet.protocol(recorder()).upgrade)
    end)
  end)

  describe("fixtures", function()
    it("serves a handler script that returns telnet.protocol", function()
      local conn = testing.connect(FIXTURES .. "upper.lua")
      assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE), conn:output())
      conn:send("shout\r\n")
      assert.are.equal("SHOUT\r\n", conn:output())
    end)
  end)

  describe("telnet.wrap in a streams handler", function()
    it("reads lines, however the bytes and commands arrive", function()
      local conn = testing.connect(FIXTURES .. "wrapped.lua")
      assert.are.equal(neg(DO, NAWS) .. neg(DO, TTYPE) .. "name? ", conn:output())
      conn:send(neg(WILL, NAWS) .. sb(NAWS, "\0\100\0\30") .. "Ann\r\n", 1)
      assert.are.equal("hello Ann, your window is 100x30\r\nname? ", conn:output())
      conn:send("nc style\n")
      assert.are.equal("hello nc style, your window is 100x30\r\nname? ", conn:output())
      conn:send("\r\n")
      assert.are.equal("hello , your window is 100x30\r\nname? ", conn:output())
      conn:eof()
      assert.are.equal("bye\r\n", conn:output())
      assert.is_true(conn:closed())
    end)

    it("ends readline at IAC EOF, and redraws the prompt after IAC IP", function()
      local conn = testing.connect(FIXTURES .. "wrapped.lua")
      conn:output()
      conn:send("An" .. char(IAC, IP))
      assert.are.equal("\r\nname? ", conn:output())
      conn:send("Bob\r\n" .. char(IAC, EOF))
      assert.are.equal("hello Bob, your window is ?x?\r\nname? bye\r\n", conn:output())
      assert.is_true(conn:closed())
    end)

    it("answers the terminal type", function()
      local conn = testing.connect(FIXTURES .. "wrapped.lua")
      conn:send(neg(WILL, TTYPE))
      conn:output()
      conn:send(sb(TTYPE, "\0VT100") .. "/ttype\r\n")
      assert.are.equal("VT100\r\nname? ", conn:output())
    end)
  end)
end)
