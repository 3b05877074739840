--- A real program the integration specs run beside luaecho (HAProxy,
-- Prometheus): found on $PATH, started on free loopback ports in a scratch
-- directory (its config and its output files there), waited for with a
-- deadline, stopped by its PID. support.haproxy and support.prometheus
-- are this plus what each program needs (its config, how to tell it
-- serves); support.server keeps its children in a registry() too.
-- @usage
--   local Instance = component.kind("haproxy")
--   function Instance:describe() ... end        -- for failure messages
--   function Instance:ready() ... end           -- true once it serves
--   local self = component.spawn(Instance, bin, files.scratch("haproxy"), args)
--   M.stop_all = Instance.registry.stop_all
local uv = require "luv"
local socket = require "socket"
local files = require "support.files"
local wait = require "support.wait"

local M = {}

M.HOST = "127.0.0.1"

--- Children started and not yet stopped: add(x) and remove(x) as they
-- come and go, has(x), and stop_all(), for after_each, which calls each
-- one's x:stop() and returns the problems they report. Each x has a libuv
-- process handle in x.handle: if busted ends without a teardown having run
-- (an error outside a spec), closing the Lua state still kills them.
function M.registry()
  local live = {}
  local r = {}
  function r.add(x) live[x] = true end
  function r.remove(x) live[x] = nil end
  function r.has(x) return live[x] ~= nil end
  function r.stop_all()
    local problems = {}
    for x in pairs(live) do
      for _, problem in ipairs(x:stop()) do problems[#problems + 1] = problem end
    end
    return problems
  end
  r._guard = setmetatable({}, { __gc = function()
    for x in pairs(live) do pcall(uv.process_kill, x.handle, "sigkill") end
  end })
  return r
end

--- The first executable `name` on $PATH or in the usual bin and sbin
-- directories (Debian puts daemons in /usr/sbin, often off a user's $PATH).
function M.find(name)
  local dirs = (os.getenv("PATH") or "") .. ":/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin"
  for dir in dirs:gmatch("[^:]+") do
    local path = dir .. "/" .. name
    local stat = uv.fs_stat(path)
    if stat and stat.type == "file" then return path end
  end
  return nil
end

--- A port no one listens on now: bound to port 0, then released.
function M.free_port()
  local sock = assert(socket.bind(M.HOST, 0))
  local _, port = sock:getsockname()
  sock:close()
  return tonumber(port)
end

local Component = {}
Component.__index = Component

--- A class for instances of the program `name` (as messages call it), with
-- its own registry (Instance.registry); add methods to it, among them
-- describe() and ready().
function M.kind(name)
  local Instance = setmetatable({ name = name, registry = M.registry() }, Component)
  Instance.__index = Instance
  return Instance
end

--- True once the program has exited (its code is then in self.code).
function Component:exited()
  uv.run("nowait") -- libuv reaps children in its SIGCHLD handler
  return self.code ~= nil
end

--- Everything it has written, stdout then stderr.
function Component:output()
  return files.read_if_present(self.out_path) .. files.read_if_present(self.err_path)
end

--- Start `bin` with `args`, its output to files in `scratch` (a
-- support.files scratch directory it owns from now on); returns an
-- Instance of `class` at once, with `fields` copied into it.
function M.spawn(class, bin, scratch, args, fields)
  local self = setmetatable({ scratch = scratch }, class)
  for k, v in pairs(fields or {}) do self[k] = v end
  self.out_path, self.err_path = scratch:path("stdout"), scratch:path("stderr")
  local out_fd = assert(uv.fs_open(self.out_path, "w", tonumber("600", 8)))
  local err_fd = assert(uv.fs_open(self.err_path, "w", tonumber("600", 8)))
  local handle, pid = uv.spawn(bin, { args = args, stdio = { nil, out_fd, err_fd } }, function(code, signal)
    self.code, self.signal = code, signal
  end)
  uv.fs_close(out_fd)
  uv.fs_close(err_fd)
  if not handle then error(("cannot start %s: %s"):format(bin, tostring(pid)), 0) end
  self.handle, self.pid = handle, pid
  class.registry.add(self)
  return self
end

--- Start an instance with start_one() and wait (at most `timeout`
-- seconds, `what` naming the wait) until its ready() is true. A port
-- picked free may be taken before the program binds it: while the failure
-- mentions `taken` (its words for that), try again, three times in all.
-- Returns the instance, or nil and what went wrong (with its describe()).
function M.start(start_one, timeout, what, taken)
  local last
  for _ = 1, 3 do
    local self = start_one()
    local ok, err = pcall(wait.until_true, function() return self:ready() end, timeout, what)
    if ok then return self end
    last = tostring(err) .. "\n" .. self:describe()
    self:stop()
    if not last:find(taken, 1, true) then break end
  end
  return nil, last
end

--- Stop it by its PID (SIGTERM, SIGKILL if it lingers), reap it and remove
-- its scratch directory. Returns a list of problems: it died before it was
-- told to, or would not stop. Safe to call more than once.
function Component:stop()
  if not self.registry.has(self) then return {} end
  local problems = {}
  if self:exited() then
    problems[#problems + 1] = ("%s exited by itself (code %s, signal %s)\n%s"):format(
      self.name, tostring(self.code), tostring(self.signal), self:describe())
  else
    uv.process_kill(self.handle, "sigterm")
    if not pcall(wait.until_true, function() return self:exited() end, 5) then
      uv.process_kill(self.handle, "sigkill")
      pcall(wait.until_true, function() return self:exited() end, 5)
      problems[#problems + 1] = self.name .. " still running 5s after SIGTERM: killed"
    end
  end
  if not self.handle:is_closing() then self.handle:close() end
  uv.run("nowait")
  self.scratch:remove()
  self.registry.remove(self)
  return problems
end

return M
