-- luacheck: std +busted
local codec = require("luaecho.telnet.codec")
local options = require("luaecho.telnet.options")

local WILL, WONT, DO, DONT = codec.WILL, codec.WONT, codec.DO, codec.DONT
local ECHO, SGA, NAWS, TTYPE, BINARY = codec.ECHO, codec.SGA, codec.NAWS, codec.TTYPE, codec.BINARY
local UNSUPPORTED = 77

-- A Q method as a session sets it up, with what it sends and reports logged
-- in order: { "send", verb, option } and { "changed", side, option, enabled }.
local function make(opts)
  local log = {}
  local parser = codec.new()
  opts = opts or {}
  local q = options.new({
    us = opts.us or { [ECHO] = true, [SGA] = true, [BINARY] = true },
    him = opts.him or { [NAWS] = true, [TTYPE] = true, [BINARY] = true, [SGA] = true },
    send = function(bytes)
      for _, ev in ipairs(parser:feed(bytes)) do
        assert.are.equal("negotiate", ev.kind)
        log[#log + 1] = { "send", ev.verb, ev.option }
      end
    end,
    changed = function(side, option, enabled) log[#log + 1] = { "changed", side, option, enabled } end,
  })
  return q, log
end

local function clear(log)
  for i = #log, 1, -1 do log[i] = nil end
end

local function sent(log)
  local n = 0
  for _, entry in ipairs(log) do
    if entry[1] == "send" then n = n + 1 end
  end
  return n
end

describe("luaecho.telnet.options #unit", function()
  describe("a peer's request for an option we support", function()
    it("DO ECHO is answered WILL ECHO once and reported on", function()
      local q, log = make()
      q:received(DO, ECHO)
      assert.are.same({ { "send", WILL, ECHO }, { "changed", "us", ECHO, true } }, log)
      assert.is_true(q:enabled("us", ECHO))
      assert.is_false(q:enabled("him", ECHO))
      clear(log)
      q:received(DO, ECHO)
      q:received(DO, ECHO)
      assert.are.same({}, log)
    end)

    it("WILL NAWS is answered DO NAWS, and WONT NAWS then DONT NAWS", function()
      local q, log = make()
      q:received(WILL, NAWS)
      q:received(WONT, NAWS)
      assert.are.same({ { "send", DO, NAWS }, { "changed", "him", NAWS, true },
        { "send", DONT, NAWS }, { "changed", "him", NAWS, false } }, log)
      assert.is_false(q:enabled("him", NAWS))
    end)

    it("sends the reply before telling the caller, so what the callback sends comes after", function()
      local q
      local out = {}
      q = options.new({ him = { [TTYPE] = true },
        send = function(bytes) out[#out + 1] = bytes end,
        changed = function(side, option, enabled)
          if side == "him" and option == TTYPE and enabled then out[#out + 1] = codec.ttype_send() end
        end })
      q:received(WILL, TTYPE)
      assert.are.same({ codec.negotiation(DO, TTYPE), codec.ttype_send() }, out)
    end)

    it("WONT or DONT for an option that is off is not answered", function()
      local q, log = make()
      q:received(WONT, NAWS)
      q:received(DONT, ECHO)
      q:received(WONT, UNSUPPORTED)
      assert.are.same({}, log)
      assert.are.equal(0, q.refused)
    end)

    it("uses the caller's sets per side: SGA we accept both ways, ECHO only for us", function()
      local q, log = make()
      q:received(WILL, SGA)
      q:received(DO, SGA)
      q:received(WILL, ECHO)
      assert.are.same({ { "send", DO, SGA }, { "changed", "him", SGA, true },
        { "send", WILL, SGA }, { "changed", "us", SGA, true }, { "send", DONT, ECHO } }, log)
      assert.are.equal(1, q.refused)
    end)

    it("copies the caller's sets", function()
      local us = { [ECHO] = true }
      local q, log = make({ us = us })
      us[ECHO], us[SGA] = nil, true
      q:received(DO, ECHO)
      q:received(DO, SGA)
      assert.are.same({ { "send", WILL, ECHO }, { "changed", "us", ECHO, true }, { "send", WONT, SGA } }, log)
    end)
  end)

  describe("options we do not support", function()
    it("a peer sending WILL X / WONT X 10,000 times each gets exactly one DONT", function()
      local q, log = make()
      for _ = 1, 10000 do
        q:received(WILL, UNSUPPORTED)
        q:received(WONT, UNSUPPORTED)
      end
      assert.are.same({ { "send", DONT, UNSUPPORTED } }, log)
      assert.are.equal(1, q.refused)
      assert.are.equal(9999, q.ignored)
      assert.is_false(q:enabled("him", UNSUPPORTED))
    end)

    it("a peer sending DO X / DONT X 10,000 times each gets exactly one WONT", function()
      local q, log = make()
      for _ = 1, 10000 do
        q:received(DO, UNSUPPORTED)
        q:received(DONT, UNSUPPORTED)
      end
      assert.are.same({ { "send", WONT, UNSUPPORTED } }, log)
      assert.are.equal(1, q.refused)
    end)

    it("are refused once per side and option", function()
      local q, log = make()
      for _ = 1, 3 do
        q:received(WILL, UNSUPPORTED)
        q:received(DO, UNSUPPORTED)
        q:received(WILL, 78)
        q:received(DO, ECHO + 100)
        q:received(WILL, ECHO)        -- ECHO: we perform it, he does not
      end
      assert.are.same({ { "send", DONT, UNSUPPORTED }, { "send", WONT, UNSUPPORTED }, { "send", DONT, 78 },
        { "send", WONT, ECHO + 100 }, { "send", DONT, ECHO } }, log)
      assert.are.equal(5, q.refused)
      assert.are.equal(10, q.ignored)
    end)

    it("are refused for all 256 options a peer offers, once each", function()
      local q, log = make({ us = {}, him = {} })
      for _ = 1, 2 do
        for option = 0, 255 do
          q:received(WILL, option)
          q:received(DO, option)
        end
      end
      assert.are.equal(512, sent(log))
      assert.are.equal(512, q.refused)
    end)

    it("can be asked for by us, which accepts them from then on", function()
      local q, log = make()
      q:received(WILL, UNSUPPORTED)
      q:enable("him", UNSUPPORTED)
      q:received(WILL, UNSUPPORTED)
      assert.are.same({ { "send", DONT, UNSUPPORTED }, { "send", DO, UNSUPPORTED },
        { "changed", "him", UNSUPPORTED, true } }, log)
      clear(log)
      q:received(WONT, UNSUPPORTED)
      q:received(WILL, UNSUPPORTED)
      assert.are.same({ { "send", DONT, UNSUPPORTED }, { "changed", "him", UNSUPPORTED, false },
        { "send", DO, UNSUPPORTED }, { "changed", "him", UNSUPPORTED, true } }, log)
    end)
  end)

  describe("a hostile peer flipping a supported option", function()
    it("gets at most one reply per command, and none to repeats", function()
      local q, log = make()
      local commands = 0
      for i = 1, 10000 do
        q:received(i % 2 == 1 and WILL or WONT, NAWS)
        q:received(i % 2 == 1 and DO or DONT, ECHO)
        q:received(WILL, SGA)                 -- a repeat once on: ignored
        commands = commands + 3
      end
      assert.is_true(sent(log) <= commands)
      assert.are.equal(20001, sent(log))      -- DO/DONT NAWS, WILL/WONT ECHO each time, DO SGA once
      assert.are.equal(0, q.refused)
    end)

    it("cannot make two Q methods loop, and they agree once quiet", function()
      math.randomseed(1143)
      local opts = { us = { [ECHO] = true, [SGA] = true, [NAWS] = true },
        him = { [ECHO] = true, [SGA] = true, [NAWS] = true } }
      local wire = { a = {}, b = {} }          -- bytes in flight to a and to b, in order
      local function sender(to) return function(bytes) table.insert(wire[to], bytes) end end
      local parsers = { a = codec.new(), b = codec.new() }
      local q = {
        a = options.new({ us = opts.us, him = opts.him, send = sender("b") }),
        b = options.new({ us = opts.us, him = opts.him, send = sender("a") }),
      }
      local function deliver(to)
        local bytes = table.remove(wire[to], 1)
        for _, ev in ipairs(parsers[to]:feed(bytes)) do q[to]:received(ev.verb, ev.option) end
      end
      local names, sides, list = { "a", "b" }, { "us", "him" }, { ECHO, SGA, NAWS }
      local delivered = 0
      for _ = 1, 200 do
        for _ = 1, math.random(1, 4) do     -- users asking, while replies are in flight
          local who, side, option = names[math.random(2)], sides[math.random(2)], list[math.random(3)]
          if math.random(2) == 1 then q[who]:enable(side, option) else q[who]:disable(side, option) end
        end
        for _ = 1, math.random(0, 3) do
          local to = names[math.random(2)]
          if #wire[to] > 0 then deliver(to); delivered = delivered + 1 end
        end
        while #wire.a + #wire.b > 0 do
          assert.is_true(delivered < 100000, "negotiation loops")
          deliver(#wire.a > 0 and "a" or "b")
          delivered = delivered + 1
        end
        for _, option in ipairs(list) do
          local a_us, a_q = q.a:state_of("us", option)
          local b_him, b_q = q.b:state_of("him", option)
          assert.is_true((a_us == options.YES or a_us == options.NO) and not a_q)
          assert.are.equal(a_us, b_him)
          assert.is_false(b_q)
          assert.are.equal(q.a:enabled("him", option), q.b:enabled("us", option))
        end
      end
    end)
  end)

  describe("asking (RFC 1143 examples)", function()
    it("enable sends DO once; a WILL settles it on", function()
      local q, log = make()
      q:enable("him", NAWS)
      q:enable("him", NAWS)
      assert.are.same({ { "send", DO, NAWS } }, log)
      assert.are.same({ options.WANTYES, false }, { q:state_of("him", NAWS) })
      assert.is_false(q:enabled("him", NAWS))
      q:received(WILL, NAWS)
      assert.are.same({ { "send", DO, NAWS }, { "changed", "him", NAWS, true } }, log)
      q:enable("him", NAWS)
      assert.are.equal(1, sent(log))
    end)

    it("a refused request settles off, without a reply", function()
      local q, log = make()
      q:enable("us", ECHO)
      q:received(DONT, ECHO)
      assert.are.same({ { "send", WILL, ECHO }, { "changed", "us", ECHO, false } }, log)
      assert.are.same({ options.NO, false }, { q:state_of("us", ECHO) })
    end)

    it("enable while WANTNO is queued, and sent when the WONT comes", function()
      local q, log = make()
      q:received(WILL, NAWS)                -- YES
      clear(log)
      q:disable("him", NAWS)                -- WANTNO, DONT sent
      q:enable("him", NAWS)                 -- queued: nothing sent
      q:enable("him", NAWS)                 -- already queued
      assert.are.same({ { "send", DONT, NAWS } }, log)
      assert.are.same({ options.WANTNO, true }, { q:state_of("him", NAWS) })
      q:received(WONT, NAWS)                -- his answer: WANTYES, DO sent
      assert.are.same({ { "send", DONT, NAWS }, { "send", DO, NAWS } }, log)
      assert.are.same({ options.WANTYES, false }, { q:state_of("him", NAWS) })
      q:received(WILL, NAWS)
      assert.are.same({ { "send", DONT, NAWS }, { "send", DO, NAWS }, { "changed", "him", NAWS, true } }, log)
      assert.is_true(q:enabled("him", NAWS))
    end)

    it("a WILL answering our DONT with enable queued settles on (the RFC's error case)", function()
      local q, log = make()
      q:received(DO, ECHO)
      clear(log)
      q:disable("us", ECHO)
      q:enable("us", ECHO)
      q:received(DO, ECHO)
      assert.are.same({ { "send", WONT, ECHO }, { "changed", "us", ECHO, true } }, log)
      assert.are.same({ options.YES, false }, { q:state_of("us", ECHO) })
    end)

    it("a WILL answering our DONT with nothing queued settles off (the RFC's error case)", function()
      local q, log = make()
      q:received(WILL, SGA)
      clear(log)
      q:disable("him", SGA)
      q:received(WILL, SGA)
      assert.are.same({ { "send", DONT, SGA }, { "changed", "him", SGA, false } }, log)
    end)

    it("enable then disable queued behind the WANTYES, and the DONT sent on the WILL", function()
      local q, log = make()
      q:enable("him", TTYPE)
      q:disable("him", TTYPE)
      assert.are.same({ options.WANTYES, true }, { q:state_of("him", TTYPE) })
      q:received(WILL, TTYPE)
      assert.are.same({ { "send", DO, TTYPE }, { "send", DONT, TTYPE } }, log)
      assert.are.same({ options.WANTNO, false }, { q:state_of("him", TTYPE) })
      q:received(WONT, TTYPE)
      assert.are.same({ { "send", DO, TTYPE }, { "send", DONT, TTYPE }, { "changed", "him", TTYPE, false } }, log)
    end)

    it("a WONT answering our DO with disable queued settles off at once", function()
      local q, log = make()
      q:enable("him", TTYPE)
      q:disable("him", TTYPE)
      q:received(WONT, TTYPE)
      assert.are.same({ { "send", DO, TTYPE }, { "changed", "him", TTYPE, false } }, log)
      assert.are.same({ options.NO, false }, { q:state_of("him", TTYPE) })
    end)

    it("enable, disable, enable again cancels the queued disable", function()
      local q, log = make()
      q:enable("us", SGA)
      q:disable("us", SGA)
      q:enable("us", SGA)
      q:received(DO, SGA)
      assert.are.same({ { "send", WILL, SGA }, { "changed", "us", SGA, true } }, log)
    end)

    it("disable, enable, disable again cancels the queued enable", function()
      local q, log = make()
      q:received(DO, SGA)
      clear(log)
      q:disable("us", SGA)
      q:enable("us", SGA)
      q:disable("us", SGA)
      q:received(DONT, SGA)
      assert.are.same({ { "send", WONT, SGA }, { "changed", "us", SGA, false } }, log)
    end)

    it("disable of an option that is off, or being turned off, sends nothing", function()
      local q, log = make()
      q:disable("him", NAWS)
      q:received(WILL, NAWS)
      q:disable("him", NAWS)
      q:disable("him", NAWS)
      assert.are.same({ { "send", DO, NAWS }, { "changed", "him", NAWS, true }, { "send", DONT, NAWS } }, log)
    end)
  end)

  describe("arguments", function()
    it("are checked", function()
      local q = make()
      assert.has_error(function() q:enable("them", ECHO) end)
      assert.has_error(function() q:enable("us", 256) end)
      assert.has_error(function() q:disable("us", "ECHO") end)
      assert.has_error(function() q:enabled(nil, ECHO) end)
      assert.has_error(function() q:received(codec.SB, ECHO) end)
      assert.has_error(function() q:received(WILL, -1) end)
      assert.has_error(function() options.new({}) end)
      assert.has_error(function() options.new({ send = print, us = 1 }) end)
      assert.has_error(function() options.new({ send = print, changed = true }) end)
    end)
  end)
end)
