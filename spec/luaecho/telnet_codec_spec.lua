-- luacheck: std +busted
local codec = require("luaecho.telnet.codec")
local char, rep = string.char, string.rep

local IAC, SB, SE = codec.IAC, codec.SB, codec.SE

local function read_fixture(name)
  local f = assert(io.open("spec/fixtures/telnet/" .. name, "rb"))
  local bytes = f:read("a")
  f:close()
  return bytes
end

-- Events of feeding 'pieces' in turn to one parser, adjacent data events
-- merged (a split point may cut data in two). Checks no data event is empty.
local function events_of(pieces, opts)
  local p = codec.new(opts)
  local all = {}
  for _, piece in ipairs(pieces) do
    for _, ev in ipairs(p:feed(piece)) do
      if ev.kind == "data" then
        assert(ev.data ~= "", "an empty data event")
        local last = all[#all]
        if last and last.kind == "data" then
          last.data = last.data .. ev.data
        else
          all[#all + 1] = { kind = "data", data = ev.data }
        end
      else
        all[#all + 1] = ev
      end
    end
  end
  return all, p
end

local function bytes_of(s)
  local pieces = {}
  for i = 1, #s do pieces[i] = s:sub(i, i) end
  return pieces
end

local function data(s) return { kind = "data", data = s } end
local function negotiate(verb, option) return { kind = "negotiate", verb = verb, option = option } end
local function sub(option, s) return { kind = "subnegotiation", option = option, data = s } end
local function command(c) return { kind = "command", command = c } end

-- The recording (see spec/fixtures/telnet/README.md) and what it means.
local SESSION = read_fixture("inetutils_session.bin")
local SESSION_EVENTS = {
  negotiate(codec.WILL, codec.NAWS),
  sub(codec.NAWS, "\0\80\0\24"),
  negotiate(codec.WILL, codec.TTYPE),
  sub(codec.TTYPE, "\0XTERM-256COLOR"),
  data("hi\r\n"),
  negotiate(codec.DO, codec.ECHO),
  negotiate(codec.DO, codec.SGA),
  negotiate(codec.WILL, codec.SGA),
  data("ok\r\0\255x"),
  sub(codec.NAWS, "\0\100\0\30"),
  command(codec.IP),
  data("z"),
}

describe("luaecho.telnet.codec #unit", function()
  describe("constants", function()
    it("are the contract's numbers", function()
      assert.are.same({ 255, 254, 253, 252, 251, 250, 249, 248, 247, 246, 245, 244, 243, 242, 241, 240, 239, 238,
        237, 236 }, { codec.IAC, codec.DONT, codec.DO, codec.WONT, codec.WILL, codec.SB, codec.GA, codec.EL,
        codec.EC, codec.AYT, codec.AO, codec.IP, codec.BRK, codec.DM, codec.NOP, codec.SE, codec.EOR, codec.ABORT,
        codec.SUSP, codec.EOF })
      assert.are.same({ 0, 1, 3, 5, 6, 24, 31, 32, 33, 34, 35, 36, 39 }, { codec.BINARY, codec.ECHO, codec.SGA,
        codec.STATUS, codec.TIMING_MARK, codec.TTYPE, codec.NAWS, codec.TSPEED, codec.LFLOW, codec.LINEMODE,
        codec.XDISPLOC, codec.ENVIRON, codec.NEW_ENVIRON })
    end)
  end)

  describe("a recorded inetutils-telnet session", function()
    it("is 67 bytes as recorded", function()
      assert.are.equal(67, #SESSION)
    end)

    it("reads in one piece as the offers, NAWS, TTYPE IS, lines, an escaped 0xFF and IAC IP it holds", function()
      local p = codec.new()
      assert.are.same(SESSION_EVENTS, p:feed(SESSION))
      assert.are.equal(0, p.dropped)
    end)

    it("reads the same in two pieces split at every point", function()
      for i = 0, #SESSION do
        local got = events_of({ SESSION:sub(1, i), SESSION:sub(i + 1) })
        assert.are.same(SESSION_EVENTS, got, "split at " .. i)
      end
    end)

    it("reads the same in three pieces split at every pair of points", function()
      for i = 0, #SESSION do
        for j = i, #SESSION do
          local got = events_of({ SESSION:sub(1, i), SESSION:sub(i + 1, j), SESSION:sub(j + 1) })
          assert.are.same(SESSION_EVENTS, got, "split at " .. i .. " and " .. j)
        end
      end
    end)

    it("reads the same byte by byte", function()
      assert.are.same(SESSION_EVENTS, events_of(bytes_of(SESSION)))
    end)

    it("reads the same repeated 100 times in chunks of every size from 1 to 16", function()
      local long = rep(SESSION, 100)
      local want = {}
      for _ = 1, 100 do
        for _, ev in ipairs(SESSION_EVENTS) do want[#want + 1] = ev end
      end
      -- "z" of one copy and nothing between it and the next IAC WILL: no merge across.
      for size = 1, 16 do
        local pieces = {}
        for i = 1, #long, size do pieces[#pieces + 1] = long:sub(i, i + size - 1) end
        assert.are.same(want, events_of(pieces), "chunks of " .. size)
      end
    end)
  end)

  describe("data", function()
    it("without IAC comes back as one event of the same string", function()
      local p = codec.new()
      local text = "hello\r\n\0\r\0" .. char(254, 250, 240) .. rep("x", 10000)
      assert.are.same({ data(text) }, p:feed(text))
    end)

    it("without IAC costs one string.find and no per-byte call", function()
      local real_find, real_byte, real_sub = string.find, string.byte, string.sub
      local calls = { find = 0, byte = 0, sub = 0 }
      package.loaded["luaecho.telnet.codec"] = nil
      string.find = function(...) calls.find = calls.find + 1; return real_find(...) end -- luacheck: ignore 122
      string.byte = function(...) calls.byte = calls.byte + 1; return real_byte(...) end -- luacheck: ignore 122
      string.sub = function(...) calls.sub = calls.sub + 1; return real_sub(...) end -- luacheck: ignore 122
      local ok, fresh = pcall(require, "luaecho.telnet.codec")
      string.find, string.byte, string.sub = real_find, real_byte, real_sub -- luacheck: ignore 122
      package.loaded["luaecho.telnet.codec"] = codec
      assert(ok, fresh)
      local p = fresh.new()
      calls.find, calls.byte, calls.sub = 0, 0, 0
      local events = p:feed(rep("plain text\r\n", 1000))
      assert.are.equal(1, #events)
      assert.are.same({ find = 1, byte = 0, sub = 0 }, calls)
    end)

    it("of an empty feed is no event", function()
      local p = codec.new()
      assert.are.same({}, p:feed(""))
      p:feed("\255")
      assert.are.same({}, p:feed(""))
      assert.are.same({ data("\255") }, p:feed("\255"))
    end)

    it("keeps line ends untouched", function()
      assert.are.same({ data("a\r\nb\r\0c\rd\n") }, codec.new():feed("a\r\nb\r\0c\rd\n"))
    end)

    it("around IAC IAC is one event with a 0xFF byte", function()
      assert.are.same({ data("a\255b\255\255c") }, codec.new():feed("a\255\255b\255\255\255\255c"))
    end)

    it("is merged across an ignored IAC SE but not across a command", function()
      assert.are.same({ data("ab"), command(codec.NOP), data("c") }, codec.new():feed("a\255\240b\255\241c"))
    end)
  end)

  describe("commands", function()
    it("are every 2-byte command from EOF to GA but SE", function()
      for c = codec.EOF, codec.GA do
        if c ~= SE then
          assert.are.same({ data("a"), command(c), data("b") }, codec.new():feed("a" .. char(IAC, c) .. "b"))
        end
      end
    end)

    it("include IAC followed by an unknown byte", function()
      assert.are.same({ command(0), command(65), command(200), data("x") },
        codec.new():feed("\255\0\255A\255\200x"))
    end)

    it("wait for the byte after a lone trailing IAC", function()
      local p = codec.new()
      assert.are.same({ data("abc") }, p:feed("abc\255"))
      assert.are.same({ command(codec.AYT) }, p:feed(char(codec.AYT)))
      assert.are.same({ data("d") }, p:feed("d"))
    end)

    it("wait for the option after IAC WILL", function()
      local p = codec.new()
      assert.are.same({}, p:feed("\255"))
      assert.are.same({}, p:feed(char(codec.WILL)))
      assert.are.same({ negotiate(codec.WILL, 200), data("x") }, p:feed("\200x"))
    end)

    it("read each verb with any option byte, 255 included", function()
      for verb = codec.WILL, codec.DONT do
        for _, option in ipairs({ 0, 31, 240, 255 }) do
          assert.are.same({ negotiate(verb, option) }, codec.new():feed(char(IAC, verb, option)))
        end
      end
    end)

    it("ignore IAC SE outside a subnegotiation", function()
      assert.are.same({}, codec.new():feed("\255\240"))
      assert.are.same({ negotiate(codec.DO, 1) }, codec.new():feed("\255\240\255\253\1\255\240"))
    end)
  end)

  describe("subnegotiations", function()
    it("are unescaped", function()
      assert.are.same({ sub(codec.NAWS, "\0\255\0\24") }, codec.new():feed("\255\250\31\0\255\255\0\24\255\240"))
    end)

    it("may be empty", function()
      assert.are.same({ sub(codec.TTYPE, "") }, codec.new():feed("\255\250\24\255\240"))
    end)

    it("of exactly the bound are kept, a byte over it dropped and counted, and the data after survives", function()
      local exact = char(IAC, SB, 36) .. rep("e", 1024) .. char(IAC, SE)
      local over = char(IAC, SB, 36) .. rep("\255\255", 1025) .. char(IAC, SE)
      local input = "a" .. exact .. "b" .. over .. "c\255\244d"
      local want = { data("a"), sub(36, rep("e", 1024)), data("bc"), command(codec.IP), data("d") }
      local events, p = events_of({ input })
      assert.are.same(want, events)
      assert.are.equal(1, p.dropped)
      for _, size in ipairs({ 1, 2, 3, 7, 100, 1023, 1024, 1025 }) do
        local pieces = {}
        for i = 1, #input, size do pieces[#pieces + 1] = input:sub(i, i + size - 1) end
        events, p = events_of(pieces)
        assert.are.same(want, events, "chunks of " .. size)
        assert.are.equal(1, p.dropped, "chunks of " .. size)
      end
    end)

    it("are bounded by max_subnegotiation", function()
      local events, p = events_of({ "\255\250\31\0\80\0\24\255\240\255\250\31\0\80\0\24\0\255\240" },
        { max_subnegotiation = 4 })
      assert.are.same({ sub(31, "\0\80\0\24") }, events)
      assert.are.equal(1, p.dropped)
    end)

    it("without IAC SE accumulate up to the bound, then are dropped and counted once", function()
      local p = codec.new()
      assert.are.same({}, p:feed("\255\250\24"))
      for _ = 1, 100 do assert.are.same({}, p:feed(rep("x", 1000))) end
      assert.are.equal(1, p.dropped)
      assert.are.same({ data("after") }, p:feed("\255\240after"))
      assert.are.equal(1, p.dropped)
    end)

    it("cut by another IAC command are delivered as read, then the command", function()
      assert.are.same({ sub(31, "\0\80"), negotiate(codec.WILL, 1), data("x") },
        codec.new():feed("\255\250\31\0\80\255\251\1x"))
      assert.are.same({ sub(31, "ab"), sub(24, "\0vt100") },
        codec.new():feed("\255\250\31ab\255\250\24\0vt100\255\240"))
      assert.are.same({ sub(31, ""), command(codec.IP) }, codec.new():feed("\255\250\31\255\244"))
    end)

    it("cut by IAC and any byte but IAC or SE read that as they would be read outside", function()
      for b = 0, 254 do
        if b ~= SE then
          local outside = codec.new():feed(char(IAC, b, 31) .. "x")
          local want = { sub(24, "ab") }
          for _, ev in ipairs(outside) do want[#want + 1] = ev end
          assert.are.same(want, codec.new():feed("\255\250\24ab" .. char(IAC, b, 31) .. "x"), "byte " .. b)
        end
      end
    end)

    it("keep a trailing IAC inside them waiting", function()
      local p = codec.new()
      assert.are.same({}, p:feed("\255\250\24\0ab\255"))
      assert.are.same({}, p:feed("\255"))
      assert.are.same({}, p:feed("c\255"))
      assert.are.same({ sub(24, "\0ab\255c"), data("z") }, p:feed("\240z"))
    end)
  end)

  describe("on garbage", function()
    it("never raises and reads the same at any split, on 2,000 random inputs", function()
      math.randomseed(17)
      local alphabet = { 0, 1, 13, 10, 24, 31, 65, 236, 240, 241, 244, 250, 251, 252, 253, 254, 255, 255, 255 }
      for round = 1, 2000 do
        local t = {}
        for i = 1, math.random(0, 60) do t[i] = char(alphabet[math.random(#alphabet)]) end
        local input = table.concat(t)
        local opts = { max_subnegotiation = math.random(0, 8) }
        local whole, p1 = events_of({ input }, opts)
        local i = math.random(0, #input)
        local split, p2 = events_of({ input:sub(1, i), input:sub(i + 1) }, opts)
        local bytewise, p3 = events_of(bytes_of(input), opts)
        assert.are.same(whole, split, "round " .. round)
        assert.are.same(whole, bytewise, "round " .. round)
        assert.are.same({ p1.dropped, p1.dropped }, { p2.dropped, p3.dropped }, "round " .. round)
      end
    end)

    it("never raises on every byte after IAC, IAC SB and IAC SB x IAC", function()
      for _, prefix in ipairs({ "\255", "\255\250", "\255\250\31", "\255\250\31\255", "\255\251" }) do
        for b = 0, 255 do
          local p = codec.new()
          assert.is_table(p:feed(prefix .. char(b)))
          assert.is_table(p:feed(prefix .. char(b) .. "\255\240tail\255"))
        end
      end
    end)
  end)

  describe("building what we send", function()
    it("escapes 0xFF, and the parser reads every byte back", function()
      local all = {}
      for b = 0, 255 do all[#all + 1] = char(b) end
      local text = table.concat(all) .. "\255\255\255"
      local escaped = codec.escape(text)
      assert.are.equal(#text + 4, #escaped)
      assert.are.same({ data(text) }, codec.new():feed(escaped))
      assert.are.same({ data(text) }, events_of(bytes_of(escaped)))
    end)

    it("returns text without 0xFF as it is", function()
      assert.are.equal("plain\r\n", codec.escape("plain\r\n"))
      assert.are.equal("", codec.escape(""))
    end)

    it("round-trips random text through escape and any split", function()
      math.randomseed(1143)
      for _ = 1, 500 do
        local t = {}
        for i = 1, math.random(1, 40) do t[i] = char(math.random(0, 1) == 0 and 255 or math.random(0, 255)) end
        local text = table.concat(t)
        local escaped = codec.escape(text)
        local i = math.random(0, #escaped)
        assert.are.same({ data(text) }, events_of({ escaped:sub(1, i), escaped:sub(i + 1) }))
      end
    end)

    it("makes commands, negotiations and subnegotiations the parser reads back", function()
      assert.are.equal("\255\244", codec.command(codec.IP))
      assert.are.equal("\255\253\31", codec.negotiation(codec.DO, codec.NAWS))
      assert.are.equal("\255\250\31\0\255\255\0\24\255\240", codec.subnegotiation(codec.NAWS, "\0\255\0\24"))
      assert.are.equal("\255\250\24\1\255\240", codec.ttype_send())
      local wire = codec.command(codec.IP) .. codec.negotiation(codec.DO, codec.NAWS)
        .. codec.subnegotiation(codec.NAWS, "\0\255\0\24") .. codec.ttype_send()
      assert.are.same({ command(codec.IP), negotiate(codec.DO, codec.NAWS), sub(codec.NAWS, "\0\255\0\24"),
        sub(codec.TTYPE, "\1") }, codec.new():feed(wire))
    end)
  end)

  describe("decoding payloads", function()
    it("reads NAWS as width and height, big-endian", function()
      assert.are.same({ 80, 24 }, { codec.naws("\0\80\0\24") })
      assert.are.same({ 65535, 256 }, { codec.naws("\255\255\1\0") })
      assert.is_nil(codec.naws("\0\80\0"))
      assert.is_nil(codec.naws("\0\80\0\24\0"))
      assert.is_nil(codec.naws(nil))
    end)

    it("reads TERMINAL-TYPE IS as the name", function()
      assert.are.equal("XTERM-256COLOR", codec.ttype("\0XTERM-256COLOR"))
      assert.is_nil(codec.ttype("\1"))          -- SEND
      assert.is_nil(codec.ttype("\0"))
      assert.is_nil(codec.ttype("\1vt100"))
      assert.is_nil(codec.ttype(""))
    end)

    it("names options for messages", function()
      assert.are.same({ "NAWS", "TTYPE", "ECHO", "BINARY", "option 77" },
        { codec.name(31), codec.name(24), codec.name(1), codec.name(0), codec.name(77) })
    end)
  end)

  describe("new", function()
    it("refuses a max_subnegotiation that is not a non-negative integer", function()
      assert.has_error(function() codec.new({ max_subnegotiation = -1 }) end)
      assert.has_error(function() codec.new({ max_subnegotiation = 1.5 }) end)
      assert.has_error(function() codec.new({ max_subnegotiation = "1024" }) end)
    end)

    it("refuses to feed what is not a string", function()
      assert.has_error(function() codec.new():feed(nil) end)
    end)
  end)
end)
