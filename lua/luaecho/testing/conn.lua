--- One end of a fake connection: the handler's side, as the host's
-- src/conn.c and src/protocol.c run it. An end holds the protocol
-- instance, the write queue and the flow-control marks, the input held
-- while reading is paused, and the close life cycle
-- (open -> closing -> gone, connection_lost exactly once). Its remote is
-- the spec's fake peer (luaecho.testing.peer) or, for a client connection
-- to a fake server, another end. The Lua-facing transport is
-- luaecho.testing.transport's; server bookkeeping happens through the
-- end's on_gone callback.
-- Relies on luaecho.testing.world, .clock, .report, luaecho.defaults and
-- luaecho.address.
-- @usage
--   local conn = require "luaecho.testing.conn"
--   conn.deliver(C, "bytes from the peer")
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local report = require "luaecho.testing.report"
local defaults = require "luaecho.defaults"
local address = require "luaecho.address"
local concat, remove = table.concat, table.remove
local format, sub = string.format, string.sub
local error, pairs, setmetatable, type = error, pairs, setmetatable, type

local W = world.W
local post = clock.post

local M = {}

local READ_CHUNK, MAX_WATER = defaults.read_chunk, defaults.max_water

--- The flow-control marks the host settles on for 'high' and 'low' (-1:
-- not given): low defaults to a quarter of high, high to four times low
-- (or to the default high mark when neither is given).
function M.marks(high, low)
  if high < 0 then
    high = low < 0 and defaults.high_water or low > MAX_WATER // 4 and MAX_WATER or 4 * low
  end
  if low < 0 then low = high // 4 end
  return high, low
end

--- A new end. 'fields' sets the rest: peer and sock ({host, port}),
-- remote, parent (whose logs and prints it shares), server and on_gone,
-- idle_ms, max_write_buffer.
function M.new_end(fields)
  local high, low = M.marks(-1, -1)
  local C = {
    state = "open",          -- "open", "closing" (close/abort called), "gone" (connection_lost ran)
    want_reading = true, eof_received = false, eof_written = false, eof_sent = false,
    high = high, low = low, writing_paused = false,
    queue = {}, buffered = 0, -- written, not yet taken by the peer
    inbox = {},               -- input that arrived while reading was paused
    events = {}, errors = {}, printed = {}, logs = {},
    last_active = W.now, max_write_buffer = defaults.max_write_buffer,
  }
  for k, v in pairs(fields) do C[k] = v end
  W.conns[#W.conns + 1] = C
  return C
end

--- "host:port" of the end's peer, as the host's log lines name it
-- ("unix peer (pid 4242, uid 1000)" for a Unix one).
function M.peer_text(C)
  local p = C.peer
  if p and p.unix then
    if p.pid > 0 then return format("unix peer (pid %d, uid %d)", p.pid, p.uid) end
    return "unix peer"
  end
  return address.peer(C.transport)
end

------------------------------------------------------------------------------
-- Protocol calls.

-- Call method 'name' of the end's protocol instance, when it has one.
-- Returns the result's truth.
local function invoke(C, name, ...)
  local inst = C.instance
  local method = inst[name]
  if method == nil then return false end
  C.events[#C.events + 1] = name
  return method(inst, ...) and true or false
end

-- A protocol call failed: logged with the peer and the traceback, and the
-- connection aborted, as the host does.
local function fail(C, what, err)
  report.log(C, "error", what .. " failed for " .. M.peer_text(C) .. ": " .. err.traceback)
  M.abort(C, err.message)
end

--- Call method 'name' of the end's protocol as the host does (see invoke
-- and fail). Returns the result's truth; false once the end let go.
function M.dispatch(C, name, ...)
  if C.instance == nil or C.released then return false end
  local ok, result = report.call_as(C, invoke, C, name, ...)
  if ok then return result end
  fail(C, name, result)
  return false
end

------------------------------------------------------------------------------
-- Output: the write queue, flow control, EOF.

-- Deliver bytes to the remote end. Between two handler ends, what one
-- writes in a turn reaches the other as one chunk on the next (up to
-- read_chunk bytes a chunk), as a TCP peer's quick successive writes
-- usually do.
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
    for i = 1, #all, READ_CHUNK do M.deliver(R, sub(all, i, i + READ_CHUNK - 1)) end
  end)
end

-- Our side has finished sending: the remote end reads EOF.
local function send_eof(C)
  if C.eof_sent then return end
  C.eof_sent = true
  local R = C.remote
  if not R.is_peer then
    post(function() M.deliver_eof(R) end)
  end
end

--- The end's output is done: the remote reads EOF once the queue is empty.
function M.write_eof(C)
  C.eof_written = true
  if C.buffered == 0 then send_eof(C) end
end

-- Flow-control marks, as the host checks them.
local function check_high(C)
  if not C.writing_paused and not C.handle_closing and C.buffered > C.high then
    C.writing_paused = true
    M.dispatch(C, "pause_writing")
  end
end

local function check_low(C)
  if C.writing_paused and not C.handle_closing and C.buffered <= C.low then
    C.writing_paused = false
    M.dispatch(C, "resume_writing")
  end
end

-- --max-write-buffer: past the cap, the peer does not read; abort.
local function check_cap(C)
  local cap = C.max_write_buffer
  if cap == 0 or C.buffered <= cap or C.handle_closing then return end
  local reason = format("write buffer over --max-write-buffer (%d bytes queued, cap %d): the peer does not read",
    C.buffered, cap)
  report.log_limited(C, "write_buffer", "warn", "aborting " .. M.peer_text(C) .. ": " .. reason)
  M.abort(C, reason)
end

--- New marks (already checked): pause_writing at once if above the new
-- high mark.
function M.set_marks(C, high, low)
  C.high, C.low = high, low
  check_high(C)
end

--- transport:write(data) once checked: sent at once, or queued behind
-- what waits.
function M.write(C, data)
  if data == "" then return end
  if C.reset_pending then return M.abort(C, "connection reset by peer") end
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

------------------------------------------------------------------------------
-- Closing.

-- connection_lost, once, then the end lets go of its instance.
local function lose(C)
  if C.released then return end
  M.dispatch(C, "connection_lost", C.error)
  C.state, C.released = "gone", true
  local conns = W.conns
  for i = 1, #conns do
    if conns[i] == C then
      remove(conns, i)
      break
    end
  end
  if C.on_gone then C.on_gone(C) end
end

--- Close now: unsent output dropped; connection_lost(err) on a later turn.
function M.abort(C, err)
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

--- transport:close(): finish once the queue is empty.
function M.close(C)
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

-- The peer takes 'n' bytes off the head of the queue.
local function take(C, n)
  local R, head = C.remote, C.queue[1]
  if #head <= n then
    remove(C.queue, 1)
  else
    C.queue[1] = sub(head, n + 1)
    head = sub(head, 1, n)
  end
  R.out[#R.out + 1] = head
  C.buffered = C.buffered - #head
  C.last_active = W.now
  return #head
end

--- The peer reads up to 'n' queued bytes (all when nil).
function M.drain(C, n)
  if n == nil or n > C.buffered then n = C.buffered end
  while n > 0 do n = n - take(C, n) end
  check_low(C)
  if C.buffered == 0 then
    if C.state == "closing" and not C.handle_closing then finish_close(C) end
    if C.eof_written and C.state == "open" then send_eof(C) end
  end
end

------------------------------------------------------------------------------
-- Input: data, EOF and resets from the remote, held while reading is paused.

--- transport:is_reading().
function M.reading(C)
  return C.state == "open" and C.want_reading and not C.eof_received
end

-- The peer's EOF reaches the protocol: a falsy eof_received closes.
local function receive_eof(C)
  C.eof_received = true
  if not M.dispatch(C, "eof_received") then M.close(C) end
end

-- Can input go straight to the protocol? Not while earlier input waits.
local function direct(C)
  return M.reading(C) and C.inbox[1] == nil
end

--- Input arrives: delivered at once while reading, else kept in order.
function M.deliver(C, data)
  if C.state ~= "open" or C.eof_received then return end
  if direct(C) then
    C.last_active = W.now
    M.dispatch(C, "data_received", data)
  else
    C.inbox[#C.inbox + 1] = data
  end
end

--- The remote half-closes: eof_received now, or after the held input.
function M.deliver_eof(C)
  if C.state ~= "open" or C.eof_received then return end
  if direct(C) then
    receive_eof(C)
  else
    C.inbox[#C.inbox + 1] = true
  end
end

--- The peer resets. Noticed at once while reading or writing; while
-- reading is paused, when reading resumes or the handler next writes.
function M.deliver_reset(C)
  if C.state == "gone" or C.handle_closing then return end
  if C.state == "closing" or C.buffered > 0 or direct(C) then
    return M.abort(C, "connection reset by peer")
  end
  C.reset_pending = true
  C.inbox[#C.inbox + 1] = false
end

-- Reading resumed: hand over what arrived meanwhile.
local function pump(C)
  C.pump_posted = false
  while M.reading(C) and C.inbox[1] ~= nil do
    local item = remove(C.inbox, 1)
    if item == true then
      receive_eof(C)
    elseif item == false then
      M.abort(C, "connection reset by peer")
    else
      C.last_active = W.now
      M.dispatch(C, "data_received", item)
    end
  end
end

--- transport:resume_reading(): what arrived meanwhile comes in on a later turn.
function M.resume_reading(C)
  C.want_reading = true
  if C.pump_posted or C.inbox[1] == nil then return end
  C.pump_posted = true
  post(function() pump(C) end)
end

------------------------------------------------------------------------------
-- Opening.

-- Idle timeout: no traffic either way for C.idle_ms aborts the connection.
local function arm_idle(C)
  clock.add_timer(C.last_active + C.idle_ms, function()
    if C.state == "gone" or C.handle_closing then return end
    if W.now - C.last_active < C.idle_ms then return arm_idle(C) end
    local reason = format("idle timeout: no traffic for %g s (--idle-timeout)", C.idle_ms / 1000)
    report.log_limited(C, "idle", "info", "closing " .. M.peer_text(C) .. ": " .. reason)
    M.abort(C, reason)
  end, nil, true)
end

local metas = setmetatable({}, { __mode = "k" })  -- Protocol -> the metatable of its instances

--- The instance for a new connection (or UDP endpoint): Protocol.new() or
-- a table whose metatable's __index is the Protocol (one metatable per
-- Protocol).
function M.instantiate(Protocol)
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

--- Make the instance and call connection_made, as the host does on
-- accept and on connect.
function M.open(C, Protocol)
  if C.idle_ms and C.idle_ms > 0 then arm_idle(C) end
  local ok, inst = report.call_as(C, M.instantiate, Protocol)
  if not ok then return fail(C, "creating the protocol instance", inst) end
  C.instance = inst
  M.dispatch(C, "connection_made", C.transport)
end

return M
