--- The fake `luaecho.core`: what the host's C module (src/module.c) gives
-- the luaecho and luaecho.log modules (log, now, timer, connect, listen,
-- on_server_finished, shutdown, server_methods), over the fake host's
-- clock, servers and connections. (luaecho.testing adds luaecho.metrics'
-- primitives, metric_*, from luaecho.testing.metrics.) install() puts it in package.loaded, so
-- that `require "luaecho"` works under plain busted.
-- Relies on luaecho.testing.world, .clock, .report, .args, .conn,
-- .transport, .server and .datagram.
-- @usage
--   require("luaecho.testing.core").install()
--   local luaecho = require "luaecho"           -- now on the fake host
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local report = require "luaecho.testing.report"
local args = require "luaecho.testing.args"
local conn = require "luaecho.testing.conn"
local transport = require "luaecho.testing.transport"
local server = require "luaecho.testing.server"
local datagram = require "luaecho.testing.datagram"
local log = require "luaecho.log"
local format, find = string.format, string.find
local ceil = math.ceil
local error, package, rawget, setmetatable, tostring, type = error, package, rawget, setmetatable, tostring, type

local W = world.W

local M = {}

--- The fake luaecho.core table.
local core = { server_methods = server.methods, _testing = true }
M.core = core

local LEVELS = { error = true, warn = true, info = true, debug = true }

function core.log(level, message, fields)
  if not LEVELS[level] then args.bad(1, "log", format("invalid option '%s'", tostring(level)), 2) end
  message = args.string(message, 2, "log", 2)
  fields = log.check_fields(fields, 3, "log", 2)
  if level == "error" and fields and math.type(fields.generation) == "integer" then
    -- As the host does: a failure's generation is its own field, not in the text line.
    local rest = {}
    for k, v in pairs(fields) do
      if k ~= "generation" then rest[k] = v end
    end
    fields = next(rest) and rest or nil
  end
  report.log(W.owner, level, message, fields)
end

function core.now()
  return W.now / 1000
end

local Timer = {}
local TimerMeta = { __index = Timer, __name = "luaecho.timer" }
local timer_records = setmetatable({}, { __mode = "k" })

local function check_timer(self, method)
  local t = timer_records[self]
  if t == nil then args.expected(1, method, "luaecho.timer", self, 3) end
  return t
end

function Timer.cancel(self)
  local t = check_timer(self, "cancel")
  if not t.done then
    clock.retire(t)
    t.cancelled = true
  end
end

function Timer.cancelled(self)
  return check_timer(self, "cancelled").cancelled == true
end

function core.timer(seconds, fn)
  local s = args.number(seconds, 1, "timer", 2)
  args.fn(fn, 2, "timer", 2)
  if not (s >= 0 and s < 1e9) then args.bad(1, "timer", "seconds must be a number >= 0", 2) end
  local ms = ceil(s * 1000 - 1e-6)
  local t = clock.add_timer(W.now + (ms > 0 and ms or 0), fn, W.owner, false)
  local handle = setmetatable({}, TimerMeta)
  timer_records[handle] = t
  return handle
end

-- The arguments of connect and listen, checked as the host checks them.
local function check_address_args(fname, host, port, protocol, callback, min_port)
  host = args.string(host, 1, fname, 3)
  port = args.integer(port, 2, fname, 3)
  if port < min_port or port > 65535 then args.bad(2, fname, format("port must be %d to 65535", min_port), 3) end
  if type(protocol) ~= "table" then args.expected(3, fname, "table", protocol, 3) end
  args.fn(callback, 4, fname, 3)
  return host, port
end

-- The address 'host' stands for, or nil and the host's message.
local function resolve(host, port)
  local addr = server.resolve(host)
  if addr == nil then return nil, format("cannot resolve %s port %d: unknown node or service", host, port) end
  return addr
end

-- Connect a client end running 'Protocol' to the server listening at
-- addr:port. Returns the client end, or nil and why.
local function connect_pair(owner, host, port, Protocol)
  local addr, why = resolve(host, port)
  if addr == nil then return nil, why end
  local S = server.listener(addr, port)
  if S == nil or W.shutting_down then
    return nil, format("cannot connect to %s port %d: connection refused", host, port)
  end
  local client_addr = find(addr, ":", 1, true) and "::1" or "127.0.0.1"
  local A = transport.new_end({ peer = { addr, port }, parent = owner })
  local B = server.accept(S, { client_addr, server.next_peer_port() }, A)
  A.sock, A.remote = { B.peer[1], B.peer[2] }, B
  conn.open(B, S.protocol)
  conn.open(A, Protocol)
  return A
end

-- Connect a client end running 'Protocol' to the Unix server at 'path'.
-- Returns the client end, or nil and why.
local function connect_unix_pair(owner, path, Protocol)
  local S = W.listening["unix:" .. path]
  if S == nil or W.shutting_down then
    return nil, format("cannot connect to unix:%s: no such file or directory", path)
  end
  local A = transport.new_end({ peer = server.unix_peer(path, nil), sock = { "" }, unix = true, parent = owner })
  local B = server.accept(S, server.unix_peer("", nil), A)
  A.remote = B
  conn.open(B, S.protocol)
  conn.open(A, Protocol)
  return A
end

-- A Unix socket path, checked as the host checks it.
local function check_path(fname, path, level)
  path = args.string(path, 1, fname, level + 1)
  if path == "" or find(path, "\0", 1, true) then
    args.bad(1, fname, "path must be a non-empty string without NUL bytes", level + 1)
  end
  return path
end

function core.connect_unix(path, Protocol, cb)
  path = check_path("connect_unix", path, 2)
  if #path > 107 then args.bad(1, "connect_unix", "a Unix socket path has at most 107 bytes", 2) end
  if type(Protocol) ~= "table" then args.expected(2, "connect_unix", "table", Protocol, 2) end
  args.fn(cb, 3, "connect_unix", 2)
  local owner = W.owner
  clock.post(function()
    local A, err = connect_unix_pair(owner, path, Protocol)
    if A == nil then return report.callback(owner, "connect callback", cb, nil, err) end
    if A.instance == nil then return report.callback(owner, "connect callback", cb, nil, nil) end
    report.callback(owner, "connect callback", cb, A.transport, A.instance)
  end)
end

function core.listen_unix(path, Protocol)
  path = check_path("listen_unix", path, 2)
  if type(Protocol) ~= "table" then args.expected(2, "listen_unix", "table", Protocol, 2) end
  if #path > 107 then
    return nil, format("cannot listen on unix:%s: name too long (a Unix socket path has at most 107 bytes)", path)
  end
  local S, err = server.new(Protocol, nil, nil, { unix = path }, W.owner, nil)
  if S == nil then return nil, err .. " (another process is listening on it; stop it first, it is not removed)" end
  return S.object
end

function core.connect(host, port, Protocol, cb)
  host, port = check_address_args("connect", host, port, Protocol, cb, 1)
  local owner = W.owner
  clock.post(function()
    local A, err = connect_pair(owner, host, port, Protocol)
    if A == nil then return report.callback(owner, "connect callback", cb, nil, err) end
    if A.instance == nil then return report.callback(owner, "connect callback", cb, nil, nil) end -- as the host does
    report.callback(owner, "connect callback", cb, A.transport, A.instance)
  end)
end

-- Listen at host:port for core.listen: the server object, or nil and why.
local function listen(owner, host, port, Protocol)
  local addr, why = resolve(host, port)
  if addr == nil then return nil, why end
  local S, err = server.new(Protocol, addr, port, {}, owner, nil)
  return S and S.object, err
end

function core.listen(host, port, Protocol, cb)
  host, port = check_address_args("listen", host, port, Protocol, cb, 0)
  local owner = W.owner
  clock.post(function()
    report.callback(owner, "listen callback", cb, listen(owner, host, port, Protocol))
  end)
end

-- An optional host argument (nil or a string).
local function opt_host(v, i)
  if v == nil then return nil end
  return args.string(v, i, "datagram_endpoint", 3)
end

-- Resolve, bind, connect and start an endpoint for core.datagram_endpoint:
-- its record, or nil and the host's message.
local function open_endpoint(owner, Protocol, local_host, local_port, remote_host, remote_port)
  local here, there
  if local_host then
    here = server.resolve(local_host)
    if here == nil then
      return nil, format("cannot resolve %s port %d: unknown node or service", local_host, local_port)
    end
  end
  if remote_host then
    there = server.resolve(remote_host)
    if there == nil then
      return nil, format("cannot resolve %s port %d: unknown node or service", remote_host, remote_port)
    end
  end
  if W.shutting_down then return nil, "cannot create a datagram endpoint: operation canceled" end
  if here == nil then -- bound to any port, seen from the loopback address of the remote's family
    here = find(there, ":", 1, true) and "::1" or "127.0.0.1"
    local_port = 0
  end
  local E, why = datagram.bind(Protocol, here, local_port, there and { there, remote_port } or nil,
    { parent = owner })
  if E == nil then
    return nil, format("cannot bind to %s port %d: %s", local_host or "the wildcard address",
      local_host and local_port or 0, why)
  end
  datagram.start(E)
  return E
end

function core.datagram_endpoint(Protocol, local_host, local_port, remote_host, remote_port, cb)
  if type(Protocol) ~= "table" then args.expected(1, "datagram_endpoint", "table", Protocol, 2) end
  local_host = opt_host(local_host, 2)
  local_port = local_port == nil and 0 or args.integer(local_port, 3, "datagram_endpoint", 2)
  if local_port < 0 or local_port > 65535 then args.bad(3, "datagram_endpoint", "port must be 0 to 65535", 2) end
  remote_host = opt_host(remote_host, 4)
  remote_port = remote_port == nil and 0 or args.integer(remote_port, 5, "datagram_endpoint", 2)
  if remote_host and (remote_port < 1 or remote_port > 65535) then
    args.bad(5, "datagram_endpoint", "port must be 1 to 65535", 2)
  end
  args.fn(cb, 6, "datagram_endpoint", 2)
  if local_host == nil and remote_host == nil then
    error("luaecho.create_datagram_endpoint(): give a local address, a remote one, or both", 2)
  end
  local refused = datagram.refusal(Protocol, "luaecho.create_datagram_endpoint()", "the")
  if refused then error(refused, 2) end
  local owner = W.owner
  clock.post(function()
    local E, err = open_endpoint(owner, Protocol, local_host, local_port, remote_host, remote_port)
    if E == nil then return report.callback(owner, "datagram endpoint callback", cb, nil, err) end
    report.callback(owner, "datagram endpoint callback", cb, E.transport, E.instance)
  end)
end

function core.on_server_finished(object, fn)
  local S = server.check(object, "on_server_finished")
  args.fn(fn, 2, "on_server_finished", 2)
  if server.finished(S) then
    fn()
    return
  end
  S.waiters[#S.waiters + 1] = fn
end

function core.shutdown(why)
  server.shutdown(args.string(why, 1, "shutdown", 2))
end

--- Put the fake core in package.loaded. Raises, 'level' above the
-- caller, inside the real host, whose luaecho.core is already there.
function M.install(level)
  local present = package.loaded["luaecho.core"]
  if present ~= nil and not rawget(present, "_testing") then
    error("luaecho.testing runs under plain busted, not inside luaecho (luaecho.core is the host's)", level + 1)
  end
  package.loaded["luaecho.core"] = core
end

return M
