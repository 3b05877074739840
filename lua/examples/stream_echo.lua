--- The article's streams echo server, as a luaecho handler script:
-- asyncio.start_server(client_connected_handler, ...) with this function
-- as the handler. luaecho runs it in a task of its own for each connection.
--
--   luaecho lua/examples/stream_echo.lua
--
-- Set LUAECHO_QUIET=1 to skip the printing (for benchmarks).
local repr = require "luaecho.repr"

local quiet = os.getenv("LUAECHO_QUIET") == "1"

return function(reader, writer)
  if not quiet then print("Connection received!") end
  while true do
    local data = reader:read(8192)   -- waits for up to 8192 bytes; "" at EOF
    if data == "" then break end
    if not quiet then print(repr(data)) end
    writer:write(data)
    writer:drain()                   -- wait while the peer is slow to read
  end
  -- Returning closes the writer.
end
