-- luacheck: std +busted
local streams = require("luaecho.streams")
local task = require("luaecho.task")
local errors = require("luaecho.errors")
local log = require("luaecho.log")
local testing = require("luaecho.testing")

-- Capture log lines as "level: msg" for the duration of each spec.
local logged
local function capture_log()
  testing.reset()
  logged = {}
  log.sink = function(level, msg) logged[#logged + 1] = level .. ": " .. msg end
end
local function restore_log()
  log.sink = log.default_sink
end

-- Serve one fake connection with handler(reader, writer); returns the
-- connection and the protocol instance (instance.task is the handler's task).
local function serve(handler, opts, conn_opts)
  local conn = testing.connect(streams.protocol(handler, opts), conn_opts)
  return conn, conn:protocol()
end

-- Like serve, with write buffer marks set before the handler starts, and a
-- peer that reads only when told to (conn:drain).
local function serve_with_marks(handler, high, low)
  local P = streams.protocol(handler)
  local new = P.new
  P.new = function()
    local instance = new()
    local made = instance.connection_made
    instance.connection_made = function(self, transport)
      transport:set_write_buffer_limits(high, low)
      return made(self, transport)
    end
    return instance
  end
  local conn = testing.connect(P, { hold_output = true })
  return conn, conn:protocol()
end

-- Call fn(...) and return the error it raises (failing if it returns).
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err
end

-- A handler that appends each readline() to 'lines' until EOF.
local function line_collector(lines)
  return function(reader)
    while true do
      local line = reader:readline()
      if line == "" then return end
      lines[#lines + 1] = line
    end
  end
end

describe("streams reader #unit", function()
  before_each(capture_log)
  after_each(function()
    restore_log()
    assert.are.same({}, logged)
  end)

  describe("read", function()
    it("returns buffered data at once, without suspending", function()
      local r = streams.reader()
      r:feed_data("hello")
      local t = task.spawn(function() return r:read(8192) end)
      assert.is_true(t:done())
      assert.are.same({ n = 1, "hello" }, t.results)
    end)

    it("returns at most n bytes and leaves the rest buffered", function()
      local r = streams.reader()
      r:feed_data("hello")
      local t = task.spawn(function() return r:read(2), r:read(10) end)
      assert.are.same({ n = 2, "he", "llo" }, t.results)
    end)

    it("returns what several buffered chunks hold, up to n bytes", function()
      local r = streams.reader()
      for c in ("abcdef"):gmatch(".") do r:feed_data(c) end
      local t = task.spawn(function() return r:read(4), r:read(4) end)
      assert.are.same({ n = 2, "abcd", "ef" }, t.results)
    end)

    it("waits for the next chunk when nothing is buffered", function()
      local got = {}
      local t = serve(function(reader) got[1] = reader:read(8192) end)
      assert.are.same({}, got)
      t:send("chunk")
      assert.are.same({ "chunk" }, got)
    end)

    it("returns an empty string at EOF", function()
      local got = {}
      local t = serve(function(reader) got[1] = reader:read(10); got[2] = reader:read(10) end)
      t:send("x")
      t:eof()
      assert.are.same({ "x", "" }, got)
    end)

    it("reads everything until EOF when given no count", function()
      local got
      local t = serve(function(reader) got = reader:read() end)
      t:send("one ")
      t:send("two")
      assert.is_nil(got)
      t:eof()
      assert.are.equal("one two", got)
    end)

    it("returns an empty string for a count of zero", function()
      local r = streams.reader()
      r:feed_data("x")
      local t = task.spawn(function() return r:read(0) end)
      assert.are.same({ n = 1, "" }, t.results)
    end)

    it("keeps waiting for data when its task is woken from elsewhere", function()
      local got
      local t, proto = serve(function(reader) got = reader:read(10) end)
      task.wake(proto.task)
      assert.is_nil(got)
      t:send("data")
      assert.are.equal("data", got)
    end)

    it("takes a float count with an integral value as that integer", function()
      local r = streams.reader()
      r:feed_data("abcdef")
      local t = task.spawn(function() return r:read(2), r:read(2.0), r:read(1.0), r:read(1) end)
      assert.are.same({ n = 4, "ab", "cd", "e", "f" }, t.results)
    end)

    it("names the method when the count is not an integer", function()
      local r = streams.reader()
      local t = task.spawn(function() return r:read("many") end)
      assert.matches("bad argument #1 to 'read' (integer expected, got string)", t.error, 1, true)
      logged = {}
    end)

    it("raises the clear error when called outside a task", function()
      local r = streams.reader()
      r:feed_data("data")
      local err = raised(r.read, r, 10)
      assert.matches("reader:read() cannot suspend here: call it from a luaecho task", err, 1, true)
    end)

    it("refuses a second task while one is waiting", function()
      local r = streams.reader()
      task.spawn(function() r:read(1) end)
      local t = task.spawn(function() r:read(1) end)
      assert.matches("reader:read() called while another task is waiting on this reader", t.error, 1, true)
      assert.matches("error: task failed:", logged[1], 1, true)
      logged = {}
    end)
  end)

  describe("readline", function()
    it("joins a line that arrives one byte at a time", function()
      local lines = {}
      local t = serve(line_collector(lines))
      for c in ("hi there\n"):gmatch(".") do t:send(c) end
      assert.are.same({ "hi there\n" }, lines)
    end)

    it("returns every line of one chunk without waiting for more", function()
      local lines = {}
      local t = serve(line_collector(lines))
      t:send("one\ntwo\nthree\n")
      assert.are.same({ "one\n", "two\n", "three\n" }, lines)
    end)

    it("keeps a CRLF line ending as sent", function()
      local lines = {}
      local t = serve(line_collector(lines))
      t:send("typed in telnet\r\nnext\r\n")
      assert.are.same({ "typed in telnet\r\n", "next\r\n" }, lines)
    end)

    it("joins a line spread over many chunks with other lines around it", function()
      local lines = {}
      local t = serve(line_collector(lines))
      t:send("a\nbb")
      t:send("b")
      t:send("b\ncc")
      t:send("\n")
      assert.are.same({ "a\n", "bbbb\n", "cc\n" }, lines)
    end)

    it("returns the unterminated rest at EOF, then an empty string", function()
      local got = {}
      local t = serve(function(reader) got[1] = reader:readline(); got[2] = reader:readline() end)
      t:send("no newline")
      t:eof()
      assert.are.same({ "no newline", "" }, got)
    end)

    it("raises LimitOverrunError for a line with no newline beyond the limit", function()
      local err
      local t = serve(function(reader)
        local ok
        ok, err = pcall(reader.readline, reader)
        assert(not ok)
      end, { limit = 8 })
      t:send("12345")
      assert.is_nil(err)
      t:send("6789")
      assert.is_true(errors.is(err, "LimitOverrunError"))
      assert.are.equal(9, err.consumed)
    end)

    it("discards an overlong line so the next readline starts afresh", function()
      local got = {}
      local t = serve(function(reader)
        got[1] = select(2, pcall(reader.readline, reader)).kind
        got[2] = reader:readline()
      end, { limit = 4 })
      t:send("toolong\nok\n")
      assert.are.same({ "LimitOverrunError", "ok\n" }, got)
    end)

    it("accepts a line exactly as long as the limit plus its newline", function()
      local lines = {}
      local t = serve(line_collector(lines), { limit = 4 })
      t:send("abcd\n")
      assert.are.same({ "abcd\n" }, lines)
    end)
  end)

  describe("readexactly", function()
    it("collects exactly n bytes across chunks and leaves the rest", function()
      local got = {}
      local t = serve(function(reader) got[1] = reader:readexactly(5); got[2] = reader:read(10) end)
      t:send("ab")
      t:send("c")
      assert.are.same({}, got)
      t:send("defg")
      assert.are.same({ "abcde", "fg" }, got)
    end)

    it("raises IncompleteReadError with the partial data when EOF comes first", function()
      local err, at_eof
      local t = serve(function(reader)
        err = select(2, pcall(reader.readexactly, reader, 4))
        at_eof = reader:at_eof()
      end)
      t:send("ab")
      t:eof()
      assert.is_true(errors.is(err, "IncompleteReadError"))
      assert.are.same({ "ab", 4, true }, { err.partial, err.expected, at_eof })
      assert.are.equal("IncompleteReadError: 2 bytes read on a total of 4 expected bytes", tostring(err))
    end)

    it("returns an empty string for zero bytes, even at EOF", function()
      local r = streams.reader()
      r:feed_eof()
      local t = task.spawn(function() return r:readexactly(0) end)
      assert.are.same({ n = 1, "" }, t.results)
    end)
  end)

  describe("readuntil", function()
    it("finds a multi-byte separator split across chunks", function()
      local got = {}
      local t = serve(function(reader) got[1] = reader:readuntil("\r\n\r\n"); got[2] = reader:read(10) end)
      t:send("GET / HTTP/1.0\r")
      t:send("\n\r")
      assert.are.same({}, got)
      t:send("\nbody")
      assert.are.same({ "GET / HTTP/1.0\r\n\r\n", "body" }, got)
    end)

    it("finds a multi-byte separator arriving one byte at a time", function()
      local got
      local t = serve(function(reader) got = reader:readuntil("--end--") end)
      for c in ("data--en--end--"):gmatch(".") do t:send(c) end
      assert.are.equal("data--en--end--", got)
    end)

    it("finds a separator whose first bytes repeat across a chunk boundary", function()
      local got
      local t = serve(function(reader) got = reader:readuntil("aab") end)
      t:send("xa")
      t:send("a")
      t:send("ab")
      assert.are.equal("xaaab", got)
    end)

    it("returns successive records from one chunk", function()
      local got = {}
      local t = serve(function(reader)
        for i = 1, 3 do got[i] = reader:readuntil("||") end
      end)
      t:send("a||bb||ccc||")
      assert.are.same({ "a||", "bb||", "ccc||" }, got)
    end)

    it("raises IncompleteReadError with the partial data at EOF", function()
      local err
      local t = serve(function(reader) err = select(2, pcall(reader.readuntil, reader, "\r\n")) end)
      t:send("half\r")
      t:eof()
      assert.is_true(errors.is(err, "IncompleteReadError"))
      assert.are.equal("half\r", err.partial)
    end)

    it("raises LimitOverrunError and leaves the data buffered when the separator is too far", function()
      local err, rest
      local t = serve(function(reader)
        err = select(2, pcall(reader.readuntil, reader, "\r\n"))
        rest = reader:read(100)
      end, { limit = 4 })
      t:send("123456\r\n")
      assert.is_true(errors.is(err, "LimitOverrunError"))
      assert.are.same({ 6, "123456\r\n" }, { err.consumed, rest })
    end)

    it("rejects an empty separator", function()
      local r = streams.reader()
      local t = task.spawn(function() return r:readuntil("") end)
      assert.matches("non-empty string expected", t.error, 1, true)
      logged = {}
    end)
  end)

  describe("backpressure", function()
    it("pauses reading when the buffer goes above the limit", function()
      local t, proto = serve(function() task.suspend("hold") end, { limit = 4 })
      t:send("1234")
      assert.is_true(t:reading())
      t:send("5")
      assert.is_false(t:reading())
      assert.is_false(proto.task:done())
    end)

    it("resumes reading once reads bring the buffer back to the limit", function()
      local got = {}
      local t, proto = serve(function(reader)
        task.suspend("hold")
        got[1] = reader:read(1)
        task.suspend("hold")
        got[2] = reader:read(1)
        task.suspend("hold") -- returning would close the transport
      end, { limit = 4 })
      t:send("123456")
      assert.is_false(t:reading())
      task.wake(proto.task)
      assert.is_false(t:reading()) -- 5 bytes left, still above the limit
      task.wake(proto.task)
      assert.are.same({ "1", "2" }, got)
      assert.is_true(t:reading())
    end)

    it("delivers the data the peer sent while reading was paused", function()
      local got
      local t, proto = serve(function(reader)
        task.suspend("hold")
        got = reader:readexactly(8)
      end, { limit = 4 })
      t:send("12345")
      t:send("678")
      assert.are.same({ false, 3 }, { t:reading(), t:held() })
      task.wake(proto.task)
      testing.advance() -- reading resumed: the held bytes come in
      assert.are.equal("12345678", got)
    end)

    it("resumes reading while waiting for more than the limit", function()
      local got
      local t = serve(function(reader) got = reader:readexactly(10) end, { limit = 4 })
      t:send("123456")
      assert.is_true(t:reading())
      t:send("7890")
      assert.are.equal("1234567890", got)
    end)
  end)

  describe("end of stream", function()
    it("is at EOF only once the data buffered before EOF is read", function()
      local seen = {}
      local t = serve(function(reader)
        task.suspend("hold")
        seen[1] = reader:at_eof()
        reader:read(10)
        seen[2] = reader:at_eof()
      end)
      local proto = t:protocol()
      t:send("data")
      t:eof()
      task.wake(proto.task)
      assert.are.same({ false, true }, seen)
    end)

    it("gives a waiting read an empty string when the connection closes cleanly", function()
      local got
      serve(function(reader) got = reader:read(10) end)
      testing.shutdown() -- the host closes every connection
      assert.are.equal("", got)
    end)

    it("raises ConnectionLost from a waiting read when the connection breaks", function()
      local err
      local t = serve(function(reader) err = select(2, pcall(reader.readline, reader)) end)
      t:send("half a li")
      t:reset()
      assert.is_true(errors.is(err, "ConnectionLost"))
      assert.are.same({ "connection reset by peer", "half a li" }, { err.reason, err.partial })
      assert.are.equal("ConnectionLost: connection lost: connection reset by peer", tostring(err))
    end)

    it("still returns what arrived before the connection broke", function()
      local got
      local t, proto = serve(function(reader)
        task.suspend("hold")
        got = { reader:readline(), select(2, pcall(reader.read, reader, 1)).kind }
      end)
      t:send("whole line\n")
      t:reset()
      task.wake(proto.task)
      assert.are.same({ "whole line\n", "ConnectionLost" }, got)
    end)
  end)
end)

describe("streams writer #unit", function()
  before_each(capture_log)
  after_each(function()
    restore_log()
    assert.are.same({}, logged)
  end)

  it("passes write and writelines through to the transport", function()
    local t = serve(function(_, writer)
      writer:write("one ")
      writer:writelines({ "two ", "three" })
    end)
    assert.are.equal("one two three", t:output())
  end)

  it("returns from drain at once when the transport is not paused", function()
    local _, proto = serve(function(_, writer)
      writer:write("small")
      writer:drain()
    end)
    assert.is_true(proto.task:done())
  end)

  it("suspends drain above the high mark and resumes it at the low mark", function()
    local steps = {}
    local t, proto = serve_with_marks(function(_, writer)
      writer:write("0123456789")
      steps[#steps + 1] = "written"
      writer:drain()
      steps[#steps + 1] = "drained"
    end, 8, 2)
    assert.are.same({ "written" }, steps)
    t:drain(7) -- 3 bytes left: above the low mark
    assert.are.same({ "written" }, steps)
    t:drain(1) -- 2 bytes left: at the low mark
    assert.are.same({ "written", "drained" }, steps)
    assert.is_true(proto.task:done())
  end)

  it("raises ConnectionLost from a waiting drain when the connection is lost", function()
    local err
    local t = serve_with_marks(function(_, writer)
      writer:write("0123456789")
      err = select(2, pcall(writer.drain, writer))
    end, 8, 2)
    t:reset()
    assert.is_true(errors.is(err, "ConnectionLost"))
    assert.are.equal("connection reset by peer", err.reason)
  end)

  it("keeps draining when its task is woken from elsewhere while still paused", function()
    local drained = false
    local t, proto = serve_with_marks(function(_, writer)
      writer:write("0123456789")
      writer:drain()
      drained = true
    end, 8, 2)
    task.wake(proto.task)
    assert.is_false(drained)
    t:drain()
    assert.is_true(drained)
  end)

  it("raises ConnectionLost from drain called after the connection is lost", function()
    local err
    local _, proto = serve(function(_, writer)
      task.suspend("hold")
      err = select(2, pcall(writer.drain, writer))
    end)
    testing.shutdown() -- the host closes every connection
    task.wake(proto.task)
    assert.is_true(errors.is(err, "ConnectionLost"))
  end)

  it("raises the clear error when drain is called outside a task", function()
    local writer = streams.writer(testing.connect({}):transport())
    assert.matches("writer:drain() cannot suspend here", raised(writer.drain, writer), 1, true)
  end)

  it("raises TransportClosed when writing after close", function()
    local err
    serve(function(_, writer)
      writer:close()
      err = select(2, pcall(writer.write, writer, "late"))
    end)
    assert.is_true(errors.is(err, "TransportClosed"))
  end)

  it("raises ConnectionLost when writing after the connection is lost", function()
    local err
    local t, proto = serve(function(_, writer)
      task.suspend("hold")
      err = select(2, pcall(writer.write, writer, "late"))
    end)
    t:reset()
    task.wake(proto.task)
    assert.is_true(errors.is(err, "ConnectionLost"))
  end)

  it("is closing once closed, and close is idempotent", function()
    local seen = {}
    local t = serve(function(_, writer)
      seen[1] = writer:is_closing()
      writer:close()
      writer:close()
      seen[2] = writer:is_closing()
    end)
    assert.are.same({ false, true }, seen)
    assert.is_true(t:closed())
  end)

  it("returns from wait_closed once the connection is gone", function()
    local result
    local t = serve(function(_, writer)
      writer:write("last words")
      writer:close()
      result = { writer:wait_closed() }
    end, nil, { hold_output = true })
    assert.is_nil(result) -- close() is still flushing: the peer has not read
    t:drain()
    assert.are.same({ true }, result)
  end)

  it("returns nil and the error from wait_closed when the connection broke", function()
    local result
    local t = serve(function(_, writer) result = { writer:wait_closed() } end)
    t:reset()
    assert.is_nil(result[1])
    assert.is_true(errors.is(result[2], "ConnectionLost"))
  end)

  it("answers get_extra_info from the transport, or with the default", function()
    local got
    serve(function(_, writer)
      got = { writer:get_extra_info("peername") }
      got[3] = writer:get_extra_info("cipher", "none")
    end, nil, { peername = { "10.0.0.7", 4242 } })
    assert.are.same({ "10.0.0.7", 4242, "none" }, got)
  end)

  it("passes write_eof and can_write_eof through, and refuses writes after write_eof", function()
    local got
    local t = serve(function(_, writer)
      got = { writer:can_write_eof() }
      writer:write("last")
      writer:write_eof()
      got[2] = select(2, pcall(writer.write, writer, "more"))
    end)
    assert.is_true(got[1])
    assert.matches("transport:write(): cannot write after write_eof()", got[2], 1, true)
    assert.is_true(t:wrote_eof())
  end)
end)

describe("streams protocol #unit", function()
  before_each(capture_log)
  after_each(restore_log)

  it("runs the handler in a luaecho task with a reader and a writer", function()
    local seen
    local _, proto = serve(function(reader, writer)
      seen = { task.current() ~= nil, getmetatable(reader).__index.readline ~= nil, writer.transport ~= nil }
    end)
    assert.are.same({ true, true, true }, seen)
    assert.is_true(proto.task:done())
  end)

  it("closes the writer when the handler returns", function()
    local t = serve(function(reader, writer) writer:write(reader:read(10)) end)
    t:send("bye")
    assert.is_true(t:closed())
    assert.is_false(t:aborted())
    assert.are.same({ "connection_made", "data_received", "connection_lost" }, t:events())
    assert.are.equal("bye", t:output())
  end)

  it("closes the transport once when the handler closed the writer itself", function()
    local t = serve(function(reader, writer)
      reader:read(10)
      writer:close()
    end)
    local close = spy.on(getmetatable(t:transport()).__index, "close")
    t:send("x")
    close:revert()
    assert.spy(close).was.called(1)
  end)

  it("keeps our side open after the peer's EOF, for the handler to decide", function()
    local t = serve(function(reader, writer)
      while reader:read(100) ~= "" do end
      writer:write("bye after EOF")
    end)
    t:eof()
    assert.are.equal("bye after EOF", t:output())
  end)

  it("logs a handler error with the peer and the handler's traceback, and aborts", function()
    local t = serve(function(reader)
      local function parse_request(line) error("bad request: " .. line, 0) end
      parse_request(reader:readline())
    end)
    t:send("nonsense\n")
    assert.are.equal(1, #logged)
    assert.matches("^error: stream handler failed for 127%.0%.0%.1:50000: bad request: nonsense\n"
      .. "\nstack traceback:\n", logged[1])
    assert.matches("parse_request", logged[1], 1, true)
    assert.is_true(t:aborted())
    assert.are.same({}, t:errors()) -- the failure did not escape into data_received
    assert.are.same({ "connection_made", "data_received", "connection_lost" }, t:events())
  end)

  it("names an IPv6 peer in brackets when the handler fails", function()
    serve(function() error("boom", 0) end, nil, { peername = { "::1", 6000 } })
    assert.matches("^error: stream handler failed for %[::1%]:6000: boom\n", logged[1])
  end)

  it("logs an error table through its __tostring", function()
    serve(function(reader) reader:readexactly(3) end):eof()
    assert.matches("failed for 127.0.0.1:50000: IncompleteReadError: 0 bytes read on a total of 3", logged[1], 1, true)
  end)

  it("echoes with the article's read(8192) loop until the peer's EOF", function()
    local t = serve(function(reader, writer)
      while true do
        local data = reader:read(8192)
        if data == "" then break end
        writer:write(data)
        writer:drain()
      end
    end)
    t:send("hello ")
    t:send(("x"):rep(20000))
    t:eof()
    assert.are.equal("hello " .. ("x"):rep(20000), t:output())
    assert.is_true(t:closed())
  end)

  it("serves each connection with its own reader, writer and task", function()
    local handler = function(reader, writer) writer:write(reader:readline()) end
    local server = testing.serve(streams.protocol(handler))
    local a, b = server:connect(), server:connect()
    b:send("to b\n")
    a:send("to a\n")
    assert.are.same({ "to a\n", "to b\n" }, { a:output(), b:output() })
    assert.are_not.equal(a:protocol().reader, b:protocol().reader)
  end)

  it("builds a reader and a writer without a task when given no handler", function()
    local t, proto = serve(nil)
    assert.is_nil(proto.task)
    local got = task.spawn(function() return proto.reader:readline() end)
    t:send("client side\n")
    assert.are.same({ n = 1, "client side\n" }, got.results)
  end)

  it("rejects a limit that is not a positive integer", function()
    assert.matches("limit must be a positive integer", raised(streams.protocol, print, { limit = 0 }), 1, true)
  end)
end)

describe("writer:start_tls #unit", function()
  before_each(capture_log)
  after_each(restore_log)

  -- A transport that records start_tls calls and the writes; the handshake
  -- ends when the spec calls instance:tls_started() or connection_lost.
  local function stub_transport(start_tls)
    local tr = { calls = {}, written = {}, closing = false, aborted = false }
    function tr.start_tls(self, opts, early)
      self.calls[#self.calls + 1] = opts or "none"
      self.early = early
      if start_tls then start_tls(self, opts) end
    end
    function tr.write(self, data) self.written[#self.written + 1] = data end
    function tr.close(self) self.closing = true end
    function tr.abort(self) self.closing, self.aborted = true, true end
    function tr.is_closing(self) return self.closing end
    function tr.pause_reading() end
    function tr.resume_reading() end
    function tr.get_extra_info(_, name)
      if name == "peername" then return "127.0.0.1", 50000 end
    end
    return tr
  end

  -- Serve one connection on a stub transport with handler(reader, writer).
  local function serve_stub(handler, start_tls)
    local instance = streams.protocol(handler).new()
    local tr = stub_transport(start_tls)
    instance:connection_made(tr)
    return instance, tr
  end

  it("suspends the handler until tls_started, then lets it go on", function()
    local steps = {}
    local instance, tr = serve_stub(function(reader, writer)
      steps[#steps + 1] = reader:readline()
      writer:write("220 go ahead\r\n")
      writer:start_tls()
      steps[#steps + 1] = "tls"
      writer:write(reader:readline())
    end)
    instance:data_received("STARTTLS\r\n")
    assert.are.same({ "STARTTLS\r\n" }, steps)
    assert.are.same({ "none" }, tr.calls)
    assert.is_false(instance.task:done())
    instance:tls_started()
    assert.are.same({ "STARTTLS\r\n", "tls" }, steps)
    instance:data_received("secret\n")
    assert.is_true(instance.task:done())
    assert.are.same({ "220 go ahead\r\n", "secret\n" }, tr.written)
  end)

  it("passes its options to transport:start_tls", function()
    local opts = { cert = "/tmp/c.pem", key = "/tmp/k.pem" }
    local instance, tr = serve_stub(function(_, writer) writer:start_tls(opts) end)
    instance:tls_started()
    assert.are.equal(opts, tr.calls[1])
    assert.is_true(instance.task:done())
  end)

  it("returns when the handshake completes inside the call", function()
    local instance
    instance = serve_stub(function(_, writer) writer:start_tls() end,
      function() instance:tls_started() end)
    assert.is_true(instance.task:done())
  end)

  it("raises ConnectionLost with the reason when the handshake fails", function()
    local caught
    local instance = serve_stub(function(_, writer)
      local ok, err = pcall(writer.start_tls, writer)
      caught = { ok, err }
    end)
    instance:connection_lost("TLS handshake failed: wrong version number")
    assert.is_false(caught[1])
    assert.is_true(errors.is(caught[2], "ConnectionLost"))
    assert.are.equal("TLS handshake failed: wrong version number", caught[2].reason)
    assert.are.equal("connection lost: TLS handshake failed: wrong version number", caught[2].message)
  end)

  it("logs a failed handshake that escapes the handler at debug level, not as a script error", function()
    local instance, tr = serve_stub(function(_, writer) writer:start_tls() end)
    instance:connection_lost("TLS handshake failed: wrong version number")
    assert.is_true(tr.aborted)
    for _, line in ipairs(logged) do assert.matches("^debug: ", line) end
  end)

  it("hands the handshake the bytes the reader holds: they came after the command", function()
    local done
    local instance, tr = serve_stub(function(reader, writer)
      reader:readline()
      writer:start_tls()
      done = reader:readline()
    end)
    instance:data_received("STARTTLS\r\n\22\3\1")
    assert.are.same({ "none" }, tr.calls)
    assert.are.equal("\22\3\1", tr.early)
    instance:tls_started()
    instance:data_received("secret\n")
    assert.are.equal("secret\n", done)
  end)

  it("raises the transport's own error with the writer's name, blaming the script's line", function()
    local caught
    serve_stub(function(_, writer)
      local ok, err = pcall(function() writer:start_tls() end)
      caught = { ok, err }
    end, function() error("start_tls(): no certificate: give {cert = FILE, key = FILE}", 0) end)
    assert.is_false(caught[1])
    assert.matches("streams_spec%.lua:%d+: writer:start_tls%(%): no certificate: give {cert = FILE, key = FILE}$",
      caught[2])
  end)

  it("checks the server side's options, naming the option", function()
    local caught = {}
    serve_stub(function(_, writer)
      for i, opts in ipairs({ { bogus = 1 }, { cert = "c.pem" }, { cert = 5, key = "k.pem" },
                               { server_hostname = "a.test" } }) do
        caught[i] = select(2, pcall(writer.start_tls, writer, opts))
      end
    end)
    assert.matches("writer:start_tls(): unknown option bogus for the server side (cert, key)", caught[1], 1, true)
    assert.matches("writer:start_tls(): give opts.cert and opts.key together", caught[2], 1, true)
    assert.matches("writer:start_tls(): opts.cert must be the path of a PEM file, not number", caught[3], 1, true)
    assert.matches("unknown option server_hostname for the server side", caught[4], 1, true)
  end)

  it("refuses opts that are not a table, a closed writer and a lost connection", function()
    local caught = {}
    serve_stub(function(_, writer)
      caught[1] = select(2, pcall(writer.start_tls, writer, "cert.pem"))
      writer:close()
      caught[2] = select(2, pcall(writer.start_tls, writer))
    end)
    assert.matches("writer:start_tls(): opts must be a table, not string", caught[1], 1, true)
    assert.is_true(errors.is(caught[2], "TransportClosed"))
    local lost = serve_stub(nil)
    lost:connection_lost("connection reset by peer")
    task.spawn(function() caught[3] = select(2, pcall(lost.writer.start_tls, lost.writer)) end)
    assert.is_true(errors.is(caught[3], "ConnectionLost"))
  end)

  it("refuses a second task while one waits for the handshake", function()
    local caught
    local instance = serve_stub(function(_, writer)
      task.spawn(function()
        caught = select(2, pcall(writer.start_tls, writer))
      end)
      writer:start_tls()
    end)
    -- the spawned task ran first and waits; the handler's own call is refused
    assert.is_nil(caught)
    assert.is_true(instance.task:done())
    assert.matches("another task is already waiting for this handshake", instance.task.error or "", 1, true)
  end)

  it("raises the clear error outside a task", function()
    local w = streams.writer(stub_transport(), streams.reader())
    assert.matches("writer:start_tls() cannot suspend here", raised(w.start_tls, w), 1, true)
  end)

  it("names the host connected to as server_hostname on a client writer, and joins alpn", function()
    local instance, tr = serve_stub(nil)
    instance.writer.tls_client = { host = "mail.test" }
    task.spawn(function() instance.writer:start_tls({ ca = "/tmp/ca.pem", alpn = { "imap", "x" } }) end)
    assert.are.same({ server_hostname = "mail.test", ca = "/tmp/ca.pem", verify = true, alpn = "imap,x" },
      tr.calls[1])
    local caught
    task.spawn(function() caught = select(2, pcall(instance.writer.start_tls, instance.writer, { cert = "c" })) end)
    assert.matches("unknown option cert for the client side (server_hostname, ca, verify, alpn)", caught, 1, true)
  end)
end)

describe("luaecho.testing's fake transport #unit", function()
  before_each(capture_log)
  after_each(restore_log)

  -- A protocol that records every call with its arguments.
  local function recorder()
    local seen = {}
    local P = {}
    for _, name in ipairs({ "connection_made", "data_received", "eof_received",
      "pause_writing", "resume_writing", "connection_lost" }) do
      P[name] = function(_, arg)
        seen[#seen + 1] = arg == nil and name or name .. " " .. tostring(arg)
      end
    end
    return P, seen
  end

  it("raises 'transport is closed' from the write methods after close", function()
    local t = testing.connect({}):transport()
    t:close()
    assert.are.same({ "transport:write(): transport is closed", "transport:writelines(): transport is closed",
      "transport:write_eof(): transport is closed" }, {
      raised(t.write, t, "x"), raised(t.writelines, t, { "x" }), raised(t.write_eof, t),
    })
  end)

  it("treats close, abort and the reading controls as no-ops once closed", function()
    local t = testing.connect({}):transport()
    t:abort()
    t:close()
    t:abort()
    t:resume_reading()
    t:pause_reading()
    assert.are.same({ true, false, 0 }, { t:is_closing(), t:is_reading(), t:get_write_buffer_size() })
  end)

  it("calls pause_writing once above the high mark and resume_writing once at the low mark", function()
    local P, seen = recorder()
    local conn = testing.connect(P, { hold_output = true })
    local t = conn:transport()
    t:set_write_buffer_limits(10)
    t:write(("x"):rep(11))
    t:write("more")
    conn:drain(12)
    conn:drain(1)
    conn:drain(1)
    assert.are.same({ "connection_made", "pause_writing", "resume_writing" }, {
      seen[1]:match("^%S+"), seen[2], seen[3] })
    assert.are.equal(1, t:get_write_buffer_size())
  end)

  it("applies a lower high mark at once, and resumes for a higher one only as output drains", function()
    local P, seen = recorder()
    local conn = testing.connect(P, { hold_output = true })
    local t = conn:transport()
    t:write(("x"):rep(100))
    t:set_write_buffer_limits(50, 10)
    t:set_write_buffer_limits(400) -- low mark 100: resume_writing waits for the next drain, as in the host
    assert.are.same({ "pause_writing" }, { seen[2], seen[3] })
    conn:drain(1)
    assert.are.same({ "pause_writing", "resume_writing" }, { seen[2], seen[3] })
  end)

  it("runs connection_lost once, on the turn after close", function()
    local P, seen = recorder()
    local conn = testing.connect(P)
    conn:transport():close()
    assert.are.equal(1, #seen)
    testing.advance()
    testing.advance()
    conn:reset()
    assert.are.same({ "connection_lost" }, { seen[2], seen[3] })
  end)

  it("holds input while reading is paused and delivers it in order when reading resumes", function()
    local P, seen = recorder()
    local conn = testing.connect(P)
    local t = conn:transport()
    t:pause_reading()
    conn:send("a")
    conn:eof()
    t:resume_reading()
    testing.advance()
    assert.are.same({ "data_received a", "eof_received" }, { seen[2], seen[3] })
  end)

  it("closes when eof_received returns a falsy value", function()
    local conn = testing.connect({})
    conn:eof()
    assert.is_true(conn:closed())
  end)

  it("logs a failing callback with the peer, aborts, and passes the error to connection_lost", function()
    testing.expect_errors()
    local lost
    local conn = testing.connect({
      data_received = function() error("bad input", 0) end,
      connection_lost = function(_, err) lost = err end,
    })
    conn:send("x")
    assert.matches("^luaecho: error: data_received failed for 127%.0%.0%.1:50000: bad input\nstack traceback:",
      testing.logs()[1])
    assert.are.same({ true, "bad input" }, { conn:aborted(), lost })
  end)

  it("answers peername once the connection is gone, but not sockname", function()
    local conn = testing.connect({})
    conn:reset()
    local t = conn:transport()
    assert.are.same({ "127.0.0.1", 50000 }, { t:get_extra_info("peername") })
    assert.is_nil(t:get_extra_info("sockname"))
  end)
end)
