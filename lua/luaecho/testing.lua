--- luaecho.testing: run a handler script inside busted, with no sockets, no
-- luaecho process and no waiting.
-- A fake connection plays the peer: it sends bytes in any chunking,
-- half-closes, resets, reads what the handler wrote (or holds it unread, so
-- flow control kicks in), and reports what the handler did with its
-- transport and which callbacks ran. A virtual clock moves only when the
-- spec says so, firing sleeps, call_later timers and idle timeouts in time
-- order. Requiring this module installs a fake `luaecho.core`, so
-- `require "luaecho"` (sleep, call_later, spawn, open_connection,
-- start_server...) works under plain busted: clients reach fake servers
-- that the spec starts. Scripts load as the host loads them (a fresh _ENV
-- over _G; a returned function served through luaecho.streams), and a
-- failing callback is logged, aborts its connection and reaches
-- connection_lost(err), as in the host.
-- @usage
--   local testing = require "luaecho.testing"
--   before_each(testing.reset)
--   it("answers each chunk", function()
--     local conn = testing.connect("lua/echo.lua")
--     conn:send("abc")
--     assert.are.equal("echo:abc", conn:output())
--   end)
local task = require "luaecho.task"
local streams = require "luaecho.streams"
local concat, remove, pack, unpack = table.concat, table.remove, table.pack, table.unpack
local format, sub, find, gmatch = string.format, string.sub, string.find, string.gmatch
local floor, ceil, huge, tointeger, math_type = math.floor, math.ceil, math.huge, math.tointeger, math.type
local traceback, getmetatable_raw, getinfo = debug.traceback, debug.getmetatable, debug.getinfo
local error, pcall, xpcall, select, setmetatable, tostring, tonumber, type, rawset, rawget =
  error, pcall, xpcall, select, setmetatable, tostring, tonumber, type, rawset, rawget
local ipairs, pairs, loadfile, io, package, G = ipairs, pairs, loadfile, io, package, _G

local M = {}

local DEFAULT_HIGH = 64 * 1024
local READ_CHUNK = 64 * 1024                     -- the host reads at most this much at a time
local DEFAULT_MAX_WRITE_BUFFER = 16 * 1024 * 1024 -- --max-write-buffer's default
local SHUTDOWN_TIMEOUT_MS = 5000                  -- --shutdown-timeout's default
local FIRST_PORT, FIRST_PEER_PORT = 40000, 50000

-- The bundled lua/ directory: where this file lives, one level up.
local BUNDLED = (getinfo(1, "S").source:match("^@(.*)/luaecho/testing%.lua$"))

------------------------------------------------------------------------------
-- The fake world: the clock, the timers, the work due now, the servers and
-- connections, what was logged and printed. testing.reset() starts afresh.

local W

local function new_world()
  return {
    now = 0,                -- virtual milliseconds
    seq = 0,                -- timers due at the same time fire in creation order
    timers = {},            -- a heap (see add_timer)
    pending = 0,            -- the script's timers not yet fired or cancelled
    queue = {}, qhead = 1, qtail = 0, -- work for "a later loop turn"
    listening = {},         -- "addr:port" -> server record
    servers = {},           -- every server record, in creation order
    conns = {},             -- connection ends not yet gone, in creation order
    logs = {}, printed = {}, errors = {},
    rates = {},             -- log_limited's state, per kind
    next_port = FIRST_PORT, next_peer_port = FIRST_PEER_PORT,
    hosts = { localhost = "127.0.0.1" },
    owner = nil,            -- whose code runs now: a connection, server or program record
    shutting_down = false,
    added_paths = {},
  }
end

W = new_world()

-- Verbose mode: also echo printed lines and log lines as they happen.
local verbose = false

-- The type name luaL_typeerror would use: __name, else the basic type.
local function typename(v)
  local mt = getmetatable_raw(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  if type(name) == "string" then return name end
  return type(v)
end

local function copy(list)
  local out = {}
  for i = 1, #list do out[i] = list[i] end
  return out
end

-- "host:port", "[v6]:port" as the host formats addresses.
local function addr_text(host, port)
  if find(host, ":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(port)
end

local LOG_PREFIX = { error = "luaecho: error: ", warn = "luaecho: warning: ", info = "luaecho: ",
  debug = "luaecho: debug: " }

-- Append 'value' to list 'field' of 'owner' and of each record above it.
local function record(owner, field, value)
  local o = owner
  while o do
    local list = o[field]
    list[#list + 1] = value
    o = o.parent
  end
  local list = W[field]
  list[#list + 1] = value
end

-- The first part of a logged message, before its traceback.
local function headline(msg)
  local i = find(msg, "\nstack traceback:", 1, true)
  return i and sub(msg, 1, i - 1) or msg
end

-- A log line from the fake host, charged to 'owner'.
local function log(owner, level, msg)
  record(owner, "logs", { level = level, message = msg })
  if level == "error" then record(owner, "errors", headline(msg)) end
  if verbose then io.stderr:write(LOG_PREFIX[level], msg, "\n") end
end

-- A limit's log line, as the host writes it: at most one a second (of
-- virtual time) per kind, saying how many were held back since.
local function log_limited(owner, kind, level, msg)
  local rate = W.rates[kind]
  if rate == nil then
    rate = { held = 0 }
    W.rates[kind] = rate
  end
  if rate.last and W.now - rate.last < 1000 then
    rate.held = rate.held + 1
    return
  end
  if rate.held > 0 then msg = format("%s (%d more like this since the last such line)", msg, rate.held) end
  rate.last, rate.held = W.now, 0
  log(owner, level, msg)
end

-- print() while handler code runs: each line goes to whoever runs.
local function capture(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  local text = concat(parts, "\t")
  for line in gmatch(text .. "\n", "([^\n]*)\n") do record(W.owner, "printed", line) end
  if verbose then io.stdout:write(text, "\n") end
end

-- An error raised by handler code, as the host reports it: the message
-- (a string, a number, __tostring, or "(error object is a T value)") and
-- the traceback.
local function catch(e)
  local msg
  local kind = type(e)
  if kind == "string" or kind == "number" then
    msg = tostring(e)
  else
    local mt = getmetatable_raw(e)
    local ts = type(mt) == "table" and rawget(mt, "__tostring")
    if ts then
      local ok, s = pcall(ts, e)
      if ok and type(s) == "string" then msg = s end
    end
    msg = msg or format("(error object is a %s value)", kind)
  end
  return { message = msg, traceback = traceback(msg, 2), value = e }
end

-- Run fn(...) as handler code of 'owner': print is captured, errors are
-- caught (see catch). Returns true, results or false, error record.
local function call_as(owner, fn, ...)
  local previous = W.owner
  local saved = rawget(G, "print")
  local swap = saved ~= capture
  if swap then rawset(G, "print", capture) end
  W.owner = owner
  local results = pack(xpcall(fn, catch, ...))
  W.owner = previous
  if swap then rawset(G, "print", saved) end
  return unpack(results, 1, results.n)
end

------------------------------------------------------------------------------
-- The loop: work due now, and timers on the virtual clock.

local function post(fn)
  local w = W
  w.qtail = w.qtail + 1
  w.queue[w.qtail] = fn
end

-- Timers wait in a binary heap ordered by due time, then by creation:
-- timers due at the same time fire in the order they were set. A
-- cancelled timer stays in the heap, marked done, until it comes up.
local function earlier(a, b)
  return a.due < b.due or (a.due == b.due and a.seq < b.seq)
end

local function heap_push(heap, t)
  local i = #heap + 1
  heap[i] = t
  while i > 1 do
    local parent = i // 2
    if not earlier(heap[i], heap[parent]) then break end
    heap[i], heap[parent] = heap[parent], heap[i]
    i = parent
  end
end

local function heap_pop(heap)
  local top, n = heap[1], #heap
  local last = heap[n]
  heap[n] = nil
  n = n - 1
  if n == 0 then return top end
  heap[1] = last
  local i = 1
  while true do
    local smallest, l, r = i, 2 * i, 2 * i + 1
    if l <= n and earlier(heap[l], heap[smallest]) then smallest = l end
    if r <= n and earlier(heap[r], heap[smallest]) then smallest = r end
    if smallest == i then break end
    heap[i], heap[smallest] = heap[smallest], heap[i]
    i = smallest
  end
  return top
end

-- Add a timer due at virtual millisecond 'due'; returns its record.
-- Internal timers (idle timeouts, the shutdown timeout) are the host's.
local function add_timer(due, fn, owner, internal)
  W.seq = W.seq + 1
  local t = { due = due, seq = W.seq, fn = fn, owner = owner, internal = internal }
  heap_push(W.timers, t)
  if not internal then W.pending = W.pending + 1 end
  return t
end

-- The timer was cancelled, or is firing: it will not fire (again).
local function retire(t)
  t.done = true
  if not t.internal then W.pending = W.pending - 1 end
end

-- The earliest pending timer due at or before 'limit', or nil.
local function next_timer(limit)
  local heap = W.timers
  while heap[1] and heap[1].done do heap_pop(heap) end
  local t = heap[1]
  if t and t.due <= limit then return t end
  return nil
end

-- Fire the earliest timer (next_timer's answer).
local function fire(t)
  heap_pop(W.timers)
  retire(t)
  if t.internal then return t.fn() end
  local ok, err = call_as(t.owner, t.fn)
  if not ok then log(t.owner, "error", "timer callback failed: " .. err.traceback) end
end

-- Run everything due now, without moving the clock: queued work first,
-- then timers due by now, until nothing is left. A handler that keeps
-- scheduling work for now would hang the spec: past a budget, raise.
local NEVER_SETTLES = "luaecho.testing: the loop never settles: something keeps scheduling work for now"

local function run_due()
  local work, timers = 1000000, 10000
  while true do
    local w = W
    if w.qhead <= w.qtail then
      local fn = w.queue[w.qhead]
      w.queue[w.qhead] = nil
      w.qhead = w.qhead + 1
      fn()
      work = work - 1
      if work == 0 then error(NEVER_SETTLES, 0) end
    else
      local t = next_timer(w.now)
      if t == nil then return end
      fire(t)
      timers = timers - 1
      if timers == 0 then error(NEVER_SETTLES, 0) end
    end
  end
end

-- An error out of run_due is a bug in this module (handler code runs
-- protected): keep its traceback.
local function internal(e)
  if type(e) ~= "string" or find(e, "^luaecho%.testing: ") then return e end
  return traceback(e, 2)
end

local settling = false

local function settle()
  if settling then return end
  settling = true
  local ok, err = xpcall(run_due, internal)
  settling = false
  if not ok then error(err, 0) end
end

------------------------------------------------------------------------------
-- Connection ends. A connection is two ends: the handler's (a record C
-- with its transport) and a remote one: the spec's fake peer (a Conn), or,
-- for luaecho.open_connection to a fake server, another handler end.

local Transport = {}
local TransportMeta = {
  __index = Transport,
  __name = "luaecho.transport",
  __newindex = function()
    error("attempt to index a userdata value (a luaecho.transport holds no fields of its own)", 2)
  end,
}

local ends = setmetatable({}, { __mode = "k" })   -- transport -> its end record
local metas = setmetatable({}, { __mode = "k" })  -- Protocol -> the metatable of its instances

local dispatch, abort, close_end, deliver, deliver_eof, lose, check_finished

local function peer_text(C)
  return addr_text(C.peer[1], C.peer[2])
end

local function new_end(fields)
  local C = {
    state = "open",          -- "open", "closing" (close/abort called), "gone" (connection_lost ran)
    want_reading = true, eof_received = false, eof_written = false, eof_sent = false,
    high = DEFAULT_HIGH, low = DEFAULT_HIGH // 4, writing_paused = false,
    queue = {}, buffered = 0, -- written, not yet taken by the peer
    inbox = {},               -- input that arrived while reading was paused
    events = {}, errors = {}, printed = {}, logs = {},
    last_active = W.now, max_write_buffer = DEFAULT_MAX_WRITE_BUFFER,
  }
  for k, v in pairs(fields) do C[k] = v end
  local t = setmetatable({}, TransportMeta)
  ends[t] = C
  C.transport = t
  W.conns[#W.conns + 1] = C
  return C
end

-- Deliver bytes to the remote end. Between two handler ends, what one
-- writes in a turn reaches the other as one chunk on the next (up to
-- 64 KiB a chunk), as a TCP peer's quick successive writes usually do.
local function to_remote(C, data)
  local R = C.remote
  if R.is_peer then
    R.out[#R.out + 1] = data
    return
  end
  if C.transit then
    C.transit[#C.transit + 1] = data
    return
  end
  C.transit = { data }
  post(function()
    local all = concat(C.transit)
    C.transit = nil
    for i = 1, #all, READ_CHUNK do deliver(R, sub(all, i, i + READ_CHUNK - 1)) end
  end)
end

-- Our side has finished sending: the remote end reads EOF.
local function send_eof(C)
  if C.eof_sent then return end
  C.eof_sent = true
  local R = C.remote
  if not R.is_peer then
    post(function() deliver_eof(R) end)
  end
end

-- Call method 'name' of the end's protocol instance as the host does:
-- skipped when missing; an error is logged with the peer and the
-- traceback, and aborts the connection. Returns the result's truth.
local function invoke(C, name, ...)
  local inst = C.instance
  local f = inst[name]
  if f == nil then return false end
  C.events[#C.events + 1] = name
  return f(inst, ...) and true or false
end

local function fail(C, what, err)
  log(C, "error", what .. " failed for " .. peer_text(C) .. ": " .. err.traceback)
  abort(C, err.message)
end

function dispatch(C, name, ...)
  if C.instance == nil or C.released then return false end
  local ok, result = call_as(C, invoke, C, name, ...)
  if ok then return result end
  fail(C, name, result)
  return false
end

-- Flow control marks, as the host checks them.
local function check_high(C)
  if not C.writing_paused and not C.handle_closing and C.buffered > C.high then
    C.writing_paused = true
    dispatch(C, "pause_writing")
  end
end

local function check_low(C)
  if C.writing_paused and not C.handle_closing and C.buffered <= C.low then
    C.writing_paused = false
    dispatch(C, "resume_writing")
  end
end

local function check_cap(C)
  local cap = C.max_write_buffer
  if cap == 0 or C.buffered <= cap or C.handle_closing then return end
  local reason = format("write buffer over --max-write-buffer (%d bytes queued, cap %d): the peer does not read",
    C.buffered, cap)
  log_limited(C, "write_buffer", "warn", "aborting " .. peer_text(C) .. ": " .. reason)
  abort(C, reason)
end

-- connection_lost, once, then the end lets go of its instance.
function lose(C)
  if C.released then return end
  dispatch(C, "connection_lost", C.error)
  C.state, C.released = "gone", true
  local conns = W.conns
  for i = 1, #conns do
    if conns[i] == C then
      remove(conns, i)
      break
    end
  end
  local S = C.server
  if S then
    S.connections = S.connections - 1
    check_finished(S)
  end
end

-- Close now: unsent output dropped; connection_lost(err) on a later turn.
function abort(C, err)
  if C.handle_closing then return end
  if err ~= nil and C.error == nil then C.error = err end
  C.state, C.handle_closing, C.aborted = "closing", true, true
  C.queue, C.buffered, C.inbox = {}, 0, {}
  send_eof(C)
  post(function() lose(C) end)
end

-- The last queued byte is out after close(): finish closing.
local function finish_close(C)
  C.handle_closing = true
  send_eof(C)
  post(function() lose(C) end)
end

function close_end(C)
  if C.state ~= "open" then return end
  C.state, C.inbox = "closing", {}
  if C.reset_pending then -- the half-close finds the connection already reset
    C.error = C.error or "socket is not connected"
    C.handle_closing = true
    post(function() lose(C) end)
  elseif C.buffered == 0 then
    finish_close(C)
  end
end

local function write_end(C, data)
  if data == "" then return end
  if C.reset_pending then return abort(C, "connection reset by peer") end
  if C.buffered > 0 or C.hold then
    C.queue[#C.queue + 1] = data
    C.buffered = C.buffered + #data
    check_high(C)
    check_cap(C)
  else
    C.last_active = W.now
    to_remote(C, data)
  end
end

-- The peer reads up to 'n' queued bytes (all when nil).
local function drain_end(C, n)
  if n == nil or n > C.buffered then n = C.buffered end
  local R = C.remote
  while n > 0 do
    local head = C.queue[1]
    if #head <= n then
      remove(C.queue, 1)
      R.out[#R.out + 1] = head
      n, C.buffered = n - #head, C.buffered - #head
    else
      C.queue[1] = sub(head, n + 1)
      R.out[#R.out + 1] = sub(head, 1, n)
      C.buffered, n = C.buffered - n, 0
    end
    C.last_active = W.now
  end
  check_low(C)
  if C.buffered == 0 then
    if C.state == "closing" and not C.handle_closing then finish_close(C) end
    if C.eof_written and C.state == "open" then send_eof(C) end
  end
end

local function reading(C)
  return C.state == "open" and C.want_reading and not C.eof_received
end

-- The peer's EOF reaches the protocol: a falsy eof_received closes.
local function receive_eof(C)
  C.eof_received = true
  if not dispatch(C, "eof_received") then close_end(C) end
end

-- Input arrives: delivered at once while reading, else kept in order.
function deliver(C, data)
  if C.state ~= "open" or C.eof_received then return end
  if reading(C) and C.inbox[1] == nil then
    C.last_active = W.now
    dispatch(C, "data_received", data)
  else
    C.inbox[#C.inbox + 1] = data
  end
end

function deliver_eof(C)
  if C.state ~= "open" or C.eof_received then return end
  if reading(C) and C.inbox[1] == nil then
    receive_eof(C)
  else
    C.inbox[#C.inbox + 1] = true
  end
end

-- The peer resets. Noticed at once while reading or writing; while
-- reading is paused, when reading resumes or the handler next writes.
local function deliver_reset(C)
  if C.state == "gone" or C.handle_closing then return end
  if C.state == "closing" or C.buffered > 0 or (reading(C) and C.inbox[1] == nil) then
    return abort(C, "connection reset by peer")
  end
  C.reset_pending = true
  C.inbox[#C.inbox + 1] = false
end

-- Reading resumed: what arrived meanwhile comes in on a later turn.
local function pump(C)
  C.pump_posted = false
  while reading(C) and C.inbox[1] ~= nil do
    local item = remove(C.inbox, 1)
    if item == true then
      receive_eof(C)
    elseif item == false then
      abort(C, "connection reset by peer")
    else
      C.last_active = W.now
      dispatch(C, "data_received", item)
    end
  end
end

local function schedule_pump(C)
  if C.pump_posted or C.inbox[1] == nil then return end
  C.pump_posted = true
  post(function() pump(C) end)
end

-- Idle timeout: no traffic either way for C.idle_ms aborts the connection.
local function arm_idle(C)
  add_timer(C.last_active + C.idle_ms, function()
    if C.state == "gone" or C.handle_closing then return end
    if W.now - C.last_active >= C.idle_ms then
      local reason = format("idle timeout: no traffic for %g s (--idle-timeout)", C.idle_ms / 1000)
      log_limited(C, "idle", "info", "closing " .. peer_text(C) .. ": " .. reason)
      abort(C, reason)
    else
      arm_idle(C)
    end
  end, nil, true)
end

-- The instance for a new connection: Protocol.new() or a table whose
-- metatable's __index is the Protocol (one metatable per Protocol).
local function instantiate(Protocol)
  local new = Protocol.new
  if new ~= nil then
    local inst = new()
    if type(inst) ~= "table" then error(format("Protocol.new() must return a table, not %s", type(inst)), 0) end
    return inst
  end
  local mt = metas[Protocol]
  if mt == nil then
    mt = { __index = Protocol }
    metas[Protocol] = mt
  end
  return setmetatable({}, mt)
end

-- Make the instance and call connection_made, as the host does on accept
-- and on connect.
local function open_end(C, Protocol)
  if C.idle_ms and C.idle_ms > 0 then arm_idle(C) end
  local ok, inst = call_as(C, instantiate, Protocol)
  if not ok then return fail(C, "creating the protocol instance", inst) end
  C.instance = inst
  dispatch(C, "connection_made", C.transport)
end

------------------------------------------------------------------------------
-- The transport, as the handler sees it: the host's methods, the host's
-- errors. Checks raise at level 3: call them straight from a method.

local function check_end(self, method)
  local C = ends[self]
  if C == nil then
    error(format("bad argument #1 to '%s' (luaecho.transport expected, got %s)", method, typename(self)), 3)
  end
  return C
end

local function check_writable(C, method)
  if C.state ~= "open" then error(format("transport:%s(): transport is closed", method), 3) end
  if C.eof_written then error(format("transport:%s(): cannot write after write_eof()", method), 3) end
end

-- An optional integer argument as luaL_optinteger takes it; nil when absent.
local function opt_integer(v, i, method)
  if v == nil then return nil end
  local n = tonumber(v)
  if n == nil or type(v) ~= "number" and type(v) ~= "string" then
    error(format("bad argument #%d to '%s' (number expected, got %s)", i, method, typename(v)), 3)
  end
  local int = tointeger(n)
  if int == nil then
    error(format("bad argument #%d to '%s' (number has no integer representation)", i, method), 3)
  end
  return int
end

function Transport.write(self, ...)
  local C = check_end(self, "write")
  check_writable(C, "write")
  local data = ...
  local kind = type(data)
  if kind == "number" then
    data = tostring(data)
  elseif kind ~= "string" then
    error(format("bad argument #1 to 'write' (string expected, got %s)",
      select("#", ...) == 0 and "no value" or typename(data)), 2)
  end
  write_end(C, data)
end

function Transport.writelines(self, list)
  local C = check_end(self, "writelines")
  check_writable(C, "writelines")
  if type(list) ~= "table" then
    error(format("bad argument #1 to 'writelines' (table expected, got %s)", typename(list)), 2)
  end
  local parts = {}
  for i = 1, #list do
    local item = list[i]
    if type(item) ~= "string" then
      error(format("transport:writelines(): item %d is a %s, not a string", i, type(item)), 2)
    end
    parts[i] = item
  end
  write_end(C, concat(parts))
end

function Transport.write_eof(self)
  local C = check_end(self, "write_eof")
  if C.state ~= "open" then error("transport:write_eof(): transport is closed", 2) end
  if C.eof_written then return end
  C.eof_written = true
  if C.buffered == 0 then send_eof(C) end
end

function Transport.can_write_eof(self)
  check_end(self, "can_write_eof")
  return true
end

function Transport.close(self)
  close_end(check_end(self, "close"))
end

function Transport.abort(self)
  local C = check_end(self, "abort")
  if C.state ~= "gone" then abort(C, nil) end
end

function Transport.is_closing(self)
  return check_end(self, "is_closing").state ~= "open"
end

-- As the README says: peername answers for the transport's whole life,
-- sockname until close() or abort(), and "server", "worker" and
-- "generation" until connection_lost has returned (simple_echo.lua closes
-- its server from there).
function Transport.get_extra_info(self, name, default)
  local C = check_end(self, "get_extra_info")
  if type(name) ~= "string" and type(name) ~= "number" then
    error(format("bad argument #1 to 'get_extra_info' (string expected, got %s)", typename(name)), 2)
  end
  name = tostring(name)
  if name == "peername" then return C.peer[1], C.peer[2] end
  if C.state ~= "gone" then
    if name == "server" and C.server then return C.server.object end
    if name == "worker" then return 1 end
    if name == "generation" then return 1 end
  end
  if C.state == "open" and name == "sockname" then return C.sock[1], C.sock[2] end
  return default
end

function Transport.pause_reading(self)
  local C = check_end(self, "pause_reading")
  if C.state == "open" then C.want_reading = false end
end

function Transport.resume_reading(self)
  local C = check_end(self, "resume_reading")
  if C.state ~= "open" then return end
  C.want_reading = true
  schedule_pump(C)
end

function Transport.is_reading(self)
  return reading(check_end(self, "is_reading"))
end

function Transport.get_write_buffer_size(self)
  local C = check_end(self, "get_write_buffer_size")
  -- close() still sends what is queued; abort() dropped it.
  return (C.state == "open" or (C.state == "closing" and not C.aborted)) and C.buffered or 0
end

-- A flow-control mark: nil (-1), or 0..MAX_WATER (the host's marks are 32-bit).
local MAX_WATER = 4294967295
local function check_mark(mark, name)
  if mark == nil then return -1 end
  if mark < 0 or mark > MAX_WATER then
    error(format("transport:set_write_buffer_limits(): %s must be between 0 and %d bytes, not %d",
      name, MAX_WATER, mark), 3)
  end
  return mark
end

function Transport.set_write_buffer_limits(self, high, low)
  local C = check_end(self, "set_write_buffer_limits")
  high = check_mark(opt_integer(high, 1, "set_write_buffer_limits"), "high")
  low = check_mark(opt_integer(low, 2, "set_write_buffer_limits"), "low")
  if high < 0 then high = low < 0 and DEFAULT_HIGH or low > MAX_WATER // 4 and MAX_WATER or 4 * low end
  if low < 0 then low = high // 4 end
  if low > high then
    error(format("transport:set_write_buffer_limits(): high (%d) must be >= low (%d) >= 0", high, low), 2)
  end
  if C.state ~= "open" then return end
  C.high, C.low = high, low
  check_high(C)
end

function Transport.get_write_buffer_limits(self)
  local C = check_end(self, "get_write_buffer_limits")
  return C.low, C.high
end

function TransportMeta.__tostring(self)
  local C = ends[self]
  if C.state == "gone" then return "luaecho.transport (closed)" end
  return format("luaecho.transport (%s%s)", peer_text(C), C.state == "closing" and ", closing" or "")
end

------------------------------------------------------------------------------
-- Servers. The handler sees a server object (close, sockname, is_serving,
-- and wait_closed once `luaecho` is loaded); the spec holds a Server.

local server_methods = {}
local ServerObjectMeta = { __index = server_methods, __name = "luaecho.server" }
local server_records = setmetatable({}, { __mode = "k" }) -- object -> record

local function check_server(self, method)
  local S = server_records[self]
  if S == nil then
    error(format("bad argument #1 to '%s' (luaecho.server expected, got %s)", method, typename(self)), 3)
  end
  return S
end

local function finished(S)
  return S.closed and S.connections == 0
end

function check_finished(S)
  if not finished(S) or S.waiters[1] == nil then return end
  local waiters = S.waiters
  S.waiters = {}
  for _, fn in ipairs(waiters) do
    local ok, err = call_as(S.parent, fn)
    if not ok then log(S.parent, "error", "wait_closed failed: " .. err.traceback) end
  end
end

local function close_server(S)
  if not S.closed then
    S.closed = true
    if W.listening[S.key] == S then W.listening[S.key] = nil end
  end
  check_finished(S)
end

function server_methods.close(self)
  close_server(check_server(self, "close"))
end

function server_methods.sockname(self)
  local S = check_server(self, "sockname")
  if S.closed then return nil end
  return S.host, S.port
end

function server_methods.is_serving(self)
  return not check_server(self, "is_serving").closed
end

function ServerObjectMeta.__tostring(self)
  local S = server_records[self]
  if S.closed then return "luaecho.server (closed)" end
  return format("luaecho.server (%s)", addr_text(S.host, S.port))
end

-- The address a host name stands for, or nil. IP literals stand for
-- themselves; "localhost" for 127.0.0.1; testing.add_host adds names.
local function resolve(host)
  if W.hosts[host] then return W.hosts[host] end
  if host:match("^%d+%.%d+%.%d+%.%d+$") or find(host, ":", 1, true) then return host end
  return nil
end

-- The server listening where 'addr':'port' reaches, or nil.
local function listener(addr, port)
  local l = W.listening
  return l[addr_text(addr, port)]
    or (find(addr, ":", 1, true) == nil and l[addr_text("0.0.0.0", port)])
    or l[addr_text("::", port)]
end

local function new_server(Protocol, addr, port, opts, parent, script)
  if port == 0 then
    repeat
      port = W.next_port
      W.next_port = W.next_port + 1
    until W.listening[addr_text(addr, port)] == nil
  end
  local key = addr_text(addr, port)
  if W.listening[key] then return nil, "cannot listen on " .. key .. ": address already in use" end
  local S = {
    protocol = Protocol, host = addr, port = port, key = key, closed = false, connections = 0,
    waiters = {}, opts = opts or {}, parent = parent, script = script,
    printed = {}, errors = {}, logs = {},
  }
  S.object = setmetatable({}, ServerObjectMeta)
  server_records[S.object] = S
  W.listening[key] = S
  W.servers[#W.servers + 1] = S
  return S
end

local function next_peer_port()
  local p = W.next_peer_port
  W.next_peer_port = p + 1
  return p
end

-- A new connection accepted by server S from 'peer' ({host, port}).
local function accept(S, peer, remote)
  S.connections = S.connections + 1
  local idle = S.opts.idle_timeout
  local C = new_end({
    server = S, parent = S, peer = peer, sock = { S.host, S.port }, remote = remote,
    idle_ms = idle and floor(idle * 1000) or nil,
    max_write_buffer = S.opts.max_write_buffer or DEFAULT_MAX_WRITE_BUFFER,
  })
  return C
end

------------------------------------------------------------------------------
-- Loading scripts the host's way.

local function script_path(path)
  local f = io.open(path, "r")
  if f then
    f:close()
    return path
  end
  if sub(path, 1, 1) ~= "/" and BUNDLED then
    local bundled = BUNDLED .. "/" .. path
    f = io.open(bundled, "r")
    if f then
      f:close()
      return bundled
    end
  end
  return path
end

-- Modules next to the script come first in package.path, as in the host.
local function add_script_dir(path)
  local dir = path:match("^(.*)/[^/]*$") or "."
  local prefix = dir .. "/?.lua;" .. dir .. "/?/init.lua;"
  if sub(package.path, 1, #prefix) == prefix then return end
  package.path = prefix .. package.path
  W.added_paths[#W.added_paths + 1] = prefix
end

-- Load and run a script file with a fresh _ENV over _G; returns what it
-- returned. Raises "cannot load script: ..." as the host reports it.
local function run_file(path, env, level, owner, ...)
  local chunk, err = loadfile(path, "t", env)
  if not chunk then error("cannot load script: " .. err, level + 1) end
  add_script_dir(path)
  local ok, result = call_as(owner, chunk, ...)
  if not ok then error("cannot load script: " .. result.message, level + 1) end
  return result
end

local function fresh_env(fields)
  local env = fields or {}
  return setmetatable(env, { __index = G })
end

-- A Protocol table from a path, a Protocol table or a streams function.
local function protocol_of(script, level, owner)
  local kind = type(script)
  if kind == "table" then return script end
  if kind == "function" then return streams.protocol(script) end
  if kind ~= "string" then
    error("luaecho.testing: a script is a path, a Protocol table or a streams function(reader, writer), not a "
      .. kind, level + 1)
  end
  local path = script_path(script)
  local result = run_file(path, fresh_env(), level + 1, owner)
  if type(result) == "table" then return result, path end
  if type(result) == "function" then return streams.protocol(result), path end
  error(format("cannot load script: %s: the script must return a Protocol table or a streams handler "
    .. "function(reader, writer), not %s", path, type(result)), level + 1)
end

--- The Protocol table the host would make of 'script' (a path, a Protocol
-- table, or a streams function, which luaecho.streams wraps).
function M.load(script)
  return (protocol_of(script, 2, nil))
end

------------------------------------------------------------------------------
-- The fake luaecho.core, installed in package.loaded so that the luaecho
-- module and luaecho.log work under plain busted.

local core = { server_methods = server_methods }

local LEVELS = { error = true, warn = true, info = true, debug = true }

function core.log(level, message)
  if not LEVELS[level] then
    error(format("bad argument #1 to 'log' (invalid option '%s')", tostring(level)), 2)
  end
  if type(message) ~= "string" and type(message) ~= "number" then
    error(format("bad argument #2 to 'log' (string expected, got %s)", typename(message)), 2)
  end
  log(W.owner, level, tostring(message))
end

function core.now()
  return W.now / 1000
end

local Timer = {}
local TimerMeta = { __index = Timer, __name = "luaecho.timer" }
local timer_records = setmetatable({}, { __mode = "k" })

local function check_timer(self, method)
  local t = timer_records[self]
  if t == nil then
    error(format("bad argument #1 to '%s' (luaecho.timer expected, got %s)", method, typename(self)), 3)
  end
  return t
end

function Timer.cancel(self)
  local t = check_timer(self, "cancel")
  if not t.done then
    retire(t)
    t.cancelled = true
  end
end

function Timer.cancelled(self)
  return check_timer(self, "cancelled").cancelled == true
end

function core.timer(seconds, fn)
  local s = tonumber(seconds)
  if s == nil or (type(seconds) ~= "number" and type(seconds) ~= "string") then
    error(format("bad argument #1 to 'timer' (number expected, got %s)", typename(seconds)), 2)
  end
  if type(fn) ~= "function" then
    error(format("bad argument #2 to 'timer' (function expected, got %s)", typename(fn)), 2)
  end
  if not (s >= 0 and s < 1e9) then error("bad argument #1 to 'timer' (seconds must be a number >= 0)", 2) end
  local ms = ceil(s * 1000 - 1e-6)
  local t = add_timer(W.now + (ms > 0 and ms or 0), fn, W.owner, false)
  local handle = setmetatable({}, TimerMeta)
  timer_records[handle] = t
  return handle
end

-- luaL_checkinteger's errors, raised at level 4 (for check_address_args).
local function check_integer(v, i, fname)
  local n = (type(v) == "number" or type(v) == "string") and tonumber(v) or nil
  if n == nil then error(format("bad argument #%d to '%s' (number expected, got %s)", i, fname, typename(v)), 4) end
  local int = tointeger(n)
  if int == nil then error(format("bad argument #%d to '%s' (number has no integer representation)", i, fname), 4) end
  return int
end

local function check_address_args(fname, host, port, protocol, callback, min_port)
  if type(host) ~= "string" and type(host) ~= "number" then
    error(format("bad argument #1 to '%s' (string expected, got %s)", fname, typename(host)), 3)
  end
  port = check_integer(port, 2, fname)
  if port < min_port or port > 65535 then
    error(format("bad argument #2 to '%s' (port must be %d to 65535)", fname, min_port), 3)
  end
  if type(protocol) ~= "table" then
    error(format("bad argument #3 to '%s' (table expected, got %s)", fname, typename(protocol)), 3)
  end
  if type(callback) ~= "function" then
    error(format("bad argument #4 to '%s' (function expected, got %s)", fname, typename(callback)), 3)
  end
  return tostring(host), port
end

-- Call a host-to-script callback the way the host does: protected, a
-- failure logged as "<what> failed: <traceback>".
local function callback(owner, what, fn, ...)
  local ok, err = call_as(owner, fn, ...)
  if not ok then log(owner, "error", what .. " failed: " .. err.traceback) end
end

-- Connect a client end running 'Protocol' to the server listening at
-- addr:port. Returns the client end, or nil and why.
local function connect_pair(owner, host, port, Protocol)
  local addr = resolve(host)
  if addr == nil then return nil, format("cannot resolve %s port %d: unknown node or service", host, port) end
  local S = listener(addr, port)
  if S == nil or W.shutting_down then
    return nil, format("cannot connect to %s port %d: connection refused", host, port)
  end
  local client_addr = find(addr, ":", 1, true) and "::1" or "127.0.0.1"
  local A = new_end({ peer = { addr, port }, parent = owner })
  local B = accept(S, { client_addr, next_peer_port() }, A)
  A.sock, A.remote = { B.peer[1], B.peer[2] }, B
  open_end(B, S.protocol)
  open_end(A, Protocol)
  return A
end

function core.connect(host, port, Protocol, cb)
  host, port = check_address_args("connect", host, port, Protocol, cb, 1)
  local owner = W.owner
  post(function()
    local A, err = connect_pair(owner, host, port, Protocol)
    if A == nil then return callback(owner, "connect callback", cb, nil, err) end
    if A.instance == nil then return callback(owner, "connect callback", cb, nil, nil) end -- as the host does
    callback(owner, "connect callback", cb, A.transport, A.instance)
  end)
end

function core.listen(host, port, Protocol, cb)
  host, port = check_address_args("listen", host, port, Protocol, cb, 0)
  local owner = W.owner
  post(function()
    local addr = resolve(host)
    if addr == nil then
      return callback(owner, "listen callback", cb, nil,
        format("cannot resolve %s port %d: unknown node or service", host, port))
    end
    local S, err = new_server(Protocol, addr, port, {}, owner, nil)
    if S == nil then return callback(owner, "listen callback", cb, nil, err) end
    callback(owner, "listen callback", cb, S.object, nil)
  end)
end

function core.on_server_finished(server, fn)
  local S = check_server(server, "on_server_finished")
  if type(fn) ~= "function" then
    error(format("bad argument #2 to 'on_server_finished' (function expected, got %s)", typename(fn)), 2)
  end
  if finished(S) then
    fn()
    return
  end
  S.waiters[#S.waiters + 1] = fn
end

-- What SIGTERM does: stop accepting, close every connection (flushing),
-- abort what is still open after the shutdown timeout.
local function shutdown(why)
  if W.shutting_down then return end
  W.shutting_down = true
  log(nil, "info", "shutting down (" .. why .. ")")
  for _, S in ipairs(copy(W.servers)) do close_server(S) end
  for _, C in ipairs(copy(W.conns)) do close_end(C) end
  add_timer(W.now + SHUTDOWN_TIMEOUT_MS, function()
    local left = copy(W.conns)
    if left[1] == nil then return end
    log(nil, "warn", format("shutdown timeout: aborting %d connection(s) that did not close in time", #left))
    for _, C in ipairs(left) do abort(C, "aborted: shutdown timeout") end
  end, nil, true)
end

function core.shutdown(why)
  if type(why) ~= "string" and type(why) ~= "number" then
    error(format("bad argument #1 to 'shutdown' (string expected, got %s)", typename(why)), 2)
  end
  shutdown(tostring(why))
end

do
  local present = package.loaded["luaecho.core"]
  if present ~= nil and not rawget(present, "_testing") then
    error("luaecho.testing runs under plain busted, not inside luaecho (luaecho.core is the host's)", 2)
  end
  core._testing = true
  package.loaded["luaecho.core"] = core
end

------------------------------------------------------------------------------
-- The spec's side of a connection: a fake peer.

local Conn = {}
Conn.__index = Conn

local function check_control(self, what)
  if self.gave_eof then error(format("luaecho.testing: %s after eof(): the peer has half-closed", what), 3) end
  if self.gave_reset then error(format("luaecho.testing: %s after reset()", what), 3) end
end

--- Bytes from the peer, as data_received calls of at most 'chunk' bytes
-- each (default and maximum 65536, what the host reads at once; 1 feeds
-- a handler one byte at a time). Dropped if the handler has closed.
function Conn:send(data, chunk)
  check_control(self, "send()")
  if type(data) ~= "string" then error("luaecho.testing: send() takes a string, not a " .. type(data), 2) end
  chunk = chunk or READ_CHUNK
  if math_type(chunk) ~= "integer" or chunk < 1 then
    error("luaecho.testing: send()'s chunk size must be a positive integer", 2)
  end
  if chunk > READ_CHUNK then chunk = READ_CHUNK end
  settle()
  for i = 1, #data, chunk do
    deliver(self.C, sub(data, i, i + chunk - 1))
    settle()
  end
end

--- The peer half-closes: eof_received, when reading (at once, or when the
-- handler resumes reading).
function Conn:eof()
  check_control(self, "eof()")
  self.gave_eof = true
  settle()
  deliver_eof(self.C)
  settle()
end

--- The peer resets the connection: connection_lost("connection reset by
-- peer"). While the handler has paused reading, it notices when it
-- resumes reading or next writes.
function Conn:reset()
  if self.gave_reset then error("luaecho.testing: reset() after reset()", 2) end
  self.gave_reset = true
  settle()
  deliver_reset(self.C)
  settle()
end

--- What the handler wrote and the peer has read since the last call.
function Conn:output()
  settle()
  local out = concat(self.out)
  self.out = {}
  return out
end

--- The peer stops reading: what the handler writes from now on waits in
-- its transport's write buffer (get_write_buffer_size(), pause_writing()
-- above the high mark).
function Conn:hold_output()
  settle()
  self.C.hold = true
end

--- The peer reads 'n' bytes (default: all) of what waits in the write
-- buffer; resume_writing() once it is down to the low mark.
function Conn:drain(n)
  if n ~= nil and (math_type(n) ~= "integer" or n < 0) then
    error("luaecho.testing: drain() takes a byte count", 2)
  end
  settle()
  if self.C.state ~= "gone" and not self.C.handle_closing then drain_end(self.C, n) end
  settle()
end

--- The peer reads everything waiting, and reads as it comes from now on.
function Conn:release_output()
  settle()
  local C = self.C
  C.hold = false
  if C.state ~= "gone" and not C.handle_closing then drain_end(C, nil) end
  settle()
end

--- Bytes waiting in the handler's write buffer (the peer has not read them).
function Conn:buffered()
  return self.C.buffered
end

--- True once the handler's side has finished sending (write_eof, close,
-- abort, an error) and output() has nothing more to give.
function Conn:at_eof()
  settle()
  return self.C.eof_sent and self.out[1] == nil
end

--- transport:is_closing(): the handler closed or aborted, or the connection ended.
function Conn:closed()
  settle()
  return self.C.state ~= "open"
end

--- transport:is_reading(): false while paused, closing, or after EOF.
function Conn:reading()
  settle()
  return reading(self.C)
end

--- True once the connection was aborted (transport:abort(), a failed
-- callback, a reset, a limit) rather than closed with its output flushed.
function Conn:aborted()
  settle()
  return self.C.aborted == true
end

--- Bytes the peer sent that the handler has not received yet: they wait
-- while it has paused reading.
function Conn:held()
  settle()
  local n = 0
  for _, item in ipairs(self.C.inbox) do
    if type(item) == "string" then n = n + #item end
  end
  return n
end

--- True once the handler called transport:write_eof().
function Conn:wrote_eof()
  return self.C.eof_written
end

--- True once connection_lost has run (the connection has ended), and the
-- error it was given.
function Conn:lost()
  settle()
  if self.C.state ~= "gone" then return false end
  return true, self.C.error
end

--- The names of the protocol callbacks called so far, in order (only those
-- the handler defines).
function Conn:events()
  settle()
  return copy(self.C.events)
end

--- Errors logged for this connection so far: a failed callback
-- ("data_received failed for 127.0.0.1:50000: ...: boom"), a failed
-- streams handler, a failed task; without their tracebacks.
function Conn:errors()
  settle()
  return copy(self.C.errors)
end

--- Lines printed by the handler while serving this connection.
function Conn:printed()
  settle()
  return copy(self.C.printed)
end

--- The protocol instance serving the connection.
function Conn:protocol()
  return self.C.instance
end

--- The transport the handler was given.
function Conn:transport()
  return self.C.transport
end

--- The peer's address, as the handler sees it (get_extra_info("peername")).
function Conn:address()
  return self.C.peer[1], self.C.peer[2]
end

--- The Server this connection was accepted by.
function Conn:server()
  return self.C.server.handle
end

------------------------------------------------------------------------------
-- Servers, as the spec sees them.

local Server = {}
Server.__index = Server

local function server_handle(S)
  if S.handle == nil then S.handle = setmetatable({ S = S }, Server) end
  return S.handle
end

local function connect_peer(S, opts, level)
  opts = opts or {}
  if S.closed then
    error(format("luaecho.testing: cannot connect to %s: connection refused (the server is closed)", S.key),
      level + 1)
  end
  settle()
  local peer = opts.peername or { "127.0.0.1", next_peer_port() }
  local conn = setmetatable({ out = {}, is_peer = true }, Conn)
  local C = accept(S, { peer[1], peer[2] }, conn)
  C.hold = opts.hold_output and true or false
  conn.C = C
  open_end(C, S.protocol)
  settle()
  return conn
end

--- A new connection from a fake peer. opts.peername = {host, port} (the
-- default is 127.0.0.1 and a port of its own); opts.hold_output: the peer
-- does not read until drain() or release_output().
function Server:connect(opts)
  return connect_peer(self.S, opts, 2)
end

--- server:close(): stop accepting; open connections go on.
function Server:close()
  settle()
  close_server(self.S)
  settle()
end

--- True while the server accepts connections.
function Server:serving()
  return not self.S.closed
end

--- host, port it listens on.
function Server:address()
  return self.S.host, self.S.port
end

--- Connections open now.
function Server:connections()
  return self.S.connections
end

--- Lines printed by the script (while loading and serving).
function Server:printed()
  settle()
  return copy(self.S.printed)
end

--- Errors logged for its connections, without tracebacks.
function Server:errors()
  settle()
  return copy(self.S.errors)
end

--- The server object the handler sees (transport:get_extra_info("server")).
function Server:object()
  return self.S.object
end

-- Load 'script' and listen with it; errors blame 'level' above the caller.
local function serve(script, opts, level)
  settle()
  local owner = { printed = {}, errors = {}, logs = {} }
  local Protocol, path = protocol_of(script, level + 1, owner)
  local addr = resolve(opts.host or "127.0.0.1")
  if addr == nil then error("luaecho.testing: unknown host " .. tostring(opts.host), level + 1) end
  local S, err = new_server(Protocol, addr, opts.port or 0, opts, nil, path)
  if S == nil then error("luaecho.testing: " .. err, level + 1) end
  for _, field in ipairs({ "printed", "errors", "logs" }) do
    for _, v in ipairs(owner[field]) do S[field][#S[field] + 1] = v end
  end
  return S
end

--- Serve 'script' (a path, a Protocol table or a streams function) on a
-- fake address. opts.host (default "127.0.0.1"), opts.port (default: a
-- free one), and the host's limits: opts.idle_timeout (seconds),
-- opts.max_write_buffer (bytes, default 16 MiB, 0 for none). The script
-- loads once; every connection to the server shares it.
function M.serve(script, opts)
  return server_handle(serve(script, opts or {}, 2))
end

--- Serve 'script' and connect a fake peer to it: testing.serve(script,
-- opts):connect(opts). Returns the connection.
function M.connect(script, opts)
  opts = opts or {}
  local S = serve(script, opts, 2)
  server_handle(S)
  return connect_peer(S, opts, 2)
end

--- Connect a fake peer to whatever listens at host:port (a server a
-- program started with luaecho.start_server, say). Raises when nothing does.
function M.connect_to(host, port, opts)
  settle()
  local addr = resolve(host)
  local S = addr and listener(addr, port)
  if S == nil or S.closed then
    error(format("luaecho.testing: cannot connect to %s port %s: connection refused", tostring(host),
      tostring(port)), 2)
  end
  return connect_peer(S, opts, 2)
end

--- The Server listening at host:port, or nil.
function M.server_at(host, port)
  settle()
  local addr = resolve(host)
  local S = addr and listener(addr, port)
  return S and server_handle(S)
end

--- Make host 'name' resolve to 'address' (localhost is 127.0.0.1).
function M.add_host(name, address)
  W.hosts[name] = address
end

------------------------------------------------------------------------------
-- Programs: what `luaecho run SCRIPT ARGS...` runs.

local Program = {}
Program.__index = Program

--- Run 'script' (a path, or a function) as the main task of a program, as
-- `luaecho run` does, with 'arg' set from the extra arguments. It runs
-- until it first waits; testing.advance() and the connections it talks
-- to move it on. A failure is logged and shuts the fake host down.
function M.run(script, ...)
  settle()
  local P = { printed = {}, errors = {}, logs = {}, status = "running" }
  local args = pack(...)
  local chunk
  if type(script) == "function" then
    chunk = script
  elseif type(script) == "string" then
    local path = script_path(script)
    local argt = { [-1] = "luaecho", [0] = script }
    for i = 1, args.n do argt[i] = args[i] end
    local err
    chunk, err = loadfile(path, "t", fresh_env({ arg = argt }))
    if not chunk then error("cannot load script: " .. err, 2) end
    add_script_dir(path)
  else
    error("luaecho.testing.run(): a path or a function, not a " .. type(script), 2)
  end
  local function main(...)
    local ok, err = xpcall(chunk, function(e) return { value = e, traceback = traceback(tostring(e), 2) } end, ...)
    if ok then
      P.status = "done"
    else
      P.status, P.error, P.error_value = "failed", tostring(err.value), err.value
      log(P, "error", err.traceback)
      shutdown("the script failed")
    end
  end
  local ok, err = call_as(P, function() task.spawn(main, unpack(args, 1, args.n)) end)
  if not ok then error(err.message, 2) end
  settle()
  return setmetatable({ P = P }, Program)
end

--- "running", "done" or "failed".
function Program:status()
  settle()
  return self.P.status
end

--- True once the script has returned or failed.
function Program:done()
  settle()
  return self.P.status ~= "running"
end

--- The failure's message (tostring of the error) and the error value, or nil.
function Program:error()
  settle()
  return self.P.error, self.P.error_value
end

--- Lines the program printed, including its handlers' and connections'.
function Program:printed()
  settle()
  return copy(self.P.printed)
end

--- Errors logged by the program and its connections, without tracebacks.
function Program:errors()
  settle()
  return copy(self.P.errors)
end

------------------------------------------------------------------------------
-- The clock and the world.

--- Move the virtual clock on by 'seconds' (default 0), firing what falls
-- due in time order: sleeps, call_later timers, idle timeouts. advance()
-- with no argument runs only what is due now.
function M.advance(seconds)
  seconds = seconds or 0
  if type(seconds) ~= "number" or seconds < 0 or seconds ~= seconds or seconds == huge then
    error("luaecho.testing.advance(): seconds must be a number >= 0", 2)
  end
  local target = W.now + floor(seconds * 1000 + 0.5)
  settle()
  while true do
    local t = next_timer(target)
    if t == nil then break end
    if t.due > W.now then W.now = t.due end
    settle()
  end
  W.now = target
  settle()
end

--- The virtual clock, in seconds (what luaecho.now() answers).
function M.now()
  return W.now / 1000
end

--- Timers pending (sleeps, call_later) on the virtual clock.
function M.pending_timers()
  return W.pending
end

--- What SIGTERM does to the fake host: servers stop accepting, every
-- connection is closed (flushed), and wait_closed returns.
function M.shutdown(why)
  settle()
  shutdown(why or "SIGTERM")
  settle()
end

--- Every log line so far, formatted as the host writes it on stderr
-- ("luaecho: error: ...", tracebacks included). With 'level', only the
-- messages of that level ("error", "warn", "info", "debug").
function M.logs(level)
  settle()
  local out = {}
  for _, entry in ipairs(W.logs) do
    if level == nil then
      out[#out + 1] = LOG_PREFIX[entry.level] .. entry.message
    elseif entry.level == level then
      out[#out + 1] = entry.message
    end
  end
  return out
end

--- Every line printed by handler code so far.
function M.printed()
  settle()
  return copy(W.printed)
end

--- Echo printed lines to stdout and log lines to stderr as they happen.
function M.verbose(on)
  verbose = on ~= false
end

--- Start afresh: clock at 0, no timers, servers, connections, logs or
-- printed lines; package.path as before any script was loaded. Call it
-- before each spec: before_each(testing.reset).
function M.reset()
  for _, prefix in ipairs(W.added_paths) do
    local i = find(package.path, prefix, 1, true)
    if i then package.path = sub(package.path, 1, i - 1) .. sub(package.path, i + #prefix) end
  end
  W = new_world()
end

return M
