--- Text helpers for integration specs: Lua patterns that match a string
-- exactly, the lines of a process's output, and payloads of reproducible
-- bytes to send.
-- @usage
--   proc:wait_output("stderr", "reloaded " .. text.literal(script))
--   for _, line in ipairs(text.lines(proc:stdout())) do ... end
--   local data = text.payload(1024 * 1024, 7)   -- the same bytes on every run
local M = {}

--- `s` as a Lua pattern that matches exactly it (every punctuation
-- character escaped).
function M.literal(s)
  return (s:gsub("%p", "%%%0"))
end

--- The lines of `s` that end in "\n", without it; a last line with no
-- newline yet (still being written) is left out.
function M.lines(s)
  local lines = {}
  for line in s:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

--- `size` deterministic pseudo-random bytes for `seed` (default 1): every
-- byte value but "e", which becomes NUL (so plenty of NULs). Without an "e"
-- a payload never contains "echo:", so echo.lua's reply splits unambiguously.
function M.payload(size, seed)
  local state, parts = seed or 1, {}
  for i = 1, size do
    state = (state * 1103515245 + 12345) % 2147483648
    local byte = (state >> 16) % 256
    if byte == 101 then byte = 0 end
    parts[i] = byte
  end
  local chunks = {}
  for i = 1, size, 4096 do
    chunks[#chunks + 1] = string.char(table.unpack(parts, i, math.min(i + 4095, size)))
  end
  return table.concat(chunks)
end

return M
