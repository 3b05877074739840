--- How luaecho writes a network address in its log lines and names: one
-- formatter for the Lua side, shared by luaecho.streams (a failed
-- handler's peer) and luaecho.testing's fake host (its log lines, a
-- transport's and a server's tostring). The C host's own copy is
-- src/addr.c; spec/shared/transport_cases.lua checks that they agree.
-- @usage
--   local address = require "luaecho.address"
--   print(address.text("::1", 7000))           --> [::1]:7000
--   print(address.peer(transport))             --> 127.0.0.1:50000
local find, format, tostring = string.find, string.format, tostring

local M = {}

--- "host:port", or "[host]:port" for an IPv6 address.
function M.text(host, port)
  if find(host, ":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(port)
end

--- The peer of 'transport' as text, or "unknown peer" when it has none. A
-- Unix socket's peer (a path, usually "", and no port) is named by its
-- credentials, as the host's own log lines name it: "unix peer (pid 12, uid
-- 1000)".
function M.peer(transport)
  local host, port = transport:get_extra_info("peername")
  if host == nil then return "unknown peer" end
  if port == nil then
    local cred = transport:get_extra_info("peercred")
    if cred and cred.pid and cred.pid > 0 then return format("unix peer (pid %d, uid %d)", cred.pid, cred.uid) end
    return "unix peer"
  end
  return M.text(host, port)
end

return M
