--- Fake servers, the host's side: a record per listening address, the
-- luaecho.server object a handler sees (close, sockname, is_serving;
-- wait_closed comes with the luaecho module), accepting connections, name
-- resolution, and what SIGTERM does to the whole fake host.
-- Relies on luaecho.testing.world, .clock, .report, .args, .conn,
-- .transport, luaecho.defaults and luaecho.address.
-- @usage
--   local server = require "luaecho.testing.server"
--   local S = assert(server.new(Protocol, "127.0.0.1", 0, {}))
--   local C = server.accept(S, { "127.0.0.1", server.next_peer_port() }, peer)
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local report = require "luaecho.testing.report"
local args = require "luaecho.testing.args"
local conn = require "luaecho.testing.conn"
local transport = require "luaecho.testing.transport"
local defaults = require "luaecho.defaults"
local address = require "luaecho.address"
local format, find = string.format, string.find
local floor = math.floor
local ipairs, setmetatable = ipairs, setmetatable

local W = world.W
local addr_text = address.text

local M = {}

--- The methods of the luaecho.server object (luaecho adds wait_closed).
M.methods = {}
local ServerObjectMeta = { __index = M.methods, __name = "luaecho.server" }
local records = setmetatable({}, { __mode = "k" }) -- object -> record

--- The record behind server object 'self', or luaL_checkudata's error
-- for the caller of 'method'.
function M.check(self, method)
  local S = records[self]
  if S == nil then args.expected(1, method, "luaecho.server", self, 3) end
  return S
end

--- Closed, and its last connection gone.
function M.finished(S)
  return S.closed and S.connections == 0
end

-- Wake those waiting for the server to finish (wait_closed).
local function check_finished(S)
  if not M.finished(S) or S.waiters[1] == nil then return end
  local waiters = S.waiters
  S.waiters = {}
  for _, fn in ipairs(waiters) do report.callback(S.parent, "wait_closed", fn) end
end

--- Stop accepting; open connections go on.
function M.close(S)
  if not S.closed then
    S.closed = true
    if W.listening[S.key] == S then W.listening[S.key] = nil end
  end
  check_finished(S)
end

function M.methods.close(self)
  M.close(M.check(self, "close"))
end

function M.methods.sockname(self)
  local S = M.check(self, "sockname")
  if S.closed then return nil end
  if S.unix then return S.unix end
  return S.host, S.port
end

function M.methods.is_serving(self)
  return not M.check(self, "is_serving").closed
end

function ServerObjectMeta.__tostring(self)
  local S = records[self]
  if S.closed then return "luaecho.server (closed)" end
  return format("luaecho.server (%s)", S.key)
end

--- The address a host name stands for, or nil. IP literals stand for
-- themselves; "localhost" for 127.0.0.1; testing.add_host adds names.
function M.resolve(host)
  if W.hosts[host] then return W.hosts[host] end
  if host:match("^%d+%.%d+%.%d+%.%d+$") or find(host, ":", 1, true) then return host end
  return nil
end

--- The server listening where 'addr':'port' reaches, or nil.
function M.listener(addr, port)
  return world.reaching(W.listening, addr, port)
end

-- A free port for a server that asked for port 0.
local function free_port(addr)
  return world.free_port(W.listening, addr)
end

--- A server record listening at addr:port (0: a free port) with
-- 'Protocol'; nil and the host's message when the address is taken.
-- opts: idle_timeout, max_write_buffer, unix (a path: a Unix socket
-- listener there instead, addr and port unused). 'parent' shares its logs
-- and prints; 'script' is the path it was loaded from. Its key is the
-- listener's name, as luaecho prints it ("127.0.0.1:2222", "unix:PATH").
function M.new(Protocol, addr, port, opts, parent, script)
  opts = opts or {}
  local unix = opts.unix
  if unix == nil and port == 0 then port = free_port(addr) end
  local key = unix and "unix:" .. unix or addr_text(addr, port)
  if W.listening[key] then return nil, "cannot listen on " .. key .. ": address already in use" end
  local S = {
    protocol = Protocol, host = addr, port = port, key = key, closed = false, connections = 0, unix = unix,
    waiters = {}, opts = opts, parent = parent, script = script,
    printed = {}, errors = {}, logs = {},
  }
  S.object = setmetatable({}, ServerObjectMeta)
  records[S.object] = S
  W.listening[key] = S
  W.servers[#W.servers + 1] = S
  return S
end

--- The next port a fake peer connects from.
function M.next_peer_port()
  local p = W.next_peer_port
  W.next_peer_port = p + 1
  return p
end

-- A connection of the server's has gone.
local function connection_gone(C)
  local S = C.server
  S.connections = S.connections - 1
  check_finished(S)
end

--- The credentials a fake Unix peer has unless the spec says otherwise.
M.PEERCRED = { pid = 4242, uid = 1000, gid = 1000 }

--- A Unix socket peer: its path (usually "") and credentials.
function M.unix_peer(path, cred)
  cred = cred or M.PEERCRED
  return { unix = true, path = path or "", pid = cred.pid, uid = cred.uid, gid = cred.gid }
end

--- A new end accepted by server S from 'peer' ({host, port}, or a
-- unix_peer), talking to 'remote'. 'how' may set the socket's own peer
-- when a PROXY header named 'peer' (socket_peer) and the listener it came
-- in on (listener: default the server's name). The caller opens it
-- (luaecho.testing.conn.open).
function M.accept(S, peer, remote, how)
  how = how or {}
  S.connections = S.connections + 1
  local idle = S.opts.idle_timeout
  local listener = how.listener or S.key
  local unix_path = listener:match("^unix:(.*)$")
  return transport.new_end({
    server = S, parent = S, on_gone = connection_gone, peer = peer, socket_peer = how.socket_peer or peer,
    sock = unix_path and { unix_path } or { S.host, S.port }, unix = unix_path ~= nil, listener = listener,
    remote = remote, idle_ms = idle and floor(idle * 1000) or nil,
    max_write_buffer = S.opts.max_write_buffer or defaults.max_write_buffer,
  })
end

--- What else SIGTERM closes (UDP endpoints): functions called after the
-- connections are closed.
M.at_shutdown = {}

--- What SIGTERM does (src/server.c's order): stop accepting, close every
-- connection (flushing) and the rest (at_shutdown), abort what is still
-- open after the shutdown timeout.
function M.shutdown(why)
  if W.shutting_down then return end
  W.shutting_down = true
  report.log(nil, "info", "shutting down (" .. why .. ")")
  for _, S in ipairs(world.copy(W.servers)) do M.close(S) end
  for _, C in ipairs(world.copy(W.conns)) do conn.close(C) end
  for _, fn in ipairs(M.at_shutdown) do fn() end
  clock.add_timer(W.now + defaults.shutdown_timeout_ms, function()
    local left = world.copy(W.conns)
    if left[1] == nil then return end
    report.log(nil, "warn", format("shutdown timeout: aborting %d connection(s) that did not close in time", #left))
    for _, C in ipairs(left) do conn.abort(C, "aborted: shutdown timeout") end
  end, nil, true)
end

return M
