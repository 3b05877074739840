--- The article's client, for `luaecho run`: writes four lines to an echo
-- server and reads them back with readline().
--
--   luaecho run lua/examples/echo_client.lua [HOST [PORT]]
local luaecho = require "luaecho"
local repr = require "luaecho.repr"

local host, port = arg[1] or "localhost", tonumber(arg[2] or "2222")

local reader, writer = luaecho.open_connection(host, port)
writer:write("First line.\n")
writer:write("Second line.\n")
writer:write("Third line.\n")
writer:write("Last line.\n")
writer:drain()

print("Lines received")
while true do
  local line = reader:readline()
  print(repr(line))
  if line == "Last line.\n" or line == "" then break end
end
writer:close()
