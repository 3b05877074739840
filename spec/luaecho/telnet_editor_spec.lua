-- luacheck: std +busted
local editor = require("luaecho.telnet.editor")

-- Feed 'chunks' (a string or a list of strings) to a new editor made with
-- 'opts'; returns the events of all feeds in one list and the echo joined.
local function run(opts, chunks)
  local echoed, calls = {}, 0
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.echo = function(bytes)
    calls = calls + 1
    echoed[#echoed + 1] = bytes
  end
  local e = editor.new(o)
  if type(chunks) == "string" then chunks = { chunks } end
  local events = {}
  for _, chunk in ipairs(chunks) do
    for _, ev in ipairs(e:feed(chunk)) do events[#events + 1] = ev end
  end
  return events, table.concat(echoed), e, calls
end

local function lines(...)
  local out = {}
  for i, line in ipairs({ ... }) do out[i] = { kind = "line", line = line } end
  return out
end

local function keys(...)
  local out = {}
  for i, key in ipairs({ ... }) do out[i] = { kind = "key", key = key } end
  return out
end

local function bytewise(s)
  local out = {}
  for i = 1, #s do out[i] = s:sub(i, i) end
  return out
end

-- Every way of cutting 's' in two and three pieces, and byte by byte, gives
-- the events and the echo of feeding it whole.
local function assert_split_invariant(opts, s)
  local want, want_echo = run(opts, s)
  local function check(chunks)
    local got, got_echo = run(opts, chunks)
    assert.are.same(want, got, "split " .. ("%q"):format(table.concat(chunks, "|")))
    assert.are.equal(want_echo, got_echo)
  end
  for i = 0, #s do
    check({ s:sub(1, i), s:sub(i + 1) })
    for j = i, #s do check({ s:sub(1, i), s:sub(i + 1, j), s:sub(j + 1) }) end
  end
  check(bytewise(s))
  return want, want_echo
end

describe("luaecho.telnet.editor #unit", function()
  describe("line mode", function()
    it("ends a line at \\r\\n, \\r\\0, a bare \\n and a bare \\r", function()
      assert.are.same(lines("a"), (run({}, "a\r\n")))
      assert.are.same(lines("a"), (run({}, "a\r\0")))
      assert.are.same(lines("a"), (run({}, "a\n")))
      assert.are.same(lines("a"), (run({}, "a\r")))
      assert.are.same(lines("a", "b"), (run({}, "a\rb\n")))
    end)

    it("delivers empty lines, one per line end", function()
      assert.are.same(lines("", ""), (run({}, "\r\n\r\n")))
      assert.are.same(lines("", ""), (run({}, "\n\n")))
      assert.are.same(lines("", ""), (run({}, "\r\r")))
      assert.are.same(lines("", ""), (run({}, "\n\r")))
      assert.are.same(lines("", ""), (run({}, "\r\0\r\0")))
    end)

    it("does not make an empty line of a \\r ending one feed and \\n or \\0 starting the next", function()
      assert.are.same(lines("a", "b"), (run({}, { "a\r", "\nb\r", "\0" })))
      assert.are.same(lines("a"), (run({}, { "a\r", "", "\n" })))
      assert.are.same(lines("a", "", "b"), (run({}, { "a\r", "\n\nb\n" })))
    end)

    it("starts the next line with what follows a \\r in the next feed", function()
      assert.are.same(lines("a", "b"), (run({}, { "a\r", "b\n" })))
    end)

    it("keeps a partial line until its end comes, and shows it in e:line()", function()
      local events, _, e = run({}, { "hel", "lo" })
      assert.are.same({}, events)
      assert.are.equal("hello", e:line())
      assert.are.same(lines("hello world"), e:feed(" world\r\n"))
      assert.are.equal("", e:line())
    end)

    it("neither echoes nor decodes: escape sequences, controls and any bytes stay in the line", function()
      local events, echoed = run({}, "\27[A\3\4\b\127\255\195x\r\n")
      assert.are.same(lines("\27[A\3\4\b\127\255\195x"), events)
      assert.are.equal("", echoed)
    end)

    it("gives the same events for every split of a sample input", function()
      local want = assert_split_invariant({}, "one\r\ntwo\r\0three\nfour\rfive\r\r\n\nsix\r")
      assert.are.same(lines("one", "two", "three", "four", "five", "", "", "six"), want)
    end)

    it("finds the lines of a large feed quickly", function()
      local line = ("x"):rep(100)
      local data = (line .. "\r\n"):rep(20000)
      local started = os.clock()
      local events = run({}, data)
      assert.are.equal(20000, #events)
      assert.are.equal(line, events[20000].line)
      assert.is_true(os.clock() - started < 1)
    end)
  end)

  describe("character mode", function()
    local C = { mode = "character" }

    it("echoes what is typed, echoes \\r\\n at Enter and yields the line", function()
      local events, echoed = run(C, "hi é\r")
      assert.are.same(lines("hi é"), events)
      assert.are.equal("hi é\r\n", echoed)
    end)

    it("takes \\r\\n, \\r\\0, \\n and \\r each as one Enter, even split across feeds", function()
      local events, echoed = run(C, { "a\r", "\nb\r\0c\nd\r", "\0" })
      assert.are.same(lines("a", "b", "c", "d"), events)
      assert.are.equal("a\r\nb\r\nc\r\nd\r\n", echoed)
    end)

    it("calls echo once per feed", function()
      local _, echoed, _, calls = run(C, { "abc\b", "d" })
      assert.are.equal("abc\b \bd", echoed)
      assert.are.equal(2, calls)
    end)

    it("erases a whole UTF-8 character with backspace or DEL, echoing \\b \\b once per character", function()
      local events, echoed, e = run(C, "aé\b")
      assert.are.same({}, events)
      assert.are.equal("a", e:line())
      assert.are.equal("aé\b \b", echoed)
      events, echoed, e = run(C, "a\240\159\152\128\127")
      assert.are.same({}, events)
      assert.are.equal("a", e:line())
      assert.are.equal("a\240\159\152\128\b \b", echoed)
      events, echoed = run(C, "é😀\b\127\b\r")
      assert.are.same(lines(""), events)
      assert.are.equal("é😀\b \b\b \b\r\n", echoed)
    end)

    it("erases a character split across feeds whole", function()
      local _, echoed, e = run(C, { "x\240\159", "\152", "\128", "\b" })
      assert.are.equal("x", e:line())
      assert.are.equal("x\240\159\152\128\b \b", echoed)
    end)

    it("erases the line with Ctrl-U, one \\b \\b per character", function()
      local events, echoed, e = run(C, "hé 😀\21ok\r")
      assert.are.same(lines("ok"), events)
      assert.are.equal("hé 😀" .. ("\b \b"):rep(4) .. "ok\r\n", echoed)
      assert.are.equal("", e:line())
    end)

    it("erases the last word with Ctrl-W: trailing spaces, then non-spaces", function()
      local events, echoed = run(C, "foo bär  \23x\r")
      assert.are.same(lines("foo x"), events)
      assert.are.equal("foo bär  " .. ("\b \b"):rep(5) .. "x\r\n", echoed)
      events, echoed = run(C, "foo\23\23\r")
      assert.are.same(lines(""), events)
      assert.are.equal("foo" .. ("\b \b"):rep(3) .. "\r\n", echoed)
    end)

    it("echoes nothing for an erasure on an empty line", function()
      local events, echoed = run(C, "\b\127\21\23\r")
      assert.are.same(lines(""), events)
      assert.are.equal("\r\n", echoed)
    end)

    it("swallows arrow keys and other escape sequences, even byte by byte", function()
      local sample = "a\27[Ab\27[Dc\27OAd\27[1;5Ce\27[[Af\27[200~g\r"
      local events, echoed = assert_split_invariant(C, sample)
      assert.are.same(lines("abcdefg"), events)
      assert.are.equal("abcdefg\r\n", echoed)
      assert.are.same(lines("x"), (run(C, bytewise("\27[A\27[Dx\27OA\r"))))
    end)

    it("takes only the ESC of a lone ESC: the next byte is read as typed", function()
      local events, echoed = run(C, { "\27", "x\27\27[Ay\r" })
      assert.are.same(lines("xy"), events)
      assert.are.equal("xy\r\n", echoed)
    end)

    it("ends a sequence broken by a control byte there, so Enter still counts", function()
      assert.are.same(lines("a"), (run(C, "a\27[1\r")))
      assert.are.same(lines("a"), (run(C, "a\27O\r")))
      assert.are.same({ { kind = "interrupt" } }, (run(C, "a\27[\3")))
    end)

    it("ends an overlong sequence at editor.MAX_SEQUENCE bytes", function()
      local long = "\27[" .. ("1"):rep(editor.MAX_SEQUENCE + 8) .. "A\r"
      local events = run(C, long)
      assert.are.same(lines(("1"):rep(10) .. "A"), events)
    end)

    it("yields interrupt at Ctrl-C and drops the line", function()
      local events, echoed, e = run(C, "abc\3")
      assert.are.same({ { kind = "interrupt" } }, events)
      assert.are.equal("", e:line())
      assert.are.equal("abc", echoed)
      assert.are.same(lines("d"), e:feed("d\r"))
    end)

    it("does the same on e:interrupt(), returning the event", function()
      local _, _, e = run(C, "abc")
      assert.are.same({ { kind = "interrupt" } }, e:interrupt())
      assert.are.equal("", e:line())
      assert.are.same(lines("d"), e:feed("d\r"))
    end)

    it("yields eof at Ctrl-D on an empty line only", function()
      assert.are.same({ { kind = "eof" } }, (run(C, "\4")))
      local events, _, e = run(C, "ab\4")
      assert.are.same({}, events)
      assert.are.equal("ab", e:line())
      assert.are.same({ { kind = "eof" } }, (run(C, "ab\21\4")))
    end)

    it("ignores other control bytes", function()
      local events, echoed = run(C, "a\t\1\0\2\31b\r")
      assert.are.same(lines("ab"), events)
      assert.are.equal("ab\r\n", echoed)
    end)

    it("takes a stray byte of invalid UTF-8 as a one-byte character", function()
      assert.are.same(lines("\255a"), (run(C, "\255a\r")))
      assert.are.same(lines("\195a"), (run(C, "\195a\r")))                -- cut short
      assert.are.same(lines("\237\160\128"), (run(C, "\237\160\128\r")))  -- a surrogate
      assert.are.same(lines("\192\175"), (run(C, "\192\175\r")))          -- overlong
      local _, echoed3 = run(C, "\224\128\128\b\b\b")                      -- overlong, 3 bytes
      assert.are.equal("\224\128\128" .. ("\b \b"):rep(3), echoed3)
      local events, echoed = run(C, "\226\130\b\b\r")
      assert.are.same(lines(""), events)
      assert.are.equal("\226\130\b \b\b \b\r\n", echoed)
    end)

    it("gives the same events and echo for every split of a sample input", function()
      local want, echoed = assert_split_invariant(C, "hé\b😀\23x\27[Cy\r\nz\127\21\4")
      assert.are.same({ { kind = "line", line = "xy" }, { kind = "eof" } }, want)
      assert.are.equal("hé\b \b😀\b \b\b \bxy\r\nz\b \b", echoed)
    end)
  end)

  describe("keys mode", function()
    local K = { mode = "keys" }

    it("delivers \\27[A whole, even byte by byte", function()
      assert.are.same(keys("\27[A"), (run(K, "\27[A")))
      assert.are.same(keys("\27[A", "\27OB", "\27[1;5D", "\27[[A"), (run(K, bytewise("\27[A\27OB\27[1;5D\27[[A"))))
    end)

    it("delivers a UTF-8 character whole and control bytes alone, without echo", function()
      local events, echoed = run(K, { "a\240\159", "\152\128é", "\b\127\t\4" })
      assert.are.same(keys("a", "😀", "é", "\b", "\127", "\t", "\4"), events)
      assert.are.equal("", echoed)
    end)

    it("delivers Enter as \\r whatever the line end, even split across feeds", function()
      assert.are.same(keys("\r", "\r", "\r", "\r", "x"), (run(K, { "\r\n\r\0\n\r", "\nx" })))
      assert.are.equal("\r", editor.ENTER)
    end)

    it("yields interrupt at Ctrl-C rather than a key", function()
      assert.are.same({ { kind = "key", key = "a" }, { kind = "interrupt" } }, (run(K, "a\3")))
    end)

    it("delivers a lone ESC as a key once the next byte shows it is alone, or at flush()", function()
      assert.are.same(keys("\27", "x"), (run(K, { "\27", "x" })))
      local events, _, e = run(K, "\27")
      assert.are.same({}, events)
      assert.are.same(keys("\27"), e:flush())
      assert.are.same({}, e:flush())
      e:feed("\27[")
      assert.are.same(keys("\27["), e:flush())
    end)

    it("drops a pending sequence at flush() in character mode, and settles a cut character", function()
      local events, echoed, e = run({ mode = "character" }, "a\27")
      assert.are.same({}, events)
      assert.are.same({}, e:flush())
      assert.are.same(keys("\195"), (function()
        local k = editor.new({ mode = "keys" })
        k:feed("\195")
        return k:flush()
      end)())
      assert.are.same(lines("ax"), e:feed("x\r"))
      assert.are.equal("a", echoed)
    end)

    it("gives the same events for every split of a sample input", function()
      local want = assert_split_invariant(K, "a\27[Aé\r\n\27x\27OP\3b")
      assert.are.same({ { kind = "key", key = "a" }, { kind = "key", key = "\27[A" }, { kind = "key", key = "é" },
        { kind = "key", key = "\r" }, { kind = "key", key = "\27" }, { kind = "key", key = "x" },
        { kind = "key", key = "\27OP" }, { kind = "interrupt" }, { kind = "key", key = "b" } }, want)
    end)
  end)

  describe("max_line", function()
    for _, mode in ipairs({ "line", "character" }) do
      describe("in " .. mode .. " mode", function()
        local function opts(policy) return { mode = mode, max_line = 4, policy = policy } end

        it("defaults to 4096 bytes with the error policy", function()
          local ok = ("x"):rep(4096)
          assert.are.same(lines(ok), (run({ mode = mode }, ok .. "\r")))
          assert.are.same({ { kind = "too_long", dropped = 4097 } }, (run({ mode = mode }, ok .. "xy\r")))
        end)

        it("error: delivers a line of exactly max_line, drops one of max_line + 1 with one too_long", function()
          assert.are.same(lines("abcd"), (run(opts("error"), "abcd\r\n")))
          local events = assert_split_invariant(opts("error"), "abcde\r\nok\r\n")
          assert.are.same({ { kind = "too_long", dropped = 5 }, { kind = "line", line = "ok" } }, events)
        end)

        it("error: reports as soon as the line goes over, once, and resumes at the next line end", function()
          local e = editor.new(opts("error"))
          assert.are.same({ { kind = "too_long", dropped = 5 } }, e:feed("abcdef"))
          assert.are.same({}, e:feed(("x"):rep(100)))
          assert.are.same(lines("ok"), e:feed("\r\nok\n"))
        end)

        it("discard: drops a line of max_line + 1 silently up to the next line end", function()
          assert.are.same(lines("abcd"), (run(opts("discard"), "abcd\n")))
          local events = assert_split_invariant(opts("discard"), "abcde\rok\r\0")
          assert.are.same(lines("ok"), events)
        end)

        it("split: delivers pieces of max_line, no empty piece at an exact multiple", function()
          assert.are.same(lines("abcd"), (run(opts("split"), "abcd\n")))
          assert.are.same(lines("abcd", "e"), assert_split_invariant(opts("split"), "abcde\n"))
          assert.are.same(lines("abcd", "efgh"), (run(opts("split"), "abcdefgh\n")))
          assert.are.same(lines("abcd", "efgh", "i", "ok"), (run(opts("split"), { "abcdefghi\r", "\nok\r" })))
        end)

        it("split: does not cut a UTF-8 character", function()
          assert.are.same(lines("abc", "é"), (run(opts("split"), "abcé\n")))
          assert.are.same(lines("a", "😀", "b"), (run(opts("split"), "a😀b\n")))
        end)
      end)
    end

    it("character mode: stops echoing a line over max_line; its Enter echoes \\r\\n", function()
      local events, echoed = run({ mode = "character", max_line = 4 }, "abcdef\b\rok\r")
      assert.are.same({ { kind = "too_long", dropped = 5 }, { kind = "line", line = "ok" } }, events)
      assert.are.equal("abcd\r\nok\r\n", echoed)
    end)

    it("character mode: counts the character that did not fit in 'dropped'", function()
      assert.are.same({ { kind = "too_long", dropped = 7 } }, (run({ mode = "character", max_line = 4 }, "abc😀")))
    end)

    it("character mode split: keeps echoing, and erasing stops at the piece delivered", function()
      local events, echoed = run({ mode = "character", max_line = 4, policy = "split" }, "abcde\b\bx\r")
      assert.are.same(lines("abcd", "x"), events)
      assert.are.equal("abcde\b \bx\r\n", echoed)
    end)

    it("line mode: bytes over max_line are not kept while skipping", function()
      local e = editor.new({ max_line = 4, policy = "discard" })
      e:feed(("x"):rep(1000))
      assert.are.equal("", e:line())
    end)
  end)

  describe("any input", function()
    local modes = { "line", "character", "keys" }
    local policies = { "error", "discard", "split" }

    it("never raises, and every split gives the same events (random bytes)", function()
      local seed = 17
      local function random(n) -- a small LCG, so the run is the same everywhere
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      local alphabet = { "\r", "\n", "\0", "\27", "[", "O", "A", "1", ";", "\b", "\127", "\3", "\4", "\21", "\23",
        "a", " ", "\195", "\169", "\240", "\159", "\255", "\128", "\237" }
      for _ = 1, 300 do
        local t = {}
        for i = 1, random(40) do t[i] = alphabet[random(#alphabet) + 1] end
        local s = table.concat(t)
        local o = { mode = modes[random(3) + 1], policy = policies[random(3) + 1], max_line = random(6) + 1 }
        local ok, want, want_echo = pcall(run, o, s)
        assert.is_true(ok, want)
        local chunks, i = {}, 1
        while i <= #s do
          local j = i + random(4)
          chunks[#chunks + 1] = s:sub(i, j)
          i = j + 1
        end
        local got, got_echo = run(o, chunks)
        assert.are.same(want, got, ("%q in %s mode"):format(s, o.mode))
        assert.are.equal(want_echo, got_echo)
        assert.are.same(want, (run(o, bytewise(s))))
      end
    end)

    it("takes nil as nothing", function()
      assert.are.same({}, editor.new():feed(nil))
    end)
  end)

  describe("set_mode", function()
    it("carries the partial line from line mode to character mode and back", function()
      local out = {}
      local e = editor.new({ echo = function(b) out[#out + 1] = b end })
      e:feed("hé")
      e:set_mode("character")
      assert.are.equal("character", e.mode)
      assert.are.equal("hé", e:line())
      assert.are.same(lines("hx"), e:feed("\bx\r"))
      assert.are.equal("\b \bx\r\n", table.concat(out))
      e:feed("ab")
      e:set_mode("line")
      assert.are.same(lines("abc"), e:feed("c\n"))
    end)

    it("drops the line on the way to keys mode", function()
      local e = editor.new({ mode = "character" })
      e:feed("abc")
      e:set_mode("keys")
      assert.are.equal("", e:line())
      assert.are.same(keys("\27[A"), e:feed("\27[A"))
      e:set_mode("character")
      assert.are.same(lines("d"), e:feed("d\r"))
    end)

    it("keeps an unfinished escape sequence as bytes of the line in line mode", function()
      local e = editor.new({ mode = "character" })
      e:feed("\27[")
      e:set_mode("line")
      assert.are.same(lines("\27[1"), e:feed("1\n"))
    end)
  end)

  describe("editor.new", function()
    it("refuses a bad mode, policy, max_line or echo", function()
      assert.has_error(function() editor.new({ mode = "raw" }) end)
      assert.has_error(function() editor.new({ policy = "truncate" }) end)
      assert.has_error(function() editor.new({ max_line = 0 }) end)
      assert.has_error(function() editor.new({ max_line = 1.5 }) end)
      assert.has_error(function() editor.new({ echo = "x" }) end)
      assert.has_error(function() editor.new():set_mode("raw") end)
    end)

    it("defaults to line mode", function()
      assert.are.equal("line", editor.new().mode)
    end)
  end)
end)
