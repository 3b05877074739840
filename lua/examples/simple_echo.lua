--- The seed article's SimpleEchoProtocol, faithfully: it serves one
-- connection and then closes the server, so `luaecho` exits once that
-- connection is gone.
--
--   luaecho lua/examples/simple_echo.lua

local repr = require "luaecho.repr"  -- b'hello\r\n' as Python would print it

local SimpleEcho = {}

function SimpleEcho:connection_made(transport)
  print("Connection received!")
  self.transport = transport
end

function SimpleEcho:data_received(data)
  print(repr(data))
  self.transport:write("echo:" .. data)
end

function SimpleEcho:connection_lost(err) -- luacheck: no unused args
  print("Connection lost!")
  -- Like the article's `self.server.close()`: stop accepting. The process
  -- ends when the server is closed and its last connection has gone.
  self.transport:get_extra_info("server"):close()
end

return SimpleEcho
