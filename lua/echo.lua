--- The default luaecho handler: the seed article's SimpleEchoProtocol.
-- Prints "Connection received!" on connect, prints each chunk it receives,
-- answers "echo:" followed by the chunk, and prints "Connection lost!" when the
-- connection ends. Unlike the article's version it keeps serving afterwards.
--
-- A slow reader must not grow the server's memory: when our write buffer is
-- above its high mark the host calls pause_writing(), and we stop reading
-- until it drains (resume_writing()).

local repr = require "luaecho.repr"  -- b'hello\r\n' as Python would print it

local Echo = {}

function Echo:connection_made(transport)
  print("Connection received!")
  self.transport = transport
end

function Echo:data_received(data)
  print(repr(data))
  self.transport:write("echo:" .. data)
end

function Echo:pause_writing()
  self.transport:pause_reading()
end

function Echo:resume_writing()
  self.transport:resume_reading()
end

function Echo:connection_lost(err) -- luacheck: no unused args
  print("Connection lost!")
end

return Echo
