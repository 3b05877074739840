--- A real HAProxy (2.6, Debian's `haproxy`, from scripts/setup) in front of
-- a luaecho under test, for the PROXY protocol specs.
-- It runs in the foreground (`haproxy -db -f CFG`) with a config written to a
-- scratch directory: mode tcp, one frontend on a free loopback port, one
-- backend server (the luaecho) sent a PROXY header (`send-proxy` for v1,
-- `send-proxy-v2` for v2), no health checks, short timeouts. A second
-- frontend, the probe, rejects every connection it accepts: start() waits
-- until a probe is accepted and closed by HAProxy itself, so HAProxy is up
-- and serving, and no probe ever reaches the luaecho (whose specs count the
-- connections its script sees). Output goes to temp files, as in
-- support.server. HAProxy cannot bind port 0, so the ports are picked free
-- just before it starts; start() tries again with new ones if one was taken
-- meanwhile.
-- @usage
--   local lb = haproxy.start({ backend_port = proc.port, send_proxy = "send-proxy-v2" })
--   local conn = client.connect(lb.host, lb.port)
--   ...
--   after_each(function() assert.are.same({}, haproxy.stop_all()) end)
local uv = require "luv"
local socket = require "socket"
local files = require "support.files"
local wait = require "support.wait"

local M = {}

M.HOST = "127.0.0.1"

-- Instances started and not yet stopped, so teardown can stop leftovers.
local live = {}

--- The haproxy binary: $LUAECHO_HAPROXY, else the first `haproxy` on $PATH
-- or in /usr/sbin (where Debian puts it, often off a user's $PATH).
function M.bin()
  local env = os.getenv("LUAECHO_HAPROXY")
  if env then return env end
  for dir in ((os.getenv("PATH") or "") .. ":/usr/sbin:/usr/local/sbin"):gmatch("[^:]+") do
    local path = dir .. "/haproxy"
    local stat = uv.fs_stat(path)
    if stat and stat.type == "file" then return path end
  end
  return nil
end

-- A port no one listens on now: bound to port 0, then released.
local function free_port()
  local sock = assert(socket.bind(M.HOST, 0))
  local _, port = sock:getsockname()
  sock:close()
  return tonumber(port)
end

--- The configuration text: the frontend on `port`, the probe on
-- `probe_port`, the backend sending `send_proxy` to luaecho on `backend_port`.
function M.config(port, probe_port, backend_host, backend_port, send_proxy)
  return table.concat({
    "global",
    "    nbthread 1",
    "    maxconn 512",
    "defaults",
    "    mode tcp",
    "    timeout connect 2s",
    "    timeout client 10s",
    "    timeout server 10s",
    "frontend fe",
    ("    bind %s:%d"):format(M.HOST, port),
    "    default_backend be",
    "frontend probe",
    ("    bind %s:%d"):format(M.HOST, probe_port),
    "    tcp-request connection reject",
    "backend be",
    -- No `check`: a health check would open connections of its own to the
    -- luaecho (without a PROXY header unless check-send-proxy).
    ("    server s1 %s:%d %s"):format(backend_host, backend_port, send_proxy),
    "",
  }, "\n")
end

local Instance = {}
Instance.__index = Instance

--- True once HAProxy has exited (its code is then in self.code).
function Instance:exited()
  uv.run("nowait") -- libuv reaps children in its SIGCHLD handler
  return self.code ~= nil
end

function Instance:output()
  return files.read_if_present(self.out_path) .. files.read_if_present(self.err_path)
end

function Instance:describe()
  return ("haproxy -db -f %s\n--- config:\n%s--- output:\n%s"):format(self.config_path,
    files.read_if_present(self.config_path), self:output())
end

-- The probe was accepted and closed by HAProxy: it serves. A refused
-- connect means it has not bound yet; raises if HAProxy has exited.
function Instance:serving()
  if self:exited() then
    error(("haproxy exited with %s before serving\n%s"):format(tostring(self.code), self:describe()), 0)
  end
  local probe = socket.tcp()
  probe:settimeout(0.5)
  local ok = probe:connect(M.HOST, self.probe_port)
  local served = false
  if ok then
    local _, err = probe:receive(1)
    served = err == "closed" or err == "connection reset by peer"
  end
  probe:close()
  return served
end

-- Start one HAProxy with `config`; returns the Instance at once.
local function spawn(bin, scratch, config)
  local self = setmetatable({ scratch = scratch }, Instance)
  self.config_path = scratch:write("haproxy.cfg", config)
  self.out_path, self.err_path = scratch:path("stdout"), scratch:path("stderr")
  local out_fd = assert(uv.fs_open(self.out_path, "w", tonumber("600", 8)))
  local err_fd = assert(uv.fs_open(self.err_path, "w", tonumber("600", 8)))
  local handle, pid = uv.spawn(bin, {
    args = { "-db", "-f", self.config_path },
    stdio = { nil, out_fd, err_fd },
  }, function(code, signal)
    self.code, self.signal = code, signal
  end)
  uv.fs_close(out_fd)
  uv.fs_close(err_fd)
  if not handle then error(("cannot start %s: %s"):format(bin, tostring(pid)), 0) end
  self.handle, self.pid = handle, pid
  live[self] = true
  return self
end

--- Start HAProxy in front of a luaecho and wait (bounded) until it serves.
-- opts.backend_port (required), opts.backend_host (default 127.0.0.1),
-- opts.send_proxy: "send-proxy" (v1, the default) or "send-proxy-v2";
-- opts.timeout: seconds to wait for it (default 10). Returns the instance:
-- instance.host, instance.port is where clients connect.
function M.start(opts)
  local bin = M.bin()
  if not bin then
    error("haproxy not found (Debian package haproxy; scripts/setup installs it, or set $LUAECHO_HAPROXY)", 2)
  end
  assert(opts and opts.backend_port, "haproxy.start: backend_port is required")
  local last
  for _ = 1, 3 do -- a port picked free may be taken before HAProxy binds it
    local scratch = files.scratch("haproxy")
    local port, probe_port = free_port(), free_port()
    while probe_port == port do probe_port = free_port() end
    local self = spawn(bin, scratch, M.config(port, probe_port, opts.backend_host or M.HOST,
      opts.backend_port, opts.send_proxy or "send-proxy"))
    self.host, self.port, self.probe_port = M.HOST, port, probe_port
    local ok, err = pcall(wait.until_true, function() return self:serving() end, opts.timeout or 10,
      "haproxy to serve its probe port")
    if ok then return self end
    last = tostring(err) .. "\n" .. self:describe()
    self:stop()
    if not last:find("cannot bind", 1, true) then break end
  end
  error(last, 2)
end

--- Stop HAProxy by its PID (SIGTERM, SIGKILL if it lingers), reap it and
-- remove its scratch directory. Returns a list of problems: it died before
-- it was told to, or would not stop. Safe to call more than once.
function Instance:stop()
  if not live[self] then return {} end
  local problems = {}
  if self:exited() then
    problems[#problems + 1] = ("haproxy exited by itself (code %s, signal %s)\n%s"):format(
      tostring(self.code), tostring(self.signal), self:describe())
  else
    uv.process_kill(self.handle, "sigterm")
    if not pcall(wait.until_true, function() return self:exited() end, 5) then
      uv.process_kill(self.handle, "sigkill")
      pcall(wait.until_true, function() return self:exited() end, 5)
      problems[#problems + 1] = "haproxy still running 5s after SIGTERM: killed"
    end
  end
  if not self.handle:is_closing() then self.handle:close() end
  uv.run("nowait")
  self.scratch:remove()
  live[self] = nil
  return problems
end

--- Stop every instance still running; for after_each. Returns the problems.
function M.stop_all()
  local problems = {}
  for instance in pairs(live) do
    for _, problem in ipairs(instance:stop()) do problems[#problems + 1] = problem end
  end
  return problems
end

-- If busted ends without a teardown having run, still kill the children.
M._guard = setmetatable({}, { __gc = function()
  for instance in pairs(live) do pcall(uv.process_kill, instance.handle, "sigkill") end
end })

return M
