--- The sanitizers as integration specs meet them. scripts/test builds the
-- binary with AddressSanitizer and UndefinedBehaviorSanitizer and exports
-- ASAN_OPTIONS and UBSAN_OPTIONS (a report exits 86); the children inherit
-- them. This module says whether a process's output holds a report, and
-- gives the environment for specs that measure the server's memory.
-- @usage
--   local proc = server.start({}, { env = sanitizer.small_quarantine() })
--   if sanitizer.reported(proc:stderr()) then ... end
local M = {}

-- What the sanitizers print when they find something.
local MARKS = { "AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:" }

--- True if `output` (a process's stderr) holds a sanitizer report.
function M.reported(output)
  for _, mark in ipairs(MARKS) do
    if output:find(mark, 1, true) then return true end
  end
  return false
end

--- Environment overrides for server.start that keep AddressSanitizer's
-- quarantine out of the server's RSS. Freed memory waits there (256 MiB by
-- default) before reuse, which RSS would count against the server; a
-- 4 MiB quarantine keeps use-after-free detection for recent frees. The
-- caller's ASAN_OPTIONS are kept.
function M.small_quarantine()
  return { ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":quarantine_size_mb=4" }
end

return M
