--- Fake UDP endpoints, the host's side, as src/datagram.c runs them: an
-- endpoint record per socket, bound at an address of the fake world, with
-- its protocol instance (connection_made, datagram_received,
-- error_received, pause_writing, resume_writing, connection_lost), its
-- luaecho.datagram_transport (sendto, close, abort, is_closing,
-- get_write_buffer_size, set/get_write_buffer_limits, get_extra_info),
-- and datagrams routed between endpoints by address. A datagram sent to an
-- address where no fake endpoint is bound is lost, but for a connected
-- endpoint, which hears error_received("connection refused"), as over
-- loopback. A failing callback is logged and the endpoint goes on
-- serving; only a failed start closes it.
-- Relies on luaecho.testing.world, .clock, .report, .args, .conn,
-- .transport, .server, luaecho.defaults and luaecho.address.
-- @usage
--   local datagram = require "luaecho.testing.datagram"
--   local E = assert(datagram.bind(Protocol, "127.0.0.1", 0, nil, nil, {}))
--   datagram.start(E)
--   datagram.receive(E, "hello", "127.0.0.1", 50000)
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local report = require "luaecho.testing.report"
local args = require "luaecho.testing.args"
local conn = require "luaecho.testing.conn"
local transport = require "luaecho.testing.transport"
local server = require "luaecho.testing.server"
local defaults = require "luaecho.defaults"
local address = require "luaecho.address"
local remove = table.remove
local format, find, match = string.format, string.find, string.match
local getinfo = debug.getinfo
local error, ipairs, setmetatable, tonumber, tostring, type = error, ipairs, setmetatable, tonumber, tostring, type

local W = world.W
local post = clock.post
local addr_text = address.text

local M = {}

--- The largest datagram (over IPv4).
M.MAX_DATAGRAM = 65507

--- The host's refusal of a Protocol that cannot serve datagrams ('what'
-- names the listener or the function, 'whose' the Protocol), or nil.
function M.refusal(Protocol, what, whose)
  if type(Protocol) ~= "table" then
    return format("%s: %s Protocol must be a table, not %s", what, whose, type(Protocol))
  end
  if Protocol.datagram_received == nil then
    return format("%s: %s Protocol has no datagram_received(data, host, port), so it cannot serve datagrams "
      .. "(a streams handler function(reader, writer) serves only stream listeners)", what, whose)
  end
  return nil
end

------------------------------------------------------------------------------
-- Addresses.

local function wildcard(host)
  return host == "0.0.0.0" or host == "::"
end

--- The endpoint bound where host:port reaches, or nil.
function M.bound_at(host, port)
  return world.reaching(W.bound, host, port)
end

-- A free port at 'host' for an endpoint that asked for port 0.
local function free_port(host)
  return world.free_port(W.bound, host)
end

-- Is 'host' an IP literal, as uv_ip4_addr or uv_ip6_addr reads one?
local function ip_literal(host)
  local a, b, c, d = match(host, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    for _, octet in ipairs({ a, b, c, d }) do
      if #octet > 3 or tonumber(octet) > 255 then return false end
    end
    return true
  end
  return find(host, ":", 1, true) ~= nil and match(host, "^[%x:%.]+$") ~= nil
end

-- Where a datagram from E comes from, as its receiver sees it.
local function source(E)
  local host = E.sock[1]
  if wildcard(host) then host = find(host, ":", 1, true) and "::1" or "127.0.0.1" end
  return host, E.sock[2]
end

-- " for udp:127.0.0.1:5000": where a failure happened, in its log line.
local function note(E)
  if E.listener then return " for " .. E.listener end
  if not E.handle_closing then return " for udp:" .. addr_text(E.sock[1], E.sock[2]) end
  return " for a datagram endpoint"
end

------------------------------------------------------------------------------
-- Protocol calls.

local function invoke(E, name, ...)
  local inst = E.instance
  local method = inst[name]
  if method == nil then return end
  E.events[#E.events + 1] = name
  method(inst, ...)
end

-- Call method 'name' of E's instance; a failure is logged, E goes on.
-- Returns the error ({message, traceback}) or nil.
local function dispatch(E, name, ...)
  if E.instance == nil or E.released then return nil end
  local ok, err = report.call_as(E, invoke, E, name, ...)
  if ok then return nil end
  report.log(E, "error", name .. " failed" .. note(E) .. ": " .. err.traceback)
  return err
end

------------------------------------------------------------------------------
-- Closing.

-- connection_lost(err), once, then E lets go of its instance.
local function lose(E)
  if E.released then return end
  dispatch(E, "connection_lost", E.error)
  E.state, E.released = "gone", true
  local list = W.endpoints
  for i = 1, #list do
    if list[i] == E then
      remove(list, i)
      break
    end
  end
end

-- uv_close: the socket is let go of now, connection_lost on a later turn.
local function close_handle(E)
  E.state = "closing"
  if E.handle_closing then return end
  E.handle_closing = true
  if W.bound[E.key] == E then W.bound[E.key] = nil end
  post(function() lose(E) end)
end

--- Close now, dropping what is queued; 'err' (the first one kept) goes to
-- connection_lost.
function M.abort(E, err)
  if E.error == nil then E.error = err end
  E.queue, E.buffered = {}, 0
  close_handle(E)
end

--- transport:close() (and shutdown): no datagram is delivered from now
-- on; closed once what is queued has been sent.
function M.close(E)
  if E.state == "gone" then return end
  E.state = "closing"
  if E.queue[1] == nil then close_handle(E) end
end

------------------------------------------------------------------------------
-- Flow control.

local function check_high(E)
  if not E.writing_paused and E.state == "open" and E.buffered > E.high then
    E.writing_paused, E.pause_due = true, true
  end
end

-- A pause noted by check_high is reported at the end of the call that caused it.
local function report_pause(E)
  if not E.pause_due then return end
  E.pause_due = false
  if E.writing_paused and E.state == "open" then dispatch(E, "pause_writing") end
end

local function check_low(E)
  if E.writing_paused and E.state == "open" and E.buffered <= E.low then
    E.writing_paused = false
    dispatch(E, "resume_writing")
  end
end

------------------------------------------------------------------------------
-- Receiving and sending.

--- A datagram reaches E from host:port: datagram_received, unless E is
-- closing, or connected to another address.
function M.receive(E, data, host, port)
  if E.state ~= "open" then return end
  local r = E.remote
  if r and (r[1] ~= host or r[2] ~= port) then return end
  dispatch(E, "datagram_received", data, host, port)
end

--- The system reports an error for E: error_received(message).
function M.error(E, message)
  if E.state ~= "open" then return end
  dispatch(E, "error_received", message)
end

-- The datagram leaves E for host:port: recorded, and delivered on a later
-- turn to the endpoint bound there, if any.
local function transmit(E, data, host, port)
  E.sent[#E.sent + 1] = { data = data, host = host, port = port }
  local T = M.bound_at(host, port)
  if T then
    local from_host, from_port = source(E)
    post(function() M.receive(T, data, from_host, from_port) end)
  elseif E.remote then -- the ICMP port unreachable a connected socket hears
    post(function() M.error(E, "connection refused") end)
  end
end

-- Send, or queue behind what waits (the spec holds E's output: the kernel
-- would say EAGAIN). Over --max-write-buffer, dropped with a warning.
local function send(E, data, host, port)
  if not E.hold and E.queue[1] == nil then return transmit(E, data, host, port) end
  local cap = E.max_write_buffer
  if cap ~= 0 and E.buffered + #data > cap then
    report.log_limited(E, "datagram_dropped", "warn", format("dropped a datagram of %d bytes%s: its send queue is "
      .. "over --max-write-buffer (%d bytes queued, cap %d)", #data, note(E), E.buffered, cap))
    return
  end
  E.queue[#E.queue + 1] = { data, host, port }
  E.buffered = E.buffered + #data
  check_high(E)
end

--- The spec lets E's output go: the queue is sent, datagram by datagram
-- (resume_writing at the low mark), and a close waiting for it finishes.
function M.flush(E)
  while E.queue[1] ~= nil and not E.handle_closing do
    local item = remove(E.queue, 1)
    E.buffered = E.buffered - #item[1]
    transmit(E, item[1], item[2], item[3])
    check_low(E)
  end
  if E.state == "closing" and E.queue[1] == nil then close_handle(E) end
end

------------------------------------------------------------------------------
-- The transport a handler holds (luaecho.datagram_transport).

local Transport = {}
local TransportMeta = {
  __index = Transport,
  __name = "luaecho.datagram_transport",
  __newindex = function()
    error("attempt to index a userdata value (a luaecho.datagram_transport holds no fields of its own)", 2)
  end,
}
local records = setmetatable({}, { __mode = "k" }) -- transport -> endpoint record

local function check_box(self, method)
  local E = records[self]
  if E == nil then args.expected(1, method, "luaecho.datagram_transport", self, 3) end
  return E
end

-- The endpoint, or the host's error once it is closing or gone.
local function check_open(self, method)
  local E = check_box(self, method)
  if E.state ~= "open" then error(format("transport:%s(): datagram transport is closed", method), 3) end
  return E
end

function Transport.sendto(self, data, host, port)
  local E = check_open(self, "sendto")
  -- luaL_argerror counts from self unless called as a method.
  local shift = getinfo(1, "n").namewhat == "method" and 1 or 0
  if type(data) ~= "string" and type(data) ~= "number" then args.expected(2 - shift, "sendto", "string", data, 2) end
  data = tostring(data)
  local addressed = host ~= nil or port ~= nil
  if addressed then
    host = args.string(host, 3 - shift, "sendto", 2)
    port = args.integer(port, 4 - shift, "sendto", 2)
    if port < 1 or port > 65535 then error(format("transport:sendto(): port must be 1 to 65535, not %d", port), 2) end
    if not ip_literal(host) then error(format("transport:sendto(): host must be an IP address, not '%s'", host), 2) end
  end
  local r = E.remote
  if r and addressed and (r[1] ~= host or r[2] ~= port) then
    error(format("transport:sendto(): the endpoint is connected to %s: send without host and port",
      addr_text(r[1], r[2])), 2)
  end
  if not r and not addressed then
    error("transport:sendto(): the endpoint has no remote address: give host and port", 2)
  end
  if r then host, port = r[1], r[2] end
  send(E, data, host, port)
  report_pause(E)
end

function Transport.close(self)
  M.close(check_box(self, "close"))
end

function Transport.abort(self)
  local E = check_box(self, "abort")
  if E.state ~= "gone" then M.abort(E, nil) end
end

function Transport.is_closing(self)
  return check_box(self, "is_closing").state ~= "open"
end

function Transport.get_write_buffer_size(self)
  local E = check_box(self, "get_write_buffer_size")
  return E.handle_closing and 0 or E.buffered
end

function Transport.set_write_buffer_limits(self, high, low)
  local E = check_box(self, "set_write_buffer_limits")
  high, low = transport.write_limits(high, low)
  if E.state == "open" then
    E.high, E.low = high, low
    check_high(E)
    report_pause(E)
  end
end

function Transport.get_write_buffer_limits(self)
  local E = check_box(self, "get_write_buffer_limits")
  if E.state == "gone" then
    local high = conn.marks(-1, -1)
    return high // 4, high
  end
  return E.low, E.high
end

-- "peername" (a connected endpoint's remote, for its whole life);
-- "sockname" until it closes; "listener" (a listener's endpoint),
-- "worker", "generation" until connection_lost has run.
function Transport.get_extra_info(self, name, default)
  local E = check_box(self, "get_extra_info")
  name = args.string(name, 1, "get_extra_info", 2)
  if name == "peername" and E.remote then return E.remote[1], E.remote[2] end
  if E.state == "gone" then return default end
  if name == "sockname" and not E.handle_closing then return E.sock[1], E.sock[2] end
  if name == "listener" and E.listener then return E.listener end
  if name == "worker" or name == "generation" then return 1 end
  return default
end

function TransportMeta.__tostring(self)
  local E = records[self]
  if E.state == "gone" then return "luaecho.datagram_transport (closed)" end
  local here = E.handle_closing and "unbound" or addr_text(E.sock[1], E.sock[2])
  local there = E.remote and " -> " .. addr_text(E.remote[1], E.remote[2]) or ""
  return format("luaecho.datagram_transport (udp %s%s%s)", here, there, E.state ~= "open" and ", closing" or "")
end

------------------------------------------------------------------------------
-- Endpoints.

--- A new endpoint for 'Protocol' bound at host:port (0: a free one),
-- connected to 'remote' ({host, port}) or not; nil and the host's
-- message when the address is taken. opts: listener (its name: a
-- listener's endpoint), max_write_buffer, parent (whose logs and prints
-- it shares). Not started yet: see start.
function M.bind(Protocol, host, port, remote, opts)
  if port == 0 then port = free_port(host) end
  local key = addr_text(host, port)
  if W.bound[key] then return nil, "address already in use", port end
  local high = conn.marks(-1, -1)
  local E = {
    protocol = Protocol, sock = { host, port }, key = key, remote = remote, listener = opts.listener,
    state = "open", high = high, low = high // 4, writing_paused = false,
    queue = {}, buffered = 0, sent = {}, hold = false,
    events = {}, errors = {}, printed = {}, logs = {}, parent = opts.parent,
    max_write_buffer = opts.max_write_buffer or defaults.max_write_buffer,
  }
  E.transport = setmetatable({}, TransportMeta)
  records[E.transport] = E
  W.bound[key] = E
  W.endpoints[#W.endpoints + 1] = E
  return E
end

--- Make the instance and call connection_made, as endpoint_start does;
-- a failure is logged and closes the endpoint.
function M.start(E)
  local ok, inst = report.call_as(E, conn.instantiate, E.protocol)
  if not ok then
    if E.error == nil then E.error = inst.message end
    report.log(E, "error", "creating the datagram protocol instance failed" .. note(E) .. ": " .. inst.traceback)
    return close_handle(E)
  end
  if inst.datagram_received == nil then
    report.log(E, "warn", "a datagram protocol instance has no datagram_received, so no datagram reaches it: if "
      .. "Protocol.new() builds the instance, give it the Protocol as its metatable, e.g. return "
      .. "setmetatable({}, {__index = Protocol})")
  end
  E.instance = inst
  local err = dispatch(E, "connection_made", E.transport)
  if err then
    if E.error == nil then E.error = err.message end
    close_handle(E)
  end
end

--- The fake host shuts down: every endpoint closes.
function M.close_all()
  for _, E in ipairs(world.copy(W.endpoints)) do M.close(E) end
end

server.at_shutdown[#server.at_shutdown + 1] = M.close_all

return M
