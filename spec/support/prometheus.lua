--- A real Prometheus (2.42, Debian's `prometheus`, from scripts/setup)
-- scraping a luaecho under test, and promtool to check an exposition.
-- start() writes a config to a scratch directory (one job, `luaecho`,
-- scraping one target every second), keeps the TSDB in that directory too,
-- and runs `prometheus` on a free loopback port; it waits (bounded) until
-- /-/ready answers 200. query() asks the HTTP API
-- (`GET /api/v1/query?query=...`) and decodes the JSON answer with
-- support.json. stop() ends it by its PID (SIGTERM, SIGKILL if it lingers)
-- and removes the scratch directory. Prometheus cannot be told to bind port
-- 0 and report it, so the port is picked free just before it starts;
-- start() tries again with another if it was taken meanwhile.
-- Output goes to temp files, as in support.server; nothing here sleeps for a
-- fixed time. Starting, waiting and stopping are support.component's.
-- @usage
--   local prom = prometheus.start({ target = "127.0.0.1:" .. proc.metrics_port })
--   prom:wait_value("sum(luaecho_connections_open)", 3, 20)
--   after_each(function() assert.are.same({}, prometheus.stop_all()) end)
local uv = require "luv"
local socket = require "socket"
local url = require "socket.url"
local component = require "support.component"
local files = require "support.files"
local json = require "support.json"
local wait = require "support.wait"

local M = {}

M.HOST = component.HOST

--- The prometheus binary: $LUAECHO_PROMETHEUS, else `prometheus` on $PATH.
function M.bin()
  return os.getenv("LUAECHO_PROMETHEUS") or component.find("prometheus")
end

--- The promtool binary: $LUAECHO_PROMTOOL, else `promtool` on $PATH.
function M.promtool_bin()
  return os.getenv("LUAECHO_PROMTOOL") or component.find("promtool")
end

-- Run `bin` with `args`, stdin read from the file `input`, to its end
-- within `timeout` seconds; returns code, stdout, stderr. Kills it (and
-- raises) if it does not end in time.
local function run_with_input(bin, args, input, timeout)
  local scratch = files.scratch("promtool")
  local in_path = scratch:write("stdin", input)
  local out_path, err_path = scratch:path("stdout"), scratch:path("stderr")
  local in_fd = assert(uv.fs_open(in_path, "r", 0))
  local out_fd = assert(uv.fs_open(out_path, "w", tonumber("600", 8)))
  local err_fd = assert(uv.fs_open(err_path, "w", tonumber("600", 8)))
  local code
  local handle, pid = uv.spawn(bin, { args = args, stdio = { in_fd, out_fd, err_fd } },
    function(c) code = c end)
  uv.fs_close(in_fd)
  uv.fs_close(out_fd)
  uv.fs_close(err_fd)
  if not handle then
    scratch:remove()
    error(("cannot start %s: %s"):format(bin, tostring(pid)), 0)
  end
  local ok = pcall(wait.until_true, function() uv.run("nowait"); return code ~= nil end, timeout or 10)
  if not ok then uv.process_kill(handle, "sigkill") end
  local out, err = files.read_if_present(out_path), files.read_if_present(err_path)
  handle:close()
  uv.run("nowait")
  scratch:remove()
  if not ok then error(("%s did not end within %gs"):format(bin, timeout or 10), 0) end
  return code, out, err
end

--- `promtool check metrics` with `body` (an exposition) on its stdin;
-- returns its exit code and everything it printed (stdout then stderr).
function M.check_metrics(body, timeout)
  local bin = M.promtool_bin()
  if not bin then
    error("promtool not found (Debian package prometheus; scripts/setup installs it, or set $LUAECHO_PROMTOOL)", 2)
  end
  local code, out, err = run_with_input(bin, { "check", "metrics" }, body, timeout)
  return code, out .. err
end

--- The configuration text: scrape `target` (HOST:PORT) at `path` every
-- `interval` seconds as job `luaecho`.
function M.config(target, path, interval)
  local every = ("%gs"):format(interval)
  return table.concat({
    "global:",
    "  scrape_interval: " .. every,
    "  scrape_timeout: " .. every,
    "  evaluation_interval: " .. every,
    "scrape_configs:",
    "  - job_name: luaecho",
    "    metrics_path: " .. path,
    "    static_configs:",
    ("      - targets: ['%s']"):format(target),
    "",
  }, "\n")
end

--- GET `path` from HOST:port over HTTP/1.0 (so the answer is neither
-- chunked nor kept alive) within `timeout` seconds; returns status, body,
-- or nil and the error when the connection fails.
function M.http_get(port, path, timeout)
  local sock = socket.tcp()
  sock:settimeout(timeout or 2)
  local ok, err = sock:connect(M.HOST, port)
  if not ok then
    sock:close()
    return nil, err
  end
  sock:send(("GET %s HTTP/1.0\r\nHost: %s:%d\r\n\r\n"):format(path, M.HOST, port))
  local raw, rerr, partial = sock:receive("*a")
  sock:close()
  raw = raw or partial
  if not raw or raw == "" then return nil, rerr or "empty answer" end
  local status, body = raw:match("^HTTP/1%.%d (%d%d%d)[^\r\n]*\r\n.-\r\n\r\n(.*)$")
  if not status then return nil, ("no HTTP answer: %q"):format(raw:sub(1, 200)) end
  return tonumber(status), body
end

local Instance = component.kind("prometheus")

function Instance:describe()
  return ("prometheus on %s:%d\n--- config:\n%s--- output (last 3000 bytes):\n%s"):format(M.HOST, self.port,
    files.read_if_present(self.config_path), self:output():sub(-3000))
end

-- /-/ready answers 200: the TSDB is open and the web API serves. Raises
-- if Prometheus has exited.
function Instance:ready()
  if self:exited() then
    error(("prometheus exited with %s before it was ready\n%s"):format(tostring(self.code), self:describe()), 0)
  end
  return M.http_get(self.port, "/-/ready", 1) == 200
end

--- Run an instant query; returns the result list, each entry
-- { metric = { label = value }, value = number } (a vector query), or
-- raises with Prometheus' error.
function Instance:query(expr)
  local status, body = M.http_get(self.port, "/api/v1/query?query=" .. url.escape(expr), 5)
  if not status then error(("query %q: %s"):format(expr, tostring(body)), 2) end
  local ok, answer = pcall(json.decode, body)
  if status ~= 200 or not ok or answer.status ~= "success" then
    error(("query %q: HTTP %d: %s"):format(expr, status, body:sub(1, 500)), 2)
  end
  local results = {}
  for i, r in ipairs(answer.data.result) do
    results[i] = { metric = r.metric, value = tonumber(r.value[2]) }
  end
  return results
end

--- The active targets as /api/v1/targets reports them: a list of
-- { scrapeUrl = ..., health = "up" | "down" | "unknown", lastError = ... }.
function Instance:targets()
  local status, body = M.http_get(self.port, "/api/v1/targets?state=active", 5)
  if status ~= 200 then error(("GET /api/v1/targets: %s %s"):format(tostring(status), tostring(body)), 2) end
  return json.decode(body).data.activeTargets
end

--- The value of `expr` as one number, or nil while it has no sample (a
-- query that gives several samples is an error).
function Instance:value(expr)
  local results = self:query(expr)
  if #results > 1 then error(("query %q gave %d samples, not one"):format(expr, #results), 2) end
  return results[1] and results[1].value
end

--- Wait (at most `timeout` seconds, default 20) until `expr` has the value
-- `want`; returns it. On a timeout the error says the last value seen.
function Instance:wait_value(expr, want, timeout)
  local last
  local ok, err = pcall(wait.until_true, function()
    if self:exited() then
      error(("prometheus exited with %s\n%s"):format(tostring(self.code), self:describe()), 0)
    end
    last = self:value(expr)
    return last == want
  end, timeout or 20, ("%s == %s"):format(expr, tostring(want)))
  if not ok then
    error(("%s (last value seen: %s)"):format(tostring(err), tostring(last)), 2)
  end
  return last
end

-- Start one Prometheus on `port` with `config`; returns the Instance at once.
local function spawn(bin, scratch, port, config)
  local config_path = scratch:write("prometheus.yml", config)
  return component.spawn(Instance, bin, scratch, {
    "--config.file=" .. config_path,
    "--storage.tsdb.path=" .. scratch:path("data"),
    ("--web.listen-address=%s:%d"):format(M.HOST, port),
    "--log.level=warn",
  }, { port = port, config_path = config_path })
end

--- Start Prometheus scraping opts.target (HOST:PORT, required) at
-- opts.path (default /metrics) every opts.interval seconds (default 1) and
-- wait (at most opts.timeout seconds, default 15) until it is ready.
-- Returns the instance: instance.port is its web port.
function M.start(opts)
  local bin = M.bin()
  if not bin then
    error("prometheus not found (Debian package prometheus; scripts/setup installs it, or set $LUAECHO_PROMETHEUS)", 2)
  end
  assert(opts and opts.target, "prometheus.start: target is required")
  local config = M.config(opts.target, opts.path or "/metrics", opts.interval or 1)
  local self, err = component.start(function()
    return spawn(bin, files.scratch("prometheus"), component.free_port(), config)
  end, opts.timeout or 15, "prometheus to be ready", "address already in use")
  if not self then error(err, 2) end
  return self
end

--- Stop every instance still running; for after_each. Returns the problems
-- (Instance:stop, as support.component says: the TSDB goes with the
-- scratch directory).
M.stop_all = Instance.registry.stop_all

return M
