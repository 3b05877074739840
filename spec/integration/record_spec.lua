-- --record DIR and luaecho replay against the real binary: a Protocol and
-- a streams handler recorded over real sockets with distinct chunks (the
-- client waits for each answer before it sends the next piece), the
-- files (0600 in a 0700 DIR, the format), the replay against the same
-- script (exit 0) and a changed one (exit 1, the first differing byte
-- named), --record-max, workers, and what goes wrong: a bad DIR, bad
-- flags, a file that is not a transcript.
local uv = require "luv"
local cleanup = require "support.cleanup"
local client = require "support.client"
local exits = require "support.exits"
local files = require "support.files"
local server = require "support.server"
local text = require "support.text"
local wait = require "support.wait"
local transcript = require "luaecho.transcript"

after_each(cleanup.expect_clean)

-- The transcripts in 'dir': their names, sorted (so by start time).
local function transcripts(dir)
  local names = {}
  local scan = uv.fs_scandir(dir)
  while scan do
    local name = uv.fs_scandir_next(scan)
    if not name then break end
    if name:match("%.rec$") then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- Wait until 'dir' holds 'n' finished transcripts (each ends with an end
-- event) and return their names.
local function wait_transcripts(dir, n)
  return wait.until_true(function()
    local names = transcripts(dir)
    if #names < n then return nil end
    for _, name in ipairs(names) do
      local t = transcript.parse(files.read(dir .. "/" .. name))
      if not (t and t.complete) then return nil end
    end
    return names
  end, 5, n .. " finished transcripts in " .. dir)
end

local function mode_of(path)
  return assert(uv.fs_stat(path)).mode & 511
end

local function replay(where, script)
  return server.run({ "replay", where, script }, nil, 20)
end

-- One session with a chunk-showing Protocol: three pieces, each sent
-- once the answer to the one before is in, a timer, a half-close.
local function chunks_session(proc)
  local conn = client.connect(proc.host, proc.port)
  for _, piece in ipairs({ "one", "two", "three" }) do
    local answer = ("[%d]%s"):format(#piece, piece)
    conn:send_all(piece)
    assert.are.equal(answer, conn:receive_exactly(#answer))
  end
  conn:send_all("later")
  assert.are.equal("[5]laterlate\n", conn:receive_exactly(13))
  conn:shutdown_send()
  local rest = conn:receive_until_close(5)
  assert.are.equal("bye\n", rest)
  return conn
end

describe("--record #integration", function()
  it("writes a Protocol connection's transcript: 0600 in a DIR made 0700, chunks as data_received got them", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local proc = server.start({ "--record", dir, server.fixture("record/chunks.lua") })
    local conn = chunks_session(proc)
    local names = wait_transcripts(dir, 1)
    assert.are.equal(1, #names)
    assert.are.equal(tonumber("700", 8), mode_of(dir))
    assert.are.equal(tonumber("600", 8), mode_of(dir .. "/" .. names[1]))
    assert.matches("^%d+T%d+%.%d+Z%-1%-%d+%.rec$", names[1])
    local raw = files.read(dir .. "/" .. names[1])
    assert.are.equal("luaecho-record 1\nlistener 0 ", raw:sub(1, 28))
    assert.matches("\nin %d+ 3\ntwo\nout %d+ 6\n%[3%]two\n", raw)
    local t = assert(transcript.parse(raw))
    assert.are.equal(("%s:%d"):format(proc.host, proc.port), t.listener)
    local host, port = conn:sockname()
    assert.are.equal(("%s:%d"):format(host, port), t.peer)
    assert.are.equal(server.fixture("record/chunks.lua"), t.script)
    assert.are.equal(1, t.generation)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", t.start)
    local kinds, inputs = {}, {}
    for _, ev in ipairs(t.events) do
      kinds[#kinds + 1] = ev.name
      if ev.name == "in" then inputs[#inputs + 1] = ev.data end
    end
    assert.are.same({ "one", "two", "three", "later" }, inputs)
    assert.are.same({ "in", "out", "in", "out", "in", "out", "in", "out", "out", "eof", "out", "close", "end" },
      kinds)
    assert.are.equal("server clean", t.ending)
    -- Events are timed with uv_hrtime; libuv's timers count from the loop's
    -- time, cached (in whole ms) when the turn began, before the input was
    -- read: on a busy machine the timer fires a little less than 0.3 s after
    -- the input's time. "About 0.3 s later" is what the replay needs.
    local late = t.events[9]
    local gap = late.t - t.events[7].t
    assert.is_true(gap >= 250000 and gap < 5000000,
      ("the timer's output comes 0.3 s after its input, not %d us"):format(gap))
  end)

  it("replays the recording against the same script (exit 0) and a changed one (exit 1, the byte named)", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local proc = server.start({ "--record", dir, server.fixture("record/chunks.lua") })
    chunks_session(proc)
    local name = wait_transcripts(dir, 1)[1]
    local code, out, err = replay(dir, server.fixture("record/chunks.lua"))
    assert.are.equal(0, code, out .. err)
    assert.are.equal("ok   " .. name .. ": 37 bytes out\n1 of 1 connections match "
      .. server.fixture("record/chunks.lua") .. "\n", out)
    code, out, err = replay(dir, server.fixture("record/chunks_changed.lua"))
    assert.are.equal(1, code, out .. err)
    local lines = text.lines(out)
    -- "[3]one" is 6 bytes, then "[3]two" differs at its fourth byte: offset 9.
    assert.matches("^DIFF " .. name:gsub("%p", "%%%0") .. ": output differs at byte 9 %(recorded [%d.]+ s into "
      .. "the connection, after input 2%)$", lines[1])
    assert.are.equal('  input 2:  "two"', lines[2])
    assert.are.equal('  same before: "[3]one[3]"', lines[3])
    assert.are.equal('  expected: "two[5]three[5]laterlate\\nbye\\n"', lines[4])
    assert.are.equal('  got:      "TWO[5]three[5]laterlate\\nbye\\n"', lines[5])
    assert.are.equal("0 of 1 connections match " .. server.fixture("record/chunks_changed.lua"), lines[6])
    assert.are.equal("", err)
  end)

  it("records a streams handler and replays it, one file given alone", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local proc = server.start({ "--record", dir, server.fixture("record/stream.lua") })
    local conn = client.connect(proc.host, proc.port)
    for _, piece in ipairs({ "ab", "cdef", ("x"):rep(100) }) do
      conn:send_all(piece)
      local n = #piece > 64 and 64 or #piece
      local answer = ("<%d:%s>"):format(n, piece:sub(1, n))
      assert.are.equal(answer, conn:receive_exactly(#answer))
      if #piece > 64 then assert.are.equal("<36:" .. ("x"):rep(36) .. ">", conn:receive_exactly(41)) end
    end
    conn:shutdown_send()
    assert.are.equal("end\n", conn:receive_until_close(5))
    local name = wait_transcripts(dir, 1)[1]
    local t = assert(transcript.parse(files.read(dir .. "/" .. name)))
    local inputs = {}
    for _, ev in ipairs(t.events) do
      if ev.name == "in" then inputs[#inputs + 1] = ev.data end
    end
    assert.are.same({ "ab", "cdef", ("x"):rep(100) }, inputs)
    assert.are.equal("server clean", t.ending)
    local code, out, err = replay(dir .. "/" .. name, server.fixture("record/stream.lua"))
    assert.are.equal(0, code, out .. err)
    code, out = replay(dir .. "/" .. name, server.fixture("record/stream_changed.lua"))
    assert.are.equal(1, code, out)
    local expected_offset = #"<2:ab><4:cdef><64:" + 64 + #"><36:" + 36 + #">"
    assert.matches("output differs at byte " .. expected_offset .. " ", out, 1, true)
    assert.matches('  expected: "end\\n"\n  got:      "END\\n"\n', out, 1, true)
  end)

  it("records a peer's reset and a failed callback, and replays both as they were", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local proc = server.start({ "--record", dir, server.fixture("boom.lua") })
    local reset = client.connect(proc.host, proc.port)
    reset:send_all("hello\n")
    assert.are.equal("hello\n", reset:receive_exactly(6))
    reset:reset()
    local failed = client.connect(proc.host, proc.port)
    failed:send_all("boom\n")
    failed:receive_until_close(5)
    local names = wait_transcripts(dir, 2)
    local endings = {}
    for _, name in ipairs(names) do
      endings[#endings + 1] = assert(transcript.parse(files.read(dir .. "/" .. name))).ending
    end
    table.sort(endings)
    assert.matches("^peer reset", endings[1])
    assert.matches("^server script_error: .*boom", endings[2])
    local code, out, err = replay(dir, server.fixture("boom.lua"))
    assert.are.equal(0, code, out .. err)
    assert.matches("2 of 2 connections match", out, 1, true)
  end)

  it("keeps DIR under --record-max by deleting the oldest transcripts, those found at start-up first", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    assert(uv.fs_mkdir(dir, tonumber("700", 8)))
    local old = scratch:write("rec/20000101T000000.000000Z-1-1.rec", ("x"):rep(3000))
    local bound = 4096
    local proc = server.start({ "--record", dir, "--record-max", "4k", server.fixture("record/chunks.lua") })
    local seen = { ["20000101T000000.000000Z-1-1.rec"] = 0 }
    for i = 1, 12 do
      local conn = client.connect(proc.host, proc.port)
      conn:send_all(("%03d"):format(i):rep(60))
      conn:receive_exactly(185)
      conn:close()
      wait.until_true(function()
        for _, name in ipairs(transcripts(dir)) do
          if not seen[name] then seen[name] = i; return true end
        end
      end, 5, "transcript " .. i)
      local total = 0
      for _, name in ipairs(transcripts(dir)) do
        local st = uv.fs_stat(dir .. "/" .. name) -- nil: deleted since the listing
        total = total + (st and st.size or 0)
      end
      assert.is_true(total <= bound, ("DIR holds %d bytes after connection %d, over %d"):format(total, i, bound))
    end
    assert.is_nil(uv.fs_stat(old), "the transcript found at start-up goes first")
    local left = transcripts(dir)
    assert.is_true(#left >= 2 and #left < 12, #left .. " transcripts left")
    local kept = {}
    for _, name in ipairs(left) do kept[#kept + 1] = seen[name] end
    table.sort(kept)
    assert.are.equal(12, kept[#kept], "the newest is kept")
    for k = 2, #kept do assert.are.equal(kept[k - 1] + 1, kept[k], "the oldest went first") end
  end)

  it("cuts short a transcript --record-max has no room for, with one warning, and records the next", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local proc = server.start({ "--record", dir, "--record-max", "1k", server.fixture("record/chunks.lua") })
    local big = client.connect(proc.host, proc.port)
    big:send_all(("b"):rep(600))
    big:receive_exactly(605)
    big:close()
    proc:wait_output("stderr", "luaecho: warning: %-%-record%-max reached: no room for " .. text.literal(dir)
      .. "/[^ ]+%.rec even with every finished transcript deleted, so it is cut short %(raise %-%-record%-max%)\n", 5)
    assert.are.same({}, transcripts(dir))
    local small = client.connect(proc.host, proc.port)
    small:send_all("hi")
    assert.are.equal("[2]hi", small:receive_exactly(5))
    small:close()
    assert.are.equal(1, #wait_transcripts(dir, 1))
  end)

  it("keeps serving when a transcript cannot be written: one warning, that transcript cut short", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local proc = server.start({ "--record", dir, server.fixture("record/chunks.lua") })
    assert(uv.fs_rmdir(dir)) -- gone from under the server: the file cannot be created
    for _ = 1, 2 do
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("hi")
      assert.are.equal("[2]hi", conn:receive_exactly(5))
      conn:close()
    end
    proc:wait_output("stderr", "luaecho: warning: %-%-record: cannot write " .. text.literal(dir)
      .. "/[^ ]+%.rec: no such file or directory; this transcript is cut short\n", 5)
    assert.is_nil(uv.fs_stat(dir))
  end)

  it("names the generation that served each connection, across a hot swap", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local script = scratch:write("handler.lua", files.read(server.fixture("record/chunks.lua")))
    local proc = server.start({ "--record", dir, script })
    local function session()
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("hi")
      assert.are.equal("[2]hi", conn:receive_exactly(5))
      conn:close()
    end
    session()
    wait_transcripts(dir, 1)
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: reloaded " .. text.literal(script) .. " %(generation 2%)\n", 10)
    session()
    local generations = {}
    for _, name in ipairs(wait_transcripts(dir, 2)) do
      generations[#generations + 1] = assert(transcript.parse(files.read(dir .. "/" .. name))).generation
    end
    assert.are.same({ 1, 2 }, generations)
  end)

  it("is a --reload-check: a candidate that answers the recorded traffic otherwise is rejected", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local script = scratch:write("handler.lua", files.read(server.fixture("record/chunks.lua")))
    local check = ("'%s' replay '%s' {script}"):format(server.bin(), dir)
    local proc = server.start({ "--record", dir, "--reload-check", check, script })
    chunks_session(proc)
    local name = wait_transcripts(dir, 1)[1]
    scratch:replace("handler.lua", files.read(server.fixture("record/chunks_changed.lua")))
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: error: reload %(SIGHUP%) rejected, still serving generation 1: reload check "
      .. "exited with status 1; its output ended with:\n  DIFF " .. text.literal(name) .. ": output differs at byte 9 ",
      20, "the rejection with the replay's first difference")
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("two")
    assert.are.equal("[3]two", conn:receive_exactly(6), "still the old code")
    conn:close()
    scratch:replace("handler.lua", files.read(server.fixture("record/chunks.lua")) .. "-- the same answers\n")
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: reloaded " .. text.literal(script) .. " %(generation 2%)\n", 20)
  end)

  it("names each worker's transcripts apart with --workers 2", function()
    local scratch = files.scratch("record")
    local dir = scratch:path("rec")
    local proc = server.start({ "--workers", "2", "--record", dir, server.fixture("record/chunks.lua") })
    for _ = 1, 6 do
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("hi")
      assert.are.equal("[2]hi", conn:receive_exactly(5))
      conn:close()
    end
    local names = wait_transcripts(dir, 6)
    assert.are.equal(6, #names)
    for _, name in ipairs(names) do assert.matches("^%d+T%d+%.%d+Z%-[12]%-%d+%.rec$", name) end
  end)

  it("refuses a DIR it cannot use: exit 1, one line naming it, nothing listens", function()
    local scratch = files.scratch("record")
    local plain = scratch:write("plain", "not a directory\n")
    exits.assert_load_error({ "--port", "0", "--record", plain }, { "--record " .. plain, "not a directory" })
    local deep = scratch:path("missing/rec")
    exits.assert_load_error({ "--port", "0", "--record", deep }, { "--record " .. deep, "cannot create the directory" })
  end)

  it("refuses bad --record flags with exit 2", function()
    exits.assert_usage_error({ "--record-max", "4k" }, "--record-max needs --record DIR")
    exits.assert_usage_error({ "--record", "/tmp/x", "--record-max", "lots" }, "--record-max must be a number of bytes")
    exits.assert_usage_error({ "--record", "/tmp/x", "--record-max", "100" }, "at least 1k")
    exits.assert_usage_error({ "run", "--record", "/tmp/x", "s.lua" }, "--record is for serving")
    exits.assert_usage_error({ "--record", "" }, "--record needs a directory")
  end)
end)

describe("luaecho replay's usage #integration", function()
  it("is in luaecho --help, with --record and --record-max", function()
    local code, out = server.run({ "--help" })
    assert.are.equal(0, code)
    for _, word in ipairs({ "luaecho replay DIR|FILE SCRIPT", "--record DIR", "--record-max BYTES", "default 64M" }) do
      assert.matches(word, out, 1, true)
    end
  end)

  it("names a file that is not a transcript in one line, exit 2", function()
    local scratch = files.scratch("replay")
    local bad = scratch:write("bad.rec", "luaecho-record 1\nlistener 0 9\n127.0.0.1\npeer x y\n")
    local code, out, err = replay(bad, server.fixture("record/chunks.lua"))
    assert.are.equal(2, code)
    assert.are.equal("", out)
    local lines = text.lines(err)
    assert.are.equal("luaecho: replay: " .. bad .. " is not a transcript: the header's peer field is missing "
      .. "(found byte 40: expected an event (\"NAME TIME LENGTH\"), found \"peer x y\")", lines[1])
    assert.are.equal("Try 'luaecho replay --help' for more information.", lines[2])
    code, out, err = replay(scratch.dir, server.fixture("record/chunks.lua"))
    assert.are.equal(2, code)
    assert.matches("bad.rec is not a transcript", err, 1, true)
    assert.are.equal("", out)
  end)

  it("stops a streams handler that never returns at LUAECHO_REPLAY_CPU_LIMIT seconds, exit 1", function()
    local scratch = files.scratch("replay")
    local function event(name, t, data) return ("%s %d %d\n%s\n"):format(name, t, #data, data) end
    local rec = scratch:write("spin.rec", "luaecho-record 1\n" .. event("listener", 0, "127.0.0.1:2222")
      .. event("peer", 0, "127.0.0.1:50000") .. event("script", 0, "spin.lua") .. event("generation", 0, "1")
      .. event("worker", 0, "1") .. event("start", 0, "2026-12-07T02:42:23.000000Z") .. event("in", 5, "abc")
      .. event("out", 6, "abc") .. event("end", 9, "peer reset: connection reset by peer"))
    local started = wait.now()
    local code, out = server.run({ "replay", rec, server.fixture("record/spin_stream.lua") },
      { env = { LUAECHO_REPLAY_CPU_LIMIT = "0.3" } }, 20)
    assert.are.equal(1, code, out)
    assert.is_true(wait.now() - started < 10, "stopped at the limit")
    assert.matches("DIFF spin.rec: output differs at byte 0", out, 1, true)
    assert.matches("the script failed: stream handler failed for 127.0.0.1:50000: .*ran past its CPU limit", out)
  end)

  it("says so when DIR holds no transcript, and passes (exit 0)", function()
    local scratch = files.scratch("replay")
    local code, out, err = replay(scratch.dir, server.fixture("record/chunks.lua"))
    assert.are.equal(0, code, err)
    assert.are.equal("no transcripts (*.rec) in " .. scratch.dir .. ": nothing to compare\n", out)
  end)

  it("says what is missing: DIR, SCRIPT, the operands; --help says what it compares", function()
    local code, _, err = replay("/nonexistent/rec", server.fixture("record/chunks.lua"))
    assert.are.equal(2, code)
    assert.matches("^luaecho: replay: /nonexistent/rec: No such file or directory\n", err)
    code, _, err = server.run({ "replay", "/tmp" })
    assert.are.equal(2, code)
    assert.matches("give a DIR (or one FILE) of transcripts and a SCRIPT", err, 1, true)
    code, _, err = replay("/tmp", "/nonexistent.lua")
    assert.are.equal(2, code)
    assert.matches("cannot read SCRIPT /nonexistent.lua", err, 1, true)
    local out
    code, out = server.run({ "replay", "--help" })
    assert.are.equal(0, code)
    assert.matches("Usage: luaecho replay DIR|FILE SCRIPT", out, 1, true)
    assert.matches("Exit status: 0 when every connection matches", out, 1, true)
    assert.matches("hold what clients sent", out, 1, true)
  end)

  -- Every operand goes on the Lua stack: a glob of thousands of transcripts
  -- must be a usage error, not a stack overflow.
  it("refuses thousands of operands with the usage line, exit 2", function()
    local args = { "replay" }
    for i = 1, 30000 do args[#args + 1] = "rec-" .. i end
    local code, _, err = server.run(args)
    assert.are.equal(2, code)
    assert.matches("give a DIR (or one FILE) of transcripts and a SCRIPT", err, 1, true)
  end)
end)
