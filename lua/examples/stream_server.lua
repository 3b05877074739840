--- The article's streams server as a program of its own: starts the server
-- itself and serves until interrupted (Ctrl-C).
--
--   luaecho run lua/examples/stream_server.lua [PORT]
local luaecho = require "luaecho"
local repr = require "luaecho.repr"

local function client_connected_handler(reader, writer)
  print("Connection received!")
  while true do
    local data = reader:read(8192)
    if data == "" then break end
    print(repr(data))
    writer:write(data)
    writer:drain()
  end
end

local server = luaecho.start_server(client_connected_handler, "localhost", tonumber(arg[1] or "2222"))
print(("Serving on %s port %d"):format(server:sockname()))
server:wait_closed()   -- until Ctrl-C or SIGTERM closes it
