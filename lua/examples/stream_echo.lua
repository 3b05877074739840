--- The article's streams echo server, as a luaecho handler script:
-- asyncio.start_server(client_connected_handler, ...) with this function
-- as the handler. luaecho runs it in a task of its own for each connection.
--
--   luaecho lua/examples/stream_echo.lua
--
-- For benchmarks: LUAECHO_QUIET=1 skips the printing, and LUAECHO_READ_SIZE
-- changes the 8192 of the article (scripts/bench reads 65536, as the uvloop
-- streams server it is compared with does).
local repr = require "luaecho.repr"

local quiet = os.getenv("LUAECHO_QUIET") == "1"
local read_size = math.tointeger(tonumber(os.getenv("LUAECHO_READ_SIZE"))) or 8192

return function(reader, writer)
  if not quiet then print("Connection received!") end
  while true do
    local data = reader:read(read_size)  -- waits for up to 8192 bytes; "" at EOF
    if data == "" then break end
    if not quiet then print(repr(data)) end
    writer:write(data)
    writer:drain()                   -- wait while the peer is slow to read
  end
  -- Returning closes the writer.
end
