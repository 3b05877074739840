--- The transport a handler holds under luaecho.testing's fake host: the
-- methods of the host's luaecho.transport userdata (src/transport.c), with
-- its argument checks and its errors, over an end of
-- luaecho.testing.conn. A transport holds no fields of its own, as
-- userdata would not.
-- Relies on luaecho.testing.conn, .args, luaecho.defaults and
-- luaecho.address.
-- @usage
--   local transport = require "luaecho.testing.transport"
--   local C = transport.new_end({ peer = { "127.0.0.1", 50000 }, remote = peer })
--   C.transport:write("hi")
local conn = require "luaecho.testing.conn"
local args = require "luaecho.testing.args"
local defaults = require "luaecho.defaults"
local concat = table.concat
local format = string.format
local error, select, setmetatable, tostring, type = error, select, setmetatable, tostring, type

local M = {}

local Transport = {}
local TransportMeta = {
  __index = Transport,
  __name = "luaecho.transport",
  __newindex = function()
    error("attempt to index a userdata value (a luaecho.transport holds no fields of its own)", 2)
  end,
}

local ends = setmetatable({}, { __mode = "k" })   -- transport -> its end record

--- A new connection end (luaecho.testing.conn.new_end's 'fields') with
-- its transport in C.transport.
function M.new_end(fields)
  local C = conn.new_end(fields)
  local t = setmetatable({}, TransportMeta)
  ends[t] = C
  C.transport = t
  return C
end

-- The end behind 'self', or luaL_checkudata's error for the caller of 'method'.
local function check_end(self, method)
  local C = ends[self]
  if C == nil then args.expected(1, method, "luaecho.transport", self, 3) end
  return C
end

local function check_writable(C, method)
  if C.state ~= "open" then error(format("transport:%s(): transport is closed", method), 3) end
  if C.eof_written then error(format("transport:%s(): cannot write after write_eof()", method), 3) end
end

function Transport.write(self, ...)
  local C = check_end(self, "write")
  check_writable(C, "write")
  local data = ...
  local kind = type(data)
  if kind == "number" then
    data = tostring(data)
  elseif kind ~= "string" then
    args.bad(1, "write", "string expected, got " .. (select("#", ...) == 0 and "no value" or args.typename(data)), 2)
  end
  conn.write(C, data)
end

function Transport.writelines(self, list)
  local C = check_end(self, "writelines")
  check_writable(C, "writelines")
  if type(list) ~= "table" then args.expected(1, "writelines", "table", list, 2) end
  local parts = {}
  for i = 1, #list do
    local item = list[i]
    if type(item) ~= "string" then
      error(format("transport:writelines(): item %d is a %s, not a string", i, type(item)), 2)
    end
    parts[i] = item
  end
  conn.write(C, concat(parts))
end

function Transport.write_eof(self)
  local C = check_end(self, "write_eof")
  if C.state ~= "open" then error("transport:write_eof(): transport is closed", 2) end
  if not C.eof_written then conn.write_eof(C) end
end

function Transport.can_write_eof(self)
  check_end(self, "can_write_eof")
  return true
end

function Transport.close(self)
  conn.close(check_end(self, "close"))
end

function Transport.abort(self)
  local C = check_end(self, "abort")
  if C.state ~= "gone" then conn.abort(C, nil) end
end

function Transport.is_closing(self)
  return check_end(self, "is_closing").state ~= "open"
end

-- A peer, as get_extra_info answers it: host, port, or a Unix socket
-- peer's path ("" once the connection has gone, as in the host).
local function push_peer(C, p)
  if p.unix then return C.state == "gone" and "" or p.path end
  return p[1], p[2]
end

-- As the README says: peername (and socket_peername, the socket's own
-- peer: a balancer behind --proxy-protocol, else the same) and peercred
-- (a Unix peer's {pid, uid, gid}) answer for the transport's whole life,
-- sockname (a Unix socket's path) until close() or abort(), and
-- "server", "listener", "worker" and "generation" until connection_lost
-- has returned (simple_echo.lua closes its server from there).
function Transport.get_extra_info(self, name, default)
  local C = check_end(self, "get_extra_info")
  if type(name) ~= "string" and type(name) ~= "number" then args.expected(1, "get_extra_info", "string", name, 2) end
  name = tostring(name)
  if name == "peername" then return push_peer(C, C.peer) end
  if name == "socket_peername" then return push_peer(C, C.socket_peer or C.peer) end
  local sp = C.socket_peer or C.peer
  if name == "peercred" and sp.unix then return { pid = sp.pid, uid = sp.uid, gid = sp.gid } end
  if C.state ~= "gone" then
    if name == "server" and C.server then return C.server.object end
    if name == "listener" and C.listener then return C.listener end
    if name == "worker" then return 1 end
    if name == "generation" then return 1 end
  end
  if C.state == "open" and name == "sockname" then
    if C.unix then return C.sock[1] end
    return C.sock[1], C.sock[2]
  end
  return default
end

function Transport.pause_reading(self)
  local C = check_end(self, "pause_reading")
  if C.state == "open" then C.want_reading = false end
end

function Transport.resume_reading(self)
  local C = check_end(self, "resume_reading")
  if C.state == "open" then conn.resume_reading(C) end
end

function Transport.is_reading(self)
  return conn.reading(check_end(self, "is_reading"))
end

function Transport.get_write_buffer_size(self)
  local C = check_end(self, "get_write_buffer_size")
  -- close() still sends what is queued; abort() dropped it.
  return (C.state == "open" or (C.state == "closing" and not C.aborted)) and C.buffered or 0
end

-- A flow-control mark: nil (-1), or 0..max_water (the host's marks are
-- 32-bit). Errors blame the caller of the caller of write_limits.
local MAX_WATER = defaults.max_water
local function check_mark(mark, name)
  if mark == nil then return -1 end
  if mark < 0 or mark > MAX_WATER then
    error(format("transport:set_write_buffer_limits(): %s must be between 0 and %d bytes, not %d",
      name, MAX_WATER, mark), 4)
  end
  return mark
end

--- The marks set_write_buffer_limits(high, low) settles on, checked as
-- the host checks them (src/transport.c, for streams and datagrams
-- alike); errors blame the caller of the method calling this.
function M.write_limits(high, low)
  high = check_mark(args.opt_integer(high, 1, "set_write_buffer_limits", 3), "high")
  low = check_mark(args.opt_integer(low, 2, "set_write_buffer_limits", 3), "low")
  high, low = conn.marks(high, low)
  if low > high then
    error(format("transport:set_write_buffer_limits(): high (%d) must be >= low (%d) >= 0", high, low), 3)
  end
  return high, low
end

function Transport.set_write_buffer_limits(self, high, low)
  local C = check_end(self, "set_write_buffer_limits")
  high, low = M.write_limits(high, low)
  if C.state == "open" then conn.set_marks(C, high, low) end
end

function Transport.get_write_buffer_limits(self)
  local C = check_end(self, "get_write_buffer_limits")
  return C.low, C.high
end

function TransportMeta.__tostring(self)
  local C = ends[self]
  if C.state == "gone" then return "luaecho.transport (closed)" end
  return format("luaecho.transport (%s%s)", conn.peer_text(C), C.state == "closing" and ", closing" or "")
end

return M
