-- luaecho.transcript (the reader of --record's files) and
-- luaecho.replay's comparison, on transcripts made here: no binary, no
-- sockets.
local transcript = require "luaecho.transcript"
local replay = require "luaecho.replay"
local testing = require "luaecho.testing"

local function event(name, t, data)
  return ("%s %d %d\n%s\n"):format(name, t, #data, data)
end

local function header(fields)
  fields = fields or {}
  local out = { "luaecho-record 1\n" }
  for _, name in ipairs({ "listener", "peer", "script", "generation", "worker", "start" }) do
    local defaults = { listener = "127.0.0.1:2222", peer = "127.0.0.1:50000", script = "echo.lua",
      generation = "1", worker = "1", start = "2026-12-07T02:42:23.000000Z" }
    out[#out + 1] = event(name, 0, fields[name] or defaults[name])
  end
  return table.concat(out)
end

local ECHO = "lua/echo.lua"

describe("luaecho.transcript #unit", function()
  it("reads the header and the events, bytes kept exactly (newlines, NUL, 0xff)", function()
    local data = "a\nb\0\255\n"
    local t = assert(transcript.parse(header() .. event("in", 120, data) .. event("out", 130, "echo:" .. data)
      .. event("eof", 2000, "") .. event("close", 2010, "") .. event("end", 2050, "server clean")))
    assert.are.equal("127.0.0.1:2222", t.listener)
    assert.are.equal("127.0.0.1:50000", t.peer)
    assert.are.equal(1, t.generation)
    assert.are.equal(1, t.worker)
    assert.are.same({ name = "in", t = 120, data = data }, t.events[1])
    assert.are.equal(5, #t.events)
    assert.is_true(t.complete)
    assert.are.equal("server clean", t.ending)
    assert.are.same({ "echo:" .. data, "close" }, { transcript.expected(t) })
  end)

  it("keeps what came whole of a transcript cut short, and says it is not complete", function()
    local whole = header() .. event("in", 5, "abc") .. event("out", 6, "echo:abc")
    local t = assert(transcript.parse(whole .. "in 9 10\nabc"))
    assert.is_false(t.complete)
    assert.are.equal(2, #t.events)
    assert.is_false(assert(transcript.parse(whole .. "in 9")).complete)
  end)

  it("takes a file cut short in its header (or empty) as nothing to replay, not as a wrong file", function()
    for _, text in ipairs({ "", "luaecho-rec", "luaecho-record 1\n", header():sub(1, 40), header():sub(1, 60) }) do
      local t = assert(transcript.parse(text), ("%q"):format(text))
      assert.is_true(t.header_cut)
      assert.are.same({}, t.events)
    end
  end)

  it("refuses what is not a transcript, saying why in one line", function()
    local cases = {
      { "hello\n", 'it does not start with "luaecho-record 1"' },
      { "luaecho-record 2\n", "format version 2, and this luaecho reads version 1" },
      { "luaecho-record 1\npeer 0 1\nx\n", "the header's listener field is missing (found a peer event)" },
      { header() .. event("shout", 1, "x"), 'byte 161: unknown event "shout"' },
      { header() .. "in 1 3\nabcd\n", "the in event's 3 bytes are not followed by a newline" },
      { header() .. event("end", 1, "peer reset") .. event("in", 2, "x"), "events after the end event" },
      { header() .. "in one 3\nabc\n", 'expected an event ("NAME TIME LENGTH"), found "in one 3"' },
    }
    for _, case in ipairs(cases) do
      local t, why = transcript.parse(case[1])
      assert.is_nil(t)
      assert.matches(case[2], why, 1, true)
      assert.is_nil(why:find("\n"), "one line")
    end
  end)
end)

describe("luaecho.replay.connection #unit", function()
  before_each(testing.reset)

  local function recorded(events)
    local t = assert(transcript.parse(header() .. table.concat(events)))
    t.file = "x.rec"
    return t
  end

  it("matches the echo server's own recording, chunk by chunk", function()
    local t = recorded({ event("in", 10, "ab"), event("out", 11, "echo:ab"), event("in", 500000, "cd"),
      event("out", 500001, "echo:cd"), event("end", 900000, "peer reset: connection reset by peer") })
    local result = replay.connection(t, ECHO)
    assert.is_true(result.match, result.lines[1])
    assert.are.same({ "ok   x.rec: 14 bytes out" }, result.lines)
  end)

  it("shows the first differing byte, with the input before it", function()
    local t = recorded({ event("in", 10, "ab"), event("out", 11, "echo:ab"), event("in", 20, "cd"),
      event("out", 21, "echo:cX"), event("end", 30, "peer reset: connection reset by peer") })
    local result = replay.connection(t, ECHO)
    assert.is_false(result.match)
    assert.are.same({
      "DIFF x.rec: output differs at byte 13 (recorded 0.000 s into the connection, after input 2)",
      '  input 2:  "cd"',
      '  same before: "echo:abecho:c"',
      '  expected: "X"',
      '  got:      "d"',
    }, result.lines)
  end)

  it("tells a script that closes apart from one that leaves the end to the peer", function()
    local t = recorded({ event("in", 10, "ab"), event("out", 11, "echo:ab"), event("close", 12, ""),
      event("end", 13, "server clean") })
    local result = replay.connection(t, ECHO)
    assert.are.same({ "DIFF x.rec: the script closed it when recorded, and left it to the peer when replayed" },
      result.lines)
  end)

  it("skips a transcript cut short in its header", function()
    local t = assert(transcript.parse("luaecho-record 1\nlisten"))
    t.file = "x.rec"
    local skipped = { "skip x.rec: cut short before its header was whole, nothing to replay" }
    assert.are.same({ match = true, lines = skipped }, replay.connection(t, ECHO))
  end)

  it("compares a transcript cut short as far as it goes", function()
    local t = recorded({ event("in", 10, "ab"), event("out", 11, "echo:ab"), event("in", 20, "cd") })
    local result = replay.connection(t, ECHO)
    assert.is_true(result.match)
    assert.are.same({ "ok   x.rec: 7 bytes out (cut short: compared as far as recorded)" }, result.lines)
  end)

  it("stops a script that never returns, with the CPU limit named", function()
    local limit = replay.cpu_limit
    replay.cpu_limit = 0.2
    local t = recorded({ event("in", 10, "ab"), event("out", 11, "ab"), event("end", 20, "peer reset: x") })
    local result = replay.connection(t, "spec/fixtures/record/spin.lua")
    replay.cpu_limit = limit
    assert.is_false(result.match)
    assert.matches("the script failed: .*ran past its CPU limit on this connection", result.lines[#result.lines])
  end)
end)
