--- Start the real luaecho binary for integration specs and watch it.
-- The child's stdout and stderr go to temporary files, not pipes: a handler
-- that prints per chunk would fill a pipe and stall the server while the spec
-- sits in a blocking socket call. Every wait polls with a deadline.
-- @usage
--   local proc = server.start({ server.fixture("trace.lua") })
--   local conn = client.connect(proc.host, proc.port)
--   ...
--   after_each(function()
--     client.close_all()
--     assert.are.same({}, server.stop_all()) -- no crash, no sanitizer report
--   end)
local uv = require "luv"
local component = require "support.component"
local files = require "support.files"
local sanitizer = require "support.sanitizer"
local text_of = require "support.text"
local wait = require "support.wait"

local M = {}

-- Every process started and not yet reaped, so teardown can kill leftovers
-- (and closing the Lua state kills any a teardown missed).
local live = component.registry()

-- Environment variables that steer luaecho; an operator's own settings must
-- not leak into specs, which pass them explicitly when they test them.
local STEERING = { "LUAECHO_HOST", "LUAECHO_PORT" }

-- The working directory busted runs in (the repository root).
local function root()
  return assert(uv.cwd())
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return root() .. "/" .. path
end

--- Path of the binary under test: $LUAECHO_BIN, else build/luaecho.
function M.bin()
  return absolute(os.getenv("LUAECHO_BIN") or "build/luaecho")
end

--- Call fn() while M.bin() names `path` instead, and put it back after,
-- even when fn raises; returns what fn returns. For specs of another binary
-- (an installed one) or a launcher in front of it (a shell that sets limits).
function M.with_bin(path, fn)
  local bin = M.bin
  M.bin = function() return path end
  local results = table.pack(pcall(fn))
  M.bin = bin
  if not results[1] then error(results[2], 0) end
  return table.unpack(results, 2, results.n)
end

--- The bundled Lua directory: $LUAECHO_LUA_DIR, else lua/ in the repository.
function M.lua_dir()
  return absolute(os.getenv("LUAECHO_LUA_DIR") or "lua")
end

--- Absolute path of a bundled script, e.g. M.script("examples/plain_echo.lua").
function M.script(name)
  return M.lua_dir() .. "/" .. name
end

--- Absolute path of a handler script under spec/fixtures.
function M.fixture(name)
  return root() .. "/spec/fixtures/" .. name
end

-- The environment as a "K=V" list: ours, minus the steering variables,
-- with `overrides` applied (a value of false removes the variable).
local function environment(overrides)
  local env = uv.os_environ()
  for _, name in ipairs(STEERING) do env[name] = nil end
  for name, value in pairs(overrides or {}) do
    env[name] = value or nil
  end
  local list = {}
  for name, value in pairs(env) do list[#list + 1] = name .. "=" .. value end
  return list
end

-- A fresh temp file opened for the child to write to; returns path, fd.
local function output_file()
  local path = os.tmpname()
  local fd = assert(uv.fs_open(path, "w", tonumber("600", 8)))
  return path, fd
end

local Proc = {}
Proc.__index = Proc

--- Start the binary with exactly `args` (a list) and return a Proc at once.
-- opts.env: variables to set (false to unset); opts.cwd: working directory.
function M.spawn(args, opts)
  opts = opts or {}
  local self = setmetatable({ args = args }, Proc)
  local out_fd, err_fd
  self.out_path, out_fd = output_file()
  self.err_path, err_fd = output_file()
  local handle, pid = uv.spawn(M.bin(), {
    args = args,
    stdio = { nil, out_fd, err_fd },
    env = environment(opts.env),
    cwd = opts.cwd or root(),
  }, function(code, signal)
    self.code, self.signal = code, signal
  end)
  -- The child holds its own copies of the descriptors now.
  uv.fs_close(out_fd)
  uv.fs_close(err_fd)
  if not handle then
    self:remove_files()
    error(("cannot start %s: %s"):format(M.bin(), tostring(pid)), 2)
  end
  self.handle, self.pid = handle, pid
  live.add(self)
  return self
end

--- Start the binary listening on a free port and wait for its port line.
-- `--port 0` is appended unless opts.port says otherwise (false: no flag,
-- so the environment or the default decides). Returns the Proc with
-- proc.host and proc.port set.
function M.start(args, opts)
  opts = opts or {}
  local full = { table.unpack(args or {}) }
  if opts.port ~= false then
    full[#full + 1] = "--port"
    full[#full + 1] = tostring(opts.port or 0)
  end
  local proc = M.spawn(full, opts)
  proc:wait_listening(opts.timeout)
  return proc
end

--- How many listeners `args` asks for: one per --listen (or --listen=SPEC).
function M.listen_count(args)
  local n = 0
  for _, arg in ipairs(args) do
    if arg == "--listen" or arg:match("^%-%-listen=") then n = n + 1 end
  end
  return n
end

--- One `luaecho: listening on NAME` name parsed: { kind = "tcp", "unix"
-- or "udp", name = NAME as printed, host, port (TCP, UDP; an IPv6 host
-- without its brackets) or path (Unix) }.
function M.parse_listener(name)
  local path = name:match("^unix:(.*)$")
  if path then return { kind = "unix", name = name, path = path } end
  local kind, address = "tcp", name
  if name:sub(1, 4) == "udp:" then kind, address = "udp", name:sub(5) end
  local host, port = address:match("^(.*):(%d+)$")
  return { kind = kind, name = name, host = host and (host:match("^%[(.*)%]$") or host), port = tonumber(port) }
end

--- Start the binary with exactly `args` (no --port added) and wait until
-- it has printed one `luaecho: listening on ...` line per --listen in args
-- (opts.count to expect another number; opts.timeout, default 5 s). Fails
-- at once, with the output, if the process exits first. Returns the Proc
-- with proc.listeners: a list, in the order printed, of the records
-- M.parse_listener makes; proc.host and proc.port are set from the first
-- TCP listener, if any. opts.env and opts.cwd as for M.spawn.
function M.start_listeners(args, opts)
  opts = opts or {}
  local want = opts.count or M.listen_count(args)
  local proc = M.spawn(args, opts)
  local names = wait.until_true(function()
    local found = {}
    for name in proc:stderr():gmatch("luaecho: listening on ([^\n]+)\n") do found[#found + 1] = name end
    if #found >= want then return found end
    if proc:exited() then
      error(("luaecho exited with %s after %d of %d 'listening on' lines\n%s"):format(
        tostring(proc.code), #found, want, proc:describe()), 0)
    end
  end, opts.timeout or 5, ("%d 'listening on' lines"):format(want))
  proc.listeners = {}
  for i, name in ipairs(names) do
    local listener = M.parse_listener(name)
    proc.listeners[i] = listener
    if listener.kind == "tcp" and not proc.host then proc.host, proc.port = listener.host, listener.port end
  end
  return proc
end

--- Run the binary to completion: returns exit code, stdout, stderr.
-- For commands that end on their own (--help, bad flags, bad scripts).
function M.run(args, opts, timeout)
  local proc = M.spawn(args, opts)
  local code = proc:wait_exit(timeout)
  local out, err = proc:stdout(), proc:stderr()
  proc:stop()
  return code, out, err
end

--- Everything the process has written to stdout so far.
function Proc:stdout()
  return files.read_if_present(self.out_path)
end

--- Everything the process has written to stderr so far.
function Proc:stderr()
  return files.read_if_present(self.err_path)
end

--- Let libuv notice a child exit (it reaps in its SIGCHLD handler).
local function reap()
  uv.run("nowait")
end

--- True once the process has exited (its code is then in proc.code).
function Proc:exited()
  reap()
  return self.code ~= nil
end

-- Describe the process for failure messages: args and both streams.
function Proc:describe()
  return ("luaecho %s\n--- stdout:\n%s\n--- stderr:\n%s"):format(
    table.concat(self.args, " "), self:stdout(), self:stderr())
end

--- Wait for the `luaecho: listening on HOST:PORT` line; returns host, port.
-- Fails at once (with the output) if the process exits first.
function Proc:wait_listening(timeout)
  local host, port = wait.until_true(function()
    local h, p = self:stderr():match("luaecho: listening on (%S+):(%d+)\n")
    if h then return h, p end
    if self:exited() then
      error(("luaecho exited with %s before listening\n%s"):format(
        tostring(self.code), self:describe()), 0)
    end
  end, timeout or 5, "the 'listening on' line")
  -- IPv6 hosts are printed in brackets: [::1]:PORT.
  self.host = host:match("^%[(.*)%]$") or host
  self.port = tonumber(port)
  return self.host, self.port
end

--- Wait for the `luaecho: metrics on ...` line (a --metrics endpoint) and
-- note where it is: proc.metrics_host and proc.metrics_port for TCP,
-- proc.metrics_path for a Unix socket. Returns the name as printed.
function Proc:wait_metrics(timeout)
  local name = self:wait_output("stderr", "luaecho: metrics on ([^\n]+)\n", timeout, "the 'metrics on' line")
  local path = name:match("^unix:(.*) %(GET /metrics%)$")
  if path then
    self.metrics_path = path
  else
    local host, port = name:match("^http://(.*):(%d+)/metrics$")
    self.metrics_host, self.metrics_port = host:match("^%[(.*)%]$") or host, tonumber(port)
  end
  return name
end

--- Wait for the `luaecho: admin console on NAME` line (--admin); returns
-- NAME as printed (HOST:PORT or unix:PATH), also kept in proc.admin.
function Proc:wait_admin(timeout)
  self.admin = self:wait_output("stderr", "luaecho: admin console on ([^\n]+)\n", timeout,
    "the 'admin console on' line")
  return self.admin
end

--- Wait until `stream` ("stdout" or "stderr") matches `pattern` and return
-- the captures. Fails if the process exits without producing it.
function Proc:wait_output(stream, pattern, timeout, what)
  return wait.until_true(function()
    local text = self[stream](self)
    local found = table.pack(text:match(pattern))
    if found[1] then return table.unpack(found, 1, found.n) end
    if self:exited() and not self[stream](self):match(pattern) then
      error(("luaecho exited with %s without writing %s\n%s"):format(
        tostring(self.code), what or pattern, self:describe()), 0)
    end
  end, timeout or 5, what or ("%q on %s"):format(pattern, stream))
end

--- Wait for `luaecho: reloaded SCRIPT (generation N)` on stderr.
function Proc:wait_reloaded(script, generation)
  return self:wait_output("stderr",
    ("luaecho: reloaded %s %%(generation %d%%)\n"):format(text_of.literal(script), generation), 10,
    ("the 'reloaded ... (generation %d)' line"):format(generation))
end

--- The generations of every `luaecho: reloaded` line so far, in order.
function Proc:reloads()
  local generations = {}
  for g in self:stderr():gmatch("luaecho: reloaded [^\n]* %(generation (%d+)%)\n") do
    generations[#generations + 1] = tonumber(g)
  end
  return generations
end

--- Count the lines of `stream` matching `pattern`.
function Proc:count(stream, pattern)
  local n = 0
  for line in self[stream](self):gmatch("[^\n]*") do
    if line:match(pattern) then n = n + 1 end
  end
  return n
end

--- Wait until `stream` has at least `n` lines matching `pattern`.
function Proc:wait_count(stream, pattern, n, timeout, what)
  return wait.until_true(function()
    if self:count(stream, pattern) >= n then return true end
    if self:exited() and self:count(stream, pattern) < n then
      error(("luaecho exited with %s before %d lines matched %q on %s\n%s"):format(
        tostring(self.code), n, pattern, stream, self:describe()), 0)
    end
  end, timeout or 5, what or ("%d lines %q on %s"):format(n, pattern, stream))
end

--- Send a signal by name ("sigterm", "sigint", "sigkill"). No-op once exited.
function Proc:signal(name)
  if self:exited() then return end
  self.signalled = true
  uv.process_kill(self.handle, name)
end

--- Wait for the process to exit; returns its exit code and terminating signal.
function Proc:wait_exit(timeout)
  local ok = pcall(wait.until_true, function() return self:exited() end, timeout or 5)
  if not ok then
    error(("luaecho did not exit within %gs\n%s"):format(timeout or 5, self:describe()), 2)
  end
  return self.code, self.signal
end

function Proc:remove_files()
  os.remove(self.out_path)
  os.remove(self.err_path)
end

-- Ask a running process to stop as a user would (SIGTERM), so it can exit
-- cleanly and sanitizers get to report; kill it if it will not. Returns a
-- problem description, or nil.
local function terminate(self)
  uv.process_kill(self.handle, "sigterm")
  if pcall(wait.until_true, function() return self:exited() end, 3) then
    if self.code ~= 0 or self.signal ~= 0 then
      return ("exited with code %d, signal %d on SIGTERM"):format(self.code, self.signal)
    end
    return nil
  end
  uv.process_kill(self.handle, "sigkill")
  pcall(wait.until_true, function() return self:exited() end, 5)
  return "still running 3s after SIGTERM: killed"
end

--- Stop the process if it still runs (SIGTERM, then SIGKILL), reap it and
-- remove its temp files. Returns a list of problems seen: a crash by a
-- signal nobody sent, an unclean SIGTERM exit, a sanitizer report.
-- Safe to call more than once.
function Proc:stop()
  if not live.has(self) then return {} end
  local problems = {}
  if not self:exited() then
    problems[#problems + 1] = terminate(self)
  elseif self.signal ~= 0 and not self.signalled then
    problems[#problems + 1] = ("died of signal %d"):format(self.signal)
  end
  local stderr = self:stderr()
  if sanitizer.reported(stderr) then
    problems[#problems + 1] = "sanitizer report on stderr:\n" .. stderr
  end
  if not self.handle:is_closing() then self.handle:close() end
  reap()
  self:remove_files()
  live.remove(self)
  for i, problem in ipairs(problems) do
    problems[i] = "luaecho " .. table.concat(self.args, " ") .. ": " .. problem
  end
  return problems
end

--- Stop every process still known; for after_each / teardown. Returns the
-- problems found (see Proc:stop), so a spec can end with
-- `assert.are.same({}, server.stop_all())`.
M.stop_all = live.stop_all

return M
