--- The default luaecho handler: the seed article's SimpleEchoProtocol.
-- Prints "Connection received!" on connect, prints each chunk it receives,
-- answers "echo:" followed by the chunk, and prints "Connection lost!" when the
-- connection ends. Unlike the article's version it keeps serving afterwards.
--
-- A slow reader must not grow the server's memory: when our write buffer is
-- above its high mark the host calls pause_writing(), and we stop reading
-- until it drains (resume_writing()).

-- The chunk as a quoted string with control bytes escaped, the way Python
-- prints b'hello\r\n': one log line per chunk, whatever the client sent.
local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
local function escape(c)
  return named[c] or ("\\x%02x"):format(c:byte())
end
local function show(data)
  return '"' .. data:gsub('[%c"\\\128-\255]', escape) .. '"'
end

local Echo = {}

function Echo:connection_made(transport)
  print("Connection received!")
  self.transport = transport
end

function Echo:data_received(data)
  print(show(data))
  self.transport:write("echo:" .. data)
end

function Echo:pause_writing()
  self.transport:pause_reading()
end

function Echo:resume_writing()
  self.transport:resume_reading()
end

function Echo:connection_lost(err)
  print("Connection lost!")
end

return Echo
