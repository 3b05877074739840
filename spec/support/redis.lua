--- A real Redis (7.0, Debian's `redis-server`, from scripts/setup) for the
-- specs of luaecho.redis: started in the foreground on a free loopback port
-- (and, when asked, a Unix socket) in a scratch directory, with no
-- persistence (`--save '' --appendonly no`), waited for until it answers
-- PING, stopped by its PID. kill() and restart() make a crash: SIGKILL,
-- then a new one on the same port. Starting, waiting and stopping are
-- support.component's.
-- @usage
--   local r = redis.start({ password = "s3cret", unix = true })
--   r:url(2)  --> "redis://:s3cret@127.0.0.1:PORT/2"
--   r:command("SET", "k", "v")  -- a blocking client of its own, for checks
--   after_each(function() assert.are.same({}, redis.stop_all()) end)
local socket = require "socket"
local uv = require "luv"
local wait = require "support.wait"
local component = require "support.component"
local files = require "support.files"

local M = {}

M.HOST = component.HOST

--- The redis-server binary: $LUAECHO_REDIS_SERVER, else the first on $PATH.
function M.bin()
  return os.getenv("LUAECHO_REDIS_SERVER") or component.find("redis-server")
end

local Instance = component.kind("redis-server")

function Instance:describe()
  return ("redis-server on %s:%d%s\n--- output:\n%s"):format(M.HOST, self.port,
    self.socket_path and (" and " .. self.socket_path) or "", self:output())
end

-- One RESP command as bytes.
local function encode(args)
  local parts = { ("*%d\r\n"):format(#args) }
  for _, a in ipairs(args) do
    a = tostring(a)
    parts[#parts + 1] = ("$%d\r\n%s\r\n"):format(#a, a)
  end
  return table.concat(parts)
end

-- Read one RESP reply from `sock`: a string, an integer, a table, nil, or
-- false and the error text for an error reply.
local function decode(sock)
  local line = assert(sock:receive("*l"))
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return false, rest end
  if kind == ":" then return math.tointeger(tonumber(rest)) end
  if kind == "$" then
    local n = tonumber(rest)
    if n < 0 then return nil end
    local data = assert(sock:receive(n + 2))
    return data:sub(1, n)
  end
  if kind == "*" then
    local t = {}
    for i = 1, tonumber(rest) do t[i] = decode(sock) end
    return t
  end
  error("bad RESP line: " .. line)
end

--- Send one command to database `db` on a new blocking connection
-- (authenticated when the instance has a password) and return its reply,
-- as decode() gives it.
function Instance:command_in(db, ...)
  local sock = assert(socket.tcp())
  sock:settimeout(5)
  assert(sock:connect(M.HOST, self.port))
  if self.password then
    sock:send(encode({ "AUTH", self.password }))
    assert(decode(sock) == "OK", "AUTH failed")
  end
  if db ~= 0 then
    sock:send(encode({ "SELECT", db }))
    assert(decode(sock) == "OK", "SELECT failed")
  end
  sock:send(encode({ ... }))
  local a, b = decode(sock)
  sock:close()
  return a, b
end

--- command_in(0, ...).
function Instance:command(...)
  return self:command_in(0, ...)
end

--- A redis:// URL of this instance (with its password, and db if given).
function Instance:url(db)
  local auth = self.password and (":" .. self.password .. "@") or ""
  return ("redis://%s%s:%d%s"):format(auth, M.HOST, self.port, db and ("/" .. db) or "")
end

-- It answers PING (or NOAUTH, which is an answer too); raises if it exited.
function Instance:ready()
  if self:exited() then
    error(("redis-server exited with %s before serving\n%s"):format(tostring(self.code), self:describe()), 0)
  end
  local sock = socket.tcp()
  sock:settimeout(0.5)
  local ok = sock:connect(M.HOST, self.port)
  local answered = false
  if ok then
    sock:send(encode({ "PING" }))
    local line = sock:receive("*l")
    answered = line == "+PONG" or (line ~= nil and line:find("NOAUTH", 1, true) ~= nil)
  end
  sock:close()
  return answered
end

-- Start one redis-server with `opts` on `port` in `scratch`.
local function spawn(bin, scratch, port, opts)
  local args = { "--port", tostring(port), "--bind", M.HOST, "--save", "", "--appendonly", "no",
    "--dir", scratch.dir, "--daemonize", "no" }
  local fields = { host = M.HOST, port = port, password = opts.password, opts = opts }
  if opts.password then
    args[#args + 1] = "--requirepass"
    args[#args + 1] = opts.password
  end
  if opts.unix then
    fields.socket_path = scratch:path("redis.sock")
    args[#args + 1] = "--unixsocket"
    args[#args + 1] = fields.socket_path
  end
  return component.spawn(Instance, bin, scratch, args, fields)
end

--- Start redis-server and wait (bounded) until it answers. opts.password:
-- --requirepass; opts.unix = true: also a Unix socket (instance.socket_path);
-- opts.port: this port rather than a free one; opts.timeout: seconds to wait
-- (default 10). Returns the instance (host, port, socket_path, url(db)).
function M.start(opts)
  opts = opts or {}
  local bin = M.bin()
  if not bin then
    error("redis-server not found (Debian package redis-server; scripts/setup installs it)", 2)
  end
  local self, err = component.start(function()
    return spawn(bin, files.scratch("redis"), opts.port or component.free_port(), opts)
  end, opts.timeout or 10, "redis-server to answer PING", "Address already in use")
  if not self then error(err, 2) end
  return self
end

--- Stop this one with SIGKILL (a crash, not a goodbye) and wait until it
-- is gone; its scratch directory goes too.
function Instance:kill()
  uv.process_kill(self.handle, "sigkill")
  wait.until_true(function() return self:exited() end, 5, "redis-server to die")
  self:stop() -- says it "exited by itself": expected here
end

--- A new redis-server on the same port as this stopped one, with the same
-- password (a Unix socket, if any, in a new directory).
function Instance:restart()
  local opts = {}
  for k, v in pairs(self.opts) do opts[k] = v end
  opts.port = self.port
  return M.start(opts)
end

--- Stop every instance still running; for after_each. Returns the problems.
M.stop_all = Instance.registry.stop_all

return M
