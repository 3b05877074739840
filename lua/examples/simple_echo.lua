--- The seed article's SimpleEchoProtocol, faithfully: it serves one
-- connection and then closes the server, so `luaecho` exits once that
-- connection is gone.
--
--   luaecho lua/examples/simple_echo.lua

-- The chunk as a quoted string with control bytes escaped, the way Python
-- prints b'hello\r\n': one log line per chunk, whatever the client sent.
local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
local function escape(c)
  return named[c] or ("\\x%02x"):format(c:byte())
end
local function show(data)
  return '"' .. data:gsub('[%c"\\\128-\255]', escape) .. '"'
end

local SimpleEcho = {}

function SimpleEcho:connection_made(transport)
  print("Connection received!")
  self.transport = transport
end

function SimpleEcho:data_received(data)
  print(show(data))
  self.transport:write("echo:" .. data)
end

function SimpleEcho:connection_lost(err)
  print("Connection lost!")
  -- Like the article's `self.server.close()`: stop accepting. The process
  -- ends when the server is closed and its last connection has gone.
  self.transport:get_extra_info("server"):close()
end

return SimpleEcho
