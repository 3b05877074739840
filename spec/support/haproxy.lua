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
-- meanwhile. Starting, waiting and stopping are support.component's.
-- @usage
--   local lb = haproxy.start({ backend_port = proc.port, send_proxy = "send-proxy-v2" })
--   local conn = client.connect(lb.host, lb.port)
--   ...
--   after_each(function() assert.are.same({}, haproxy.stop_all()) end)
local socket = require "socket"
local component = require "support.component"
local files = require "support.files"

local M = {}

M.HOST = component.HOST

--- The haproxy binary: $LUAECHO_HAPROXY, else the first `haproxy` on $PATH
-- or in /usr/sbin (where Debian puts it, often off a user's $PATH).
function M.bin()
  return os.getenv("LUAECHO_HAPROXY") or component.find("haproxy")
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

local Instance = component.kind("haproxy")

function Instance:describe()
  return ("haproxy -db -f %s\n--- config:\n%s--- output:\n%s"):format(self.config_path,
    files.read_if_present(self.config_path), self:output())
end

-- The probe was accepted and closed by HAProxy: it serves. A refused
-- connect means it has not bound yet; raises if HAProxy has exited.
function Instance:ready()
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

-- Start one HAProxy with `config` in `scratch`; returns the Instance at once.
local function spawn(bin, scratch, config, fields)
  local config_path = scratch:write("haproxy.cfg", config)
  fields.config_path = config_path
  return component.spawn(Instance, bin, scratch, { "-db", "-f", config_path }, fields)
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
  local self, err = component.start(function()
    local port, probe_port = component.free_port(), component.free_port()
    while probe_port == port do probe_port = component.free_port() end
    return spawn(bin, files.scratch("haproxy"), M.config(port, probe_port, opts.backend_host or M.HOST,
      opts.backend_port, opts.send_proxy or "send-proxy"), { host = M.HOST, port = port, probe_port = probe_port })
  end, opts.timeout or 10, "haproxy to serve its probe port", "cannot bind")
  if not self then error(err, 2) end
  return self
end

--- Start HAProxy with a configuration of the spec's own and wait (bounded)
-- until it serves: `make_config(port, probe_port)` returns the text, whose
-- frontend binds M.HOST:port; the probe frontend (on probe_port) is
-- appended here. For a config from deploy/ (spec/integration/scale_out_spec.lua).
-- opts.timeout: seconds to wait (default 10). Returns the instance.
function M.start_config(make_config, opts)
  local bin = M.bin()
  if not bin then
    error("haproxy not found (Debian package haproxy; scripts/setup installs it, or set $LUAECHO_HAPROXY)", 2)
  end
  local self, err = component.start(function()
    local port, probe_port = component.free_port(), component.free_port()
    while probe_port == port do probe_port = component.free_port() end
    local config = make_config(port, probe_port) .. table.concat({
      "", "frontend probe",
      ("    bind %s:%d"):format(M.HOST, probe_port),
      "    tcp-request connection reject", "" }, "\n")
    return spawn(bin, files.scratch("haproxy"), config, { host = M.HOST, port = port, probe_port = probe_port })
  end, (opts and opts.timeout) or 10, "haproxy to serve its probe port", "cannot bind")
  if not self then error(err, 2) end
  return self
end

--- Stop every instance still running; for after_each. Returns the problems
-- (Instance:stop, as support.component says).
M.stop_all = Instance.registry.stop_all

return M
