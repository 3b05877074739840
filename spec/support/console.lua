--- The admin console as specs talk to it over a raw socket: one command
-- line sent, its answer read up to the empty line that ends it.
-- @usage
--   local lines = console.ask(sock, "show generations")   -- { "generation loaded ...", ... }
local M = {}

--- One answer from `sock`: its lines, up to the empty line that ends it.
-- Raises, naming what arrived, when the connection ends first.
function M.read_answer(sock)
  local lines = {}
  while true do
    local line, err, partial = sock:receive("*l")
    if not line then
      error(("answer cut short (%s) after %q"):format(err, table.concat(lines, "\n") .. (partial or "")), 2)
    end
    if line == "" then return lines end
    lines[#lines + 1] = line
  end
end

--- Send one command line and return its answer's lines.
function M.ask(sock, line)
  assert(sock:send(line .. "\n"))
  return M.read_answer(sock)
end

return M
