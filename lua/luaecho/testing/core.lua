--- The fake `luaecho.core`: what the host's C module (src/module.c) gives
-- the luaecho and luaecho.log modules (log, now, timer, connect, listen,
-- on_server_finished, shutdown, server_methods), over the fake host's
-- clock, servers and connections. install() puts it in package.loaded, so
-- that `require "luaecho"` works under plain busted.
-- Relies on luaecho.testing.world, .clock, .report, .args, .conn,
-- .transport and .server.
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
local format, find = string.format, string.find
local ceil = math.ceil
local error, package, rawget, setmetatable, tostring, type = error, package, rawget, setmetatable, tostring, type

local W = world.W

local M = {}

--- The fake luaecho.core table.
local core = { server_methods = server.methods, _testing = true }
M.core = core

local LEVELS = { error = true, warn = true, info = true, debug = true }

function core.log(level, message)
  if not LEVELS[level] then args.bad(1, "log", format("invalid option '%s'", tostring(level)), 2) end
  report.log(W.owner, level, args.string(message, 2, "log", 2))
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
