--- What a spec drives under luaecho.testing: a fake peer's connection
-- (Conn: send, eof, reset, read the handler's output or hold it) and the
-- fake server it connects to (Server). Every method settles the fake host
-- before and after it acts (luaecho.testing.clock).
-- Relies on luaecho.testing.world, .clock, .conn, .server, .scripts and
-- luaecho.defaults.
-- @usage
--   local peer = require "luaecho.testing.peer"
--   local conn = peer.connect(peer.serve("lua/echo.lua", {}, 1), {}, 1)
--   conn:send("abc")
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local conn = require "luaecho.testing.conn"
local server = require "luaecho.testing.server"
local scripts = require "luaecho.testing.scripts"
local defaults = require "luaecho.defaults"
local concat = table.concat
local format, sub = string.format, string.sub
local math_type = math.type
local error, ipairs, setmetatable, tostring, type = error, ipairs, setmetatable, tostring, type

local settle, copy = clock.settle, world.copy
local READ_CHUNK = defaults.read_chunk

local M = {}

------------------------------------------------------------------------------
-- The spec's side of a connection.

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
    conn.deliver(self.C, sub(data, i, i + chunk - 1))
    settle()
  end
end

--- The peer half-closes: eof_received, when reading (at once, or when the
-- handler resumes reading).
function Conn:eof()
  check_control(self, "eof()")
  self.gave_eof = true
  settle()
  conn.deliver_eof(self.C)
  settle()
end

--- The peer resets the connection: connection_lost("connection reset by
-- peer"). While the handler has paused reading, it notices when it
-- resumes reading or next writes.
function Conn:reset()
  if self.gave_reset then error("luaecho.testing: reset() after reset()", 2) end
  self.gave_reset = true
  settle()
  conn.deliver_reset(self.C)
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

-- Can the peer still read from the handler's write buffer?
local function open(C)
  return C.state ~= "gone" and not C.handle_closing
end

--- The peer reads 'n' bytes (default: all) of what waits in the write
-- buffer; resume_writing() once it is down to the low mark.
function Conn:drain(n)
  if n ~= nil and (math_type(n) ~= "integer" or n < 0) then
    error("luaecho.testing: drain() takes a byte count", 2)
  end
  settle()
  if open(self.C) then conn.drain(self.C, n) end
  settle()
end

--- The peer reads everything waiting, and reads as it comes from now on.
function Conn:release_output()
  settle()
  local C = self.C
  C.hold = false
  if open(C) then conn.drain(C, nil) end
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
  return conn.reading(self.C)
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

--- The peer's address, as the handler sees it (get_extra_info("peername")):
-- host, port, or a Unix peer's path.
function Conn:address()
  local p = self.C.peer
  if p.unix then return p.path end
  return p[1], p[2]
end

--- The Server this connection was accepted by.
function Conn:server()
  return self.C.server.handle
end

------------------------------------------------------------------------------
-- Servers, as the spec sees them.

local Server = {}
Server.__index = Server

--- The spec's handle on server record S (one per server).
function M.handle(S)
  if S.handle == nil then S.handle = setmetatable({ S = S }, Server) end
  return S.handle
end

-- An address the spec gave for a connection's peer: {host, port}, or a
-- Unix socket's path (a string) when 'unix'. Errors blame 'level' above
-- the caller.
local function given_address(value, name, unix, level)
  if unix and type(value) == "string" then return server.unix_peer(value, nil) end
  if type(value) ~= "table" or type(value[1]) ~= "string" or math_type(value[2]) ~= "integer" then
    error(format("luaecho.testing: opts.%s is {host, port}%s, not %s", name, unix and " or a Unix path" or "",
      tostring(value)), level + 1)
  end
  return { value[1], value[2] }
end

-- How a connection to server S came in, from the spec's opts: its peer,
-- the socket's own peer (they differ behind a PROXY header), its
-- listener. Errors blame 'level' above the caller.
local function arrival(S, opts, level)
  local listener = opts.listener or S.key
  if type(listener) ~= "string" then
    error("luaecho.testing: opts.listener is a listener's name (\"127.0.0.1:2222\", \"unix:PATH\"), not "
      .. tostring(listener), level + 1)
  end
  if listener:match("^udp:") then
    error("luaecho.testing: a stream connection cannot come in on " .. listener .. ": use testing.datagram()",
      level + 1)
  end
  local unix = listener:match("^unix:") ~= nil
  local cred = opts.peercred
  if cred ~= nil then
    if not unix then
      error("luaecho.testing: opts.peercred is for a Unix connection: serve with opts.unix = PATH, or give "
        .. "opts.listener = \"unix:PATH\"", level + 1)
    end
    if type(cred) ~= "table" then error("luaecho.testing: opts.peercred is {pid =, uid =, gid =}", level + 1) end
    for _, field in ipairs({ "pid", "uid", "gid" }) do
      if math_type(cred[field]) ~= "integer" then
        error("luaecho.testing: opts.peercred." .. field .. " must be an integer", level + 1)
      end
    end
  end
  local socket_peer, peer
  if opts.socket_peername ~= nil then
    socket_peer = given_address(opts.socket_peername, "socket_peername", unix, level + 1)
    if unix and not socket_peer.unix then
      error("luaecho.testing: opts.socket_peername of a Unix connection is the peer's path (a string)", level + 1)
    end
  end
  if opts.peername ~= nil then
    peer = given_address(opts.peername, "peername", unix, level + 1)
    if peer.unix then -- the Unix peer's path
      if socket_peer then
        error("luaecho.testing: give a Unix peer's path as opts.peername or opts.socket_peername, not both",
          level + 1)
      end
      socket_peer = peer
    end
  end
  if unix then
    socket_peer = server.unix_peer(socket_peer and socket_peer.path or "", cred)
    if peer == nil or peer.unix then peer = socket_peer end
  end
  peer = peer or socket_peer or { "127.0.0.1", server.next_peer_port() }
  return peer, { socket_peer = socket_peer or peer, listener = listener }
end

--- A new connection from a fake peer to server record S; errors blame
-- 'level' above the caller.
function M.connect(S, opts, level)
  opts = opts or {}
  if S.closed then
    error(format("luaecho.testing: cannot connect to %s: connection refused (the server is closed)", S.key),
      level + 1)
  end
  settle()
  local addr, how = arrival(S, opts, level + 1)
  local peer = setmetatable({ out = {}, is_peer = true }, Conn)
  local C = server.accept(S, addr, peer, how)
  C.hold = opts.hold_output and true or false
  peer.C = C
  conn.open(C, S.protocol)
  settle()
  return peer
end

--- A new connection from a fake peer. opts.peername = {host, port} (the
-- default is 127.0.0.1 and a port of its own; a Unix connection's peer is
-- the path "" unless given as a string); opts.hold_output: the peer does
-- not read until drain() or release_output(); opts.listener: the name
-- get_extra_info("listener") answers (default the server's own;
-- "unix:PATH" makes it a Unix connection); opts.peercred = {pid, uid,
-- gid}: a Unix peer's credentials; opts.socket_peername: the socket's own
-- peer when it differs from peername (a balancer that sent a PROXY
-- header naming peername).
function Server:connect(opts)
  return M.connect(self.S, opts, 2)
end

--- server:close(): stop accepting; open connections go on.
function Server:close()
  settle()
  server.close(self.S)
  settle()
end

--- True while the server accepts connections.
function Server:serving()
  return not self.S.closed
end

--- host, port it listens on (a Unix socket's path).
function Server:address()
  if self.S.unix then return self.S.unix end
  return self.S.host, self.S.port
end

--- Its listener's name, as luaecho prints it ("127.0.0.1:40000",
-- "unix:/run/echo.sock").
function Server:listener()
  return self.S.key
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

-- What loading the script left (prints, logs) becomes the server's.
local function adopt(S, owner)
  for _, field in ipairs({ "printed", "errors", "logs" }) do
    for _, v in ipairs(owner[field]) do S[field][#S[field] + 1] = v end
  end
end

--- Load 'script' and listen with it (see testing.serve for 'opts');
-- returns the server record. Errors blame 'level' above the caller.
function M.serve(script, opts, level)
  settle()
  local owner = { printed = {}, errors = {}, logs = {} }
  local Protocol, path = scripts.protocol(script, level + 1, owner)
  local addr, port = opts.host or "127.0.0.1", opts.port or 0
  if opts.unix ~= nil then
    if type(opts.unix) ~= "string" or opts.unix == "" then
      error("luaecho.testing: opts.unix is the Unix socket's path, not " .. tostring(opts.unix), level + 1)
    end
  else
    addr = server.resolve(addr)
    if addr == nil then error("luaecho.testing: unknown host " .. tostring(opts.host), level + 1) end
  end
  local S, err = server.new(Protocol, addr, port, opts, nil, path)
  if S == nil then error("luaecho.testing: " .. err, level + 1) end
  adopt(S, owner)
  return S
end

return M
