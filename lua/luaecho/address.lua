--- How luaecho writes a network address in its log lines and names: one
-- formatter for the Lua side, shared by luaecho.streams (a failed
-- handler's peer) and luaecho.testing's fake host (its log lines, a
-- transport's and a server's tostring). The C host's own copy is
-- src/addr.c; spec/shared/transport_cases.lua checks that they agree.
-- @usage
--   local address = require "luaecho.address"
--   print(address.text("::1", 7000))           --> [::1]:7000
--   print(address.peer(transport))             --> 127.0.0.1:50000
local find, tostring = string.find, tostring

local M = {}

--- "host:port", or "[host]:port" for an IPv6 address.
function M.text(host, port)
  if find(host, ":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(port)
end

--- The peer of 'transport' as text, or "unknown peer" when it has none.
function M.peer(transport)
  local host, port = transport:get_extra_info("peername")
  if host == nil then return "unknown peer" end
  return M.text(host, port)
end

return M
