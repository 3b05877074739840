--- Deadline-bounded waiting for integration specs.
-- Specs synchronise on events (a line in a file, data, a process exit), never
-- on fixed sleeps: wait_until polls a condition with short naps and fails with
-- a message naming what it waited for once the deadline passes.
-- @usage local v = wait.until_true(function() return find_port() end, 5, "the port line")
local system = require "system"

local M = {}

--- Seconds on a monotonic clock (wall-clock jumps must not stretch deadlines).
M.now = system.monotime

--- Pause briefly between polls; the nap is short so it never sets the pace.
function M.nap(seconds)
  system.sleep(seconds or 0.005)
end

--- Call fn until it returns a truthy value and return all its values.
-- Raises "timed out after Ns waiting for <what>" once `timeout` seconds pass,
-- so a spec that waits on a broken server fails instead of hanging.
-- Naps between calls unless `blocking` says fn waits by itself (select).
function M.until_true(fn, timeout, what, blocking)
  local deadline = M.now() + (timeout or 5)
  local nap = 0.001
  while true do
    local results = table.pack(fn())
    if results[1] then return table.unpack(results, 1, results.n) end
    if M.now() >= deadline then
      error(("timed out after %gs waiting for %s"):format(timeout or 5, what or "a condition"), 2)
    end
    if not blocking then
      M.nap(nap)
      nap = math.min(nap * 2, 0.02)  -- fast first polls, then gentle ones
    end
  end
end

return M
