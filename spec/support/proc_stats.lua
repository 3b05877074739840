--- What a running process costs, read from /proc, for the limits specs:
-- resident memory, open descriptors, CPU time. Also a launcher that starts
-- the binary under a lower descriptor limit (`ulimit -n`).
-- @usage
--   local stats = require "support.proc_stats"
--   local before = stats.rss(proc.pid)          -- bytes
--   local fds = stats.open_fds(proc.pid)        -- count
--   local cpu = stats.cpu_seconds(proc.pid)     -- user + system
--   local proc = stats.start_with_nofile(64, { "--log-level", "info" })
local uv = require "luv"
local server = require "support.server"
local wait = require "support.wait"

local M = {}

-- Clock ticks per second of utime and stime in /proc/PID/stat.
local ticks_per_second

local function clock_ticks()
  if not ticks_per_second then
    local pipe = io.popen("getconf CLK_TCK")
    local text = pipe and pipe:read("a") or ""
    if pipe then pipe:close() end
    ticks_per_second = tonumber(text:match("%d+")) or 100
  end
  return ticks_per_second
end

local function read_proc(pid, name)
  local path = ("/proc/%d/%s"):format(pid, name)
  local f, err = io.open(path, "r")
  if not f then error(("cannot read %s: %s"):format(path, err), 3) end
  local text = f:read("a")
  f:close()
  return text
end

--- Resident set size of `pid` in bytes (VmRSS in /proc/PID/status).
function M.rss(pid)
  local kib = read_proc(pid, "status"):match("\nVmRSS:%s*(%d+) kB")
  if not kib then error(("no VmRSS for pid %d"):format(pid), 2) end
  return tonumber(kib) * 1024
end

--- Number of descriptors `pid` has open (entries of /proc/PID/fd).
function M.open_fds(pid)
  local path = ("/proc/%d/fd"):format(pid)
  local dir, err = uv.fs_scandir(path)
  if not dir then error(("cannot list %s: %s"):format(path, err), 2) end
  local n = 0
  while uv.fs_scandir_next(dir) do n = n + 1 end
  return n
end

--- Poll until `pid` has `n` descriptors open or `timeout` seconds pass;
-- returns the last count, so a spec can report a leak before failing.
function M.settle_fds(pid, n, timeout)
  local count
  pcall(wait.until_true, function()
    count = M.open_fds(pid)
    return count == n
  end, timeout or 5)
  return count
end

--- What each open descriptor of `pid` refers to, sorted: for failure
-- messages when a count differs ("socket:[123]", "/dev/null", ...).
function M.fd_targets(pid)
  local path = ("/proc/%d/fd"):format(pid)
  local dir = uv.fs_scandir(path)
  local targets = {}
  while dir do
    local name = uv.fs_scandir_next(dir)
    if not name then break end
    local target = uv.fs_readlink(path .. "/" .. name)
    targets[#targets + 1] = name .. " -> " .. tostring(target)
  end
  table.sort(targets, function(a, b) return tonumber(a:match("%d+")) < tonumber(b:match("%d+")) end)
  return targets
end

--- CPU time `pid` has used so far, user plus system, in seconds.
function M.cpu_seconds(pid)
  -- The command name (field 2) is in parentheses and may hold spaces, so
  -- count fields from after the last ')': field 3 (state) comes first.
  local rest = read_proc(pid, "stat"):match("^.*%)%s+(.*)$")
  local fields = {}
  for word in rest:gmatch("%S+") do fields[#fields + 1] = word end
  local utime, stime = tonumber(fields[14 - 2]), tonumber(fields[15 - 2])
  return (utime + stime) / clock_ticks()
end

--- A figure in MiB with one decimal, for printed reports.
function M.mib(bytes)
  return ("%.1f MiB"):format(bytes / (1024 * 1024))
end

--- Start the binary like server.start(args, opts), but with its descriptor
-- limit (soft and hard) lowered to `nofile` by a shell that then execs it,
-- so the process id is the server's own. The support library starts the
-- binary it names directly; for the length of the call it names /bin/sh.
function M.start_with_nofile(nofile, args, opts)
  local full = { "-c", ('ulimit -n %d && exec "$0" "$@"'):format(nofile), server.bin() }
  for _, arg in ipairs(args or {}) do full[#full + 1] = arg end
  return server.with_bin("/bin/sh", function() return server.start(full, opts) end)
end

return M
