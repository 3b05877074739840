--- Streams for luaecho: asyncio-style reader and writer on a transport.
-- A reader buffers what the connection receives and hands it out as chunks,
-- lines or exact sizes; a writer wraps the transport and adds drain() for
-- flow control. Reads and drain() suspend the running luaecho task while they
-- wait, so they must be called from one (see luaecho.task). streams.protocol
-- turns a handler function(reader, writer) into a Protocol table, one task
-- per connection: it is how the host serves a script that returns a function.
-- @usage
--   return function(reader, writer)        -- a streams handler script
--     local line = reader:readline()
--     writer:write(line)
--     writer:drain()
--   end                                     -- the writer is closed for you
local sub, find, format = string.sub, string.find, string.format
local concat = table.concat
local error, pairs, pcall, setmetatable, tostring, type = error, pairs, pcall, setmetatable, tostring, type
local math_type, tointeger = math.type, math.tointeger
local task = require("luaecho.task")
local notify, suspend_running = task.notify, task.suspend_running
-- task.current(), inlined on the path of every read and drain
local by_coroutine, running = task.by_coroutine, coroutine.running
local errors = require("luaecho.errors")
local log = require("luaecho.log")

local M = {}

--- Default reader buffer limit in bytes (asyncio's too).
M.DEFAULT_LIMIT = 65536

-- The error raised when the connection ended with 'reason' (nil for a clean
-- close); 'partial' holds what a read had collected, if anything.
local function connection_lost(reason, partial)
  local message = reason == nil and "connection lost" or "connection lost: " .. tostring(reason)
  return errors.new("ConnectionLost", message, { reason = reason, partial = partial })
end

-- opts.limit, checked: a positive integer.
local function limit_of(opts, who)
  local limit = opts and opts.limit or M.DEFAULT_LIMIT
  if math_type(limit) ~= "integer" or limit < 1 then
    error(who .. ": limit must be a positive integer, got " .. tostring(limit), 3)
  end
  return limit
end

-- A byte count that is not an integer already, taken as luaL_checkinteger
-- takes it (8192.0 is 8192) or refused naming the method 'what'.
local function count_of(n, what)
  local i = tointeger(n)
  if i == nil then
    error(format("bad argument #1 to '%s' (integer expected, got %s)", what, math_type(n) or type(n)), 3)
  end
  return i
end

------------------------------------------------------------------------------
-- Reader buffer. Received chunks wait in a queue r.q[r.qh .. r.qt], unread
-- from offset r.pos of the head chunk; r.size counts the unread bytes. Chunks
-- are never joined on arrival: a read that fits in the head chunk is one
-- string.sub (or no copy at all when it takes the whole chunk), and only a
-- read that spans chunks concatenates, once, what it returns.

local Reader = {}
Reader.__index = Reader

--- A reader fed by a protocol (reader:feed_data/feed_eof/set_exception).
-- 'transport' (optional) is paused while the buffer holds more than
-- opts.limit bytes (default 64 KiB) and resumed once reads bring it back.
function M.reader(transport, opts)
  return setmetatable({
    transport = transport, limit = limit_of(opts, "streams.reader"),
    q = {}, qh = 1, qt = 0, pos = 1, size = 0,
    eof = false, err = nil, paused = false, waiter = false, scan_sep = false,
  }, Reader)
end

-- Remove the first 'n' unread bytes of a chunk queue (0 < n <= r.size) and
-- return them, joining chunks only when the bytes span several.
local function cut(r, n)
  local q, h, pos = r.q, r.qh, r.pos
  local c = q[h]
  local left = #c - pos + 1
  if n < left then
    r.pos = pos + n
    return sub(c, pos, pos + n - 1)
  elseif n == left then
    q[h], r.qh, r.pos = nil, h + 1, 1
    return pos == 1 and c or sub(c, pos)
  end
  local parts, k = {}, 0
  while n > 0 do
    c = q[h]
    left = #c - pos + 1
    k = k + 1
    if n >= left then
      parts[k] = pos == 1 and c or sub(c, pos)
      q[h], h, pos, n = nil, h + 1, 1, n - left
    else
      parts[k], pos, n = sub(c, pos, pos + n - 1), pos + n, 0
    end
  end
  r.qh, r.pos = h, pos
  return concat(parts)
end

-- Reading is paused and resumed through the transport, when there is one.
local function pause_reading(r)
  r.paused = true
  if r.transport then r.transport:pause_reading() end
end

local function resume_reading(r)
  r.paused = false
  if r.transport then r.transport:resume_reading() end
end

-- Take the first 'n' unread bytes (0 <= n <= r.size) out of the buffer.
local function take(r, n)
  if n == 0 then return "" end
  local out
  local h = r.qh
  local c = r.q[h]
  if n == #c and r.pos == 1 then -- the whole head chunk: no copy, no cut()
    r.q[h], r.qh, out = nil, h + 1, c
  else
    out = cut(r, n)
  end
  local size = r.size - n
  r.size, r.scan_sep = size, false
  if size == 0 then r.qh, r.qt, r.pos = 1, 0, 1 end
  if r.paused and size <= r.limit then resume_reading(r) end
  return out
end

-- The last 'm' bytes of what was searched so far: 'carry' followed by chunk
-- 'c' from 'first' on. Copies at most 'm' bytes plus a short chunk.
local function tail(carry, c, first, m)
  if #c - first + 1 >= m then return sub(c, -m) end
  return sub(carry .. sub(c, first), -m)
end

-- Offset (1 = first unread byte) of the last byte of the first 'sep' in the
-- buffer, or nil. Each chunk is searched once per separator: the search
-- resumes where the last one stopped, keeping the last #sep-1 bytes seen
-- ('carry') to catch a separator split across chunks. So a line arriving a
-- byte at a time costs O(n), not O(n^2).
local function find_sep(r, sep)
  local n = #sep
  if r.scan_sep ~= sep then
    r.scan_sep, r.scan_k, r.scan_base, r.carry = sep, r.qh, 0, ""
  end
  local q, base, carry = r.q, r.scan_base, r.carry
  for k = r.scan_k, r.qt do
    local c = q[k]
    local first = k == r.qh and r.pos or 1
    if carry ~= "" then
      local i = find(carry .. sub(c, first, first + n - 2), sep, 1, true)
      if i then return base - #carry + i + n - 1 end
    end
    local i = find(c, sep, first, true)
    if i then return base + i - first + n end
    base = base + #c - first + 1
    if n > 1 then carry = tail(carry, c, first, n - 1) end
    r.scan_k, r.scan_base, r.carry = k + 1, base, carry
  end
  return nil
end

-- Raise why the read method 'what' cannot run: no task is running, or
-- another task waits on the reader. The error blames the script's line.
local function refuse(r, what)
  task.check(what, 3)
  if r.waiter then
    error(what .. " called while another task is waiting on this reader", 3)
  end
end

-- Suspend task 't' until the buffer may have changed (data, EOF, error).
-- Reading resumes first if paused: the caller needs more than the buffer
-- holds (readexactly beyond the limit), and waiting on a paused socket would
-- hang. Callers re-check their condition in a loop, so a wake from elsewhere
-- only costs a turn; the registration is dropped so it cannot go stale.
local function wait(r, t)
  r.waiter = t
  if r.paused then resume_reading(r) end
  suspend_running(t)
  if r.waiter == t then r.waiter = false end
end

-- Wake the task waiting on 'r', if any.
local function wake_reader(r)
  local t = r.waiter
  if t then
    r.waiter = false
    notify(t)
  end
end

-- The end of the stream was reached with 'rest' left: a clean EOF returns
-- it, a lost connection raises ConnectionLost carrying it.
local function ended(r, rest)
  if r.err ~= nil then error(connection_lost(r.err, rest)) end
  return rest
end

-- Everything until EOF.
local function read_all(r, t)
  while not r.eof do wait(r, t) end
  return ended(r, take(r, r.size))
end

-- The count the last read() was given, as an integer: a reading loop
-- passes the same one every time, and comparing is cheaper than math.type.
local last_count = 0

--- Up to 'n' bytes: what is buffered, else the next chunk to arrive.
-- 'n' nil or negative: everything until EOF. "" at EOF.
function Reader:read(n)
  local t = by_coroutine[running()]
  if t == nil or self.waiter then refuse(self, "reader:read()") end
  if n == nil then return read_all(self, t) end
  if n == last_count then
    n = last_count -- the integer itself, should 'n' be a float equal to it
  else
    if math_type(n) ~= "integer" then n = count_of(n, "read") end
    last_count = n
  end
  if n < 0 then return read_all(self, t) end
  if n == 0 then return "" end
  local size = self.size
  while size == 0 do
    if self.eof then return ended(self, "") end
    self.waiter = t -- wait(self, t), inlined
    if self.paused then resume_reading(self) end
    suspend_running(t)
    if self.waiter == t then self.waiter = false end
    size = self.size
  end
  if n < size or self.qh ~= self.qt or self.pos ~= 1 then return take(self, n < size and n or size) end
  -- take(), for its commonest case: all there is, one whole chunk.
  local q, h = self.q, self.qh
  local c = q[h]
  q[h], self.qh, self.qt, self.size, self.scan_sep = nil, 1, 0, 0, false
  if self.paused then resume_reading(self) end
  return c
end

--- Exactly 'n' bytes; raises IncompleteReadError (partial, expected) if the
-- stream ends first, the partial bytes being consumed.
function Reader:readexactly(n)
  local t = by_coroutine[running()]
  if t == nil or self.waiter then refuse(self, "reader:readexactly()") end
  if math_type(n) ~= "integer" then n = count_of(n, "readexactly") end
  if n < 0 then error("bad argument #1 to 'readexactly' (must not be negative)", 2) end
  while self.size < n do
    if self.eof then
      local partial = ended(self, take(self, self.size))
      error(errors.new("IncompleteReadError",
        format("%d bytes read on a total of %d expected bytes", #partial, n),
        { partial = partial, expected = n }))
    end
    wait(self, t)
  end
  return take(self, n)
end

-- The separator is beyond the limit: raise LimitOverrunError. readline
-- discards the line ('discard' bytes), as asyncio does, so the next
-- readline starts afresh; readuntil leaves the buffer for the script.
local function overrun(r, consumed, discard, message)
  if discard then take(r, discard) end
  error(errors.new("LimitOverrunError", message, { consumed = consumed }))
end

-- The stream ended before 'sep': readline returns the rest,
-- readuntil raises IncompleteReadError carrying it.
local function incomplete(r, line)
  local partial = ended(r, take(r, r.size))
  if line then return partial end
  error(errors.new("IncompleteReadError",
    format("%d bytes read before the end of the stream, separator not found", #partial),
    { partial = partial }))
end

-- The reading loop shared by readuntil and readline ('line' true).
local function read_until(r, t, sep, line)
  local n = #sep
  while true do
    local e = find_sep(r, sep)
    if e then
      if e - n > r.limit then
        return overrun(r, e - n, line and e, "separator is found, but the chunk is longer than the limit")
      end
      return take(r, e)
    end
    if r.size - n + 1 > r.limit then
      return overrun(r, r.size - n + 1, line and r.size, "separator is not found, and the chunk exceeds the limit")
    end
    if r.eof then return incomplete(r, line) end
    wait(r, t)
  end
end

--- Bytes up to and including 'sep' (default "\n"; may be several bytes).
-- Raises IncompleteReadError (partial) at EOF, LimitOverrunError (consumed)
-- when 'sep' is not within the limit; that data stays buffered.
function Reader:readuntil(sep)
  local t = by_coroutine[running()]
  if t == nil or self.waiter then refuse(self, "reader:readuntil()") end
  if sep == nil then sep = "\n" end
  if type(sep) ~= "string" or sep == "" then
    error("bad argument #1 to 'readuntil' (non-empty string expected)", 2)
  end
  return read_until(self, t, sep, false)
end

--- One line including its "\n" (a "\r\n" stays as sent); at EOF whatever is
-- left, "" when nothing is. A line longer than the limit is discarded and
-- raises LimitOverrunError.
function Reader:readline()
  local t = by_coroutine[running()]
  if t == nil or self.waiter then refuse(self, "reader:readline()") end
  return read_until(self, t, "\n", true)
end

--- True when the stream has ended and the buffer is empty.
function Reader:at_eof()
  return self.eof and self.size == 0
end

-- Queue 'data' in reader 'r' and wake the task waiting on it.
local function feed_data(r, data)
  if r.eof then error("reader:feed_data(): data after the end of the stream", 2) end
  if data == "" then return end
  local qt, size = r.qt + 1, r.size + #data
  r.q[qt], r.qt, r.size = data, qt, size
  if size > r.limit and not r.paused then pause_reading(r) end
  local t = r.waiter
  if t then
    r.waiter = false
    notify(t)
  end
end

--- Protocol side: bytes received.
Reader.feed_data = feed_data

--- Protocol side: the peer sent EOF.
function Reader:feed_eof()
  self.eof = true
  wake_reader(self)
end

--- Protocol side: the connection was lost with 'reason'. Buffered data can
-- still be read; where EOF would come, reads raise ConnectionLost.
function Reader:set_exception(reason)
  self.eof, self.err = true, reason
  wake_reader(self)
end

------------------------------------------------------------------------------
-- Writer. Its flow-control state (write_paused, lost, lost_reason and the
-- tasks waiting in drain and wait_closed) lives in a table shared with the
-- protocol that receives pause_writing/resume_writing/connection_lost: for
-- streams.protocol that table is the protocol instance itself.

local Writer = {}
Writer.__index = Writer

-- A fresh flow-control state (the fields, documented above).
local function new_state(t)
  t = t or {}
  t.write_paused, t.lost, t.lost_reason = false, false, nil
  return t
end

-- Add task 't' to the waiting list 'key' of state 's', once: a task woken
-- early from elsewhere waits again, and two entries would wake it twice.
local function add_waiter(s, key, t)
  local list = s[key] or {}
  for i = 1, #list do
    if list[i] == t then return end
  end
  list[#list + 1] = t
  s[key] = list
end

-- Wake every task in the waiting list 'key' of 's' with the given values.
local function wake_all(s, key, ...)
  local list = s[key]
  s[key] = nil
  for i = 1, list and #list or 0 do task.wake(list[i], ...) end
end

--- A writer on 'transport'. 'reader' is kept as writer.reader; 'state' is
-- the flow-control table above (omit it for a writer whose drain() never
-- waits).
function M.writer(transport, reader, state)
  return setmetatable({
    transport = transport, reader = reader, state = state or new_state(), closing = false,
  }, Writer)
end

-- Raise the error for writing on a writer that is closed or lost.
local function refuse_write(w, what)
  local s = w.state
  if s.lost then error(connection_lost(s.lost_reason)) end
  error(errors.new("TransportClosed", what .. ": the writer is closed"))
end

--- Queue 'data' for sending (never waits; see drain).
function Writer:write(data)
  if self.closing or self.state.lost then refuse_write(self, "writer:write()") end
  self.transport:write(data)
end

--- Queue each string of 'list' for sending.
function Writer:writelines(list)
  if self.closing or self.state.lost then refuse_write(self, "writer:writelines()") end
  self.transport:writelines(list)
end

--- Close our side for writing once the queue is sent (the peer reads EOF).
function Writer:write_eof()
  if self.closing or self.state.lost then refuse_write(self, "writer:write_eof()") end
  self.transport:write_eof()
end

function Writer:can_write_eof()
  return self.transport:can_write_eof()
end

--- Suspend while the transport's write buffer is above its high mark;
-- return at once otherwise. Raises ConnectionLost once the connection is
-- gone, so a writing loop stops when the peer does.
function Writer:drain()
  local s = self.state
  if not (s.write_paused or s.lost) and by_coroutine[running()] then return end
  local t = task.check("writer:drain()", 2)
  while true do
    if s.lost then error(connection_lost(s.lost_reason)) end
    if not s.write_paused then return end
    add_waiter(s, "drain_waiters", t)
    local err = task.suspend("writer:drain()")
    if err then error(err) end
  end
end

--- Send what is queued, then close the connection. Idempotent.
function Writer:close()
  if self.closing then return end
  self.closing = true
  if not self.state.lost then self.transport:close() end
end

function Writer:is_closing()
  return self.closing or self.state.lost or self.transport:is_closing()
end

--- Suspend until the connection is gone. Returns true, or nil and a
-- ConnectionLost error if it ended with an error.
function Writer:wait_closed()
  local t = task.check("writer:wait_closed()", 2)
  local s = self.state
  while not s.lost do
    add_waiter(s, "close_waiters", t)
    task.suspend("writer:wait_closed()")
  end
  if s.lost_reason ~= nil then return nil, connection_lost(s.lost_reason) end
  return true
end

-- The TLS options of a client, checked: server_hostname (default
-- 'host'), ca, verify (default true), alpn (an array of names). Returns
-- them as the host takes them, alpn joined with commas; an error names
-- the option ('what' is the function's name) and blames 'level'.
function M.tls_client_options(what, opts, host, level)
  level = (level or 1) + 1
  opts = opts or {}
  local server_hostname, ca, verify, alpn = opts.server_hostname, opts.ca, opts.verify, opts.alpn
  if server_hostname == nil and type(host) == "string" then server_hostname = host end
  if server_hostname ~= nil and (type(server_hostname) ~= "string" or server_hostname == "") then
    error(format("%s: opts.server_hostname must be a non-empty string, not %s", what,
      server_hostname == "" and '""' or type(server_hostname)), level)
  end
  if ca ~= nil and (type(ca) ~= "string" or ca == "") then
    error(format("%s: opts.ca must be the path of a PEM file of CA certificates, not %s", what,
      ca == "" and '""' or type(ca)), level)
  end
  if verify == nil then verify = true end
  if type(verify) ~= "boolean" then
    error(format("%s: opts.verify must be true or false, not %s", what, type(verify)), level)
  end
  if alpn ~= nil then
    if type(alpn) ~= "table" or #alpn == 0 then
      error(what .. ': opts.alpn must be a non-empty array of protocol names ({"h2", "http/1.1"})', level)
    end
    for key, name in pairs(alpn) do
      if math_type(key) ~= "integer" or key < 1 or key > #alpn then
        error(format("%s: opts.alpn must be an array (a list of names), but it has the key %s", what,
          tostring(key)), level)
      end
      if type(name) ~= "string" or name == "" or #name > 255 or find(name, ",", 1, true) then
        error(format("%s: opts.alpn[%d] must be a protocol name of 1 to 255 bytes without a comma, not %s",
          what, key, type(name) == "string" and format("%q", name) or type(name)), level)
      end
    end
    alpn = concat(alpn, ",")
  end
  return { server_hostname = server_hostname, ca = ca, verify = verify, alpn = alpn }
end

local CLIENT_TLS = { server_hostname = true, ca = true, verify = true, alpn = true }
local SERVER_TLS = { cert = true, key = true }

-- writer:start_tls's opts checked for the side the writer is on: a client
-- (writer.tls_client = {host=}, set by open_connection) or a server.
-- Returns them as transport:start_tls takes them.
local function start_tls_options(w, opts)
  local what = "writer:start_tls()"
  if opts ~= nil and type(opts) ~= "table" then error(what .. ": opts must be a table, not " .. type(opts), 3) end
  local client = w.tls_client
  local known = client and CLIENT_TLS or SERVER_TLS
  for key in pairs(opts or {}) do
    if not known[key] then
      error(format("%s: unknown option %s for the %s side (%s)", what, tostring(key),
        client and "client" or "server", client and "server_hostname, ca, verify, alpn" or "cert, key"), 3)
    end
  end
  if client then return M.tls_client_options(what, opts, client.host, 3) end
  if opts == nil then return nil end
  for name in pairs(SERVER_TLS) do
    if opts[name] ~= nil and (type(opts[name]) ~= "string" or opts[name] == "") then
      error(format("%s: opts.%s must be the path of a PEM file, not %s", what, name,
        opts[name] == "" and '""' or type(opts[name])), 3)
    end
  end
  if (opts.cert == nil) ~= (opts.key == nil) then
    error(what .. ": give opts.cert and opts.key together (PEM files), or neither for --tls-cert and --tls-key", 3)
  end
  return opts
end

--- Start TLS on the connection and suspend until the handshake is done
-- (asyncio's StreamWriter.start_tls). Server side (a handler's writer):
-- opts nil for the --tls-cert/--tls-key pairs, or {cert=, key=}. Client
-- side (open_connection's writer): {server_hostname=, ca=, verify=,
-- alpn=}, server_hostname defaulting to the host connected to. Raises
-- ConnectionLost (reason "TLS handshake failed: ...") when the handshake
-- fails. Bytes the reader holds go to the handshake: they came after the
-- command that asked for TLS, from a client that did not wait.
function Writer:start_tls(opts)
  local t = task.check("writer:start_tls()", 2)
  local s = self.state
  if self.closing or s.lost then refuse_write(self, "writer:start_tls()") end
  opts = start_tls_options(self, opts)
  if s.tls_waiters then error("writer:start_tls(): another task is already waiting for this handshake", 2) end
  -- Bytes the reader holds came after the command that asked for TLS (a
  -- client that did not wait for the go-ahead): they begin the handshake.
  local r = self.reader
  local early = r and r.size > 0 and take(r, r.size) or nil
  local ok, err = pcall(self.transport.start_tls, self.transport, opts, early)
  if not ok then
    -- the transport's own message ("start_tls(): ..."), as the writer's
    if type(err) == "string" then err = "writer:start_tls(): " .. err:gsub("^start_tls%(%): ", "", 1) end
    error(err, 2)
  end
  while not s.tls_done do
    if s.lost then error(connection_lost(s.lost_reason)) end
    add_waiter(s, "tls_waiters", t)
    task.suspend("writer:start_tls()")
  end
  s.tls_waiters = nil
end

-- Return 'default' in place of a nil first value, else all the values.
local function or_default(default, v, ...)
  if v == nil then return default end
  return v, ...
end

--- The transport's get_extra_info(name) ("peername" gives host, port), or
-- 'default' when it has no answer.
function Writer:get_extra_info(name, default)
  return or_default(default, self.transport:get_extra_info(name))
end

------------------------------------------------------------------------------
-- Protocol: the bridge from transport events to one reader and one writer.

local Stream = {}
Stream.__index = Stream

-- "host:port" of the peer, "[v6]:port" for IPv6, for log lines: the
-- formatter luaecho.testing's fake host uses too.
local peer_name = require("luaecho.address").peer

-- Did the peer end the connection under the handler? A read raised
-- ConnectionLost, or a write found the transport closed by the host (a
-- reset or a broken pipe) before connection_lost could say so. Asked on
-- the error path only: the write path stays as cheap as it is.
local function peer_gone(protocol, err)
  if errors.is(err, "ConnectionLost") then return true end
  return type(err) == "string" and find(err, "transport is closed", 1, true) ~= nil
    and not protocol.writer.closing and protocol.transport:is_closing()
end

-- on_error of a handler task: abort the connection first (its other tasks
-- see ConnectionLost), whatever reporting the error then does; then one log
-- line with the handler's own traceback. An error caused by the peer going
-- away is not a script error: one debug line.
local function handler_failed(t, err, tb)
  local protocol = t.protocol
  local transport = protocol.transport
  local gone = peer_gone(protocol, err)
  transport:abort()
  if gone then
    log.debug("stream handler for " .. peer_name(transport) .. " ended, the peer gone: " .. errors.tostring(err))
    return
  end
  -- The generation of the code that failed, for the host's log line and a
  -- canary's count of errors (as for a failed Protocol callback).
  local generation = transport:get_extra_info("generation")
  log.error("stream handler failed for " .. peer_name(transport) .. ": " .. errors.tostring(err) .. "\n" .. tb,
    math.type(generation) == "integer" and { generation = generation } or nil)
end

-- The body of a handler task: run the script's handler, then close the
-- writer it left open.
local function serve(handler, reader, writer)
  handler(reader, writer)
  writer:close()
end

--- A Protocol table serving each connection with handler(reader, writer)
-- in a task of its own. opts.limit: the reader buffer limit (default 64
-- KiB). With no handler, instances only build instance.reader and
-- instance.writer (for a client connection).
function M.protocol(handler, opts)
  local limit = limit_of(opts, "streams.protocol")
  return {
    handler = handler, limit = limit,
    new = function()
      return setmetatable(new_state({ handler = handler, limit = limit }), Stream)
    end,
  }
end

function Stream:connection_made(transport)
  self.transport = transport
  self.reader = M.reader(transport, { limit = self.limit })
  self.writer = M.writer(transport, self.reader, self)
  if self.handler then
    local t = task.new(serve)
    t.protocol, t.on_error = self, handler_failed
    self.task = t
    t:start(self.handler, self.reader, self.writer)
  end
end

function Stream:data_received(data)
  feed_data(self.reader, data)
end

-- Keep our side open: the handler decides when to close (asyncio's rule).
function Stream:eof_received()
  self.reader:feed_eof()
  return true
end

function Stream:pause_writing()
  self.write_paused = true
end

function Stream:resume_writing()
  self.write_paused = false
  wake_all(self, "drain_waiters")
end

-- The handshake writer:start_tls started is done: wake its task.
function Stream:tls_started()
  self.tls_done = true
  wake_all(self, "tls_waiters")
end

function Stream:connection_lost(err)
  self.lost, self.lost_reason = true, err
  local reader = self.reader
  if reader == nil then return end -- lost before connection_made: nothing waits
  if err == nil then reader:feed_eof() else reader:set_exception(err) end
  wake_all(self, "drain_waiters", connection_lost(err))
  wake_all(self, "close_waiters")
  wake_all(self, "tls_waiters")
end

return M
