--- The default luaecho handler: the seed article's SimpleEchoProtocol.
-- Prints "Connection received!" on connect, prints each chunk it receives,
-- answers "echo:" followed by the chunk, and prints "Connection lost!" when the
-- connection ends. Unlike the article's version it keeps serving afterwards,
-- and it answers UDP datagrams the same way.
--
-- A slow reader must not grow the server's memory: when our write buffer is
-- above its high mark the host calls pause_writing(), and we stop reading
-- until it drains (resume_writing()).

local repr = require "luaecho.repr"  -- b'hello\r\n' as Python would print it

local Echo = {}

function Echo:connection_made(transport)
  self.transport = transport
  if transport.sendto then return end -- a UDP endpoint: one instance for every datagram, no connection
  print("Connection received!")
end

function Echo:data_received(data)
  print(repr(data))
  self.transport:write("echo:" .. data)
end

-- Served on a udp: listener (--listen udp:HOST:PORT): answer each datagram
-- to its sender.
function Echo:datagram_received(data, host, port)
  print(repr(data))
  self.transport:sendto("echo:" .. data, host, port)
end

function Echo:pause_writing()
  if self.transport.sendto then return end -- UDP: nothing to pause; past --max-write-buffer datagrams drop
  self.transport:pause_reading()
end

function Echo:resume_writing()
  if self.transport.sendto then return end
  self.transport:resume_reading()
end

function Echo:connection_lost(err) -- luacheck: no unused args
  if self.transport.sendto then return end
  print("Connection lost!")
end

return Echo
