--- What a spec drives of a fake UDP endpoint under luaecho.testing: an
-- Endpoint handle (send datagrams to it, read what it sent, report an
-- error, hold its output, close it), and serving a script's Protocol on
-- a fake udp: listener, as `luaecho --listen udp:HOST:PORT` does. Every
-- method settles the fake host before and after it acts.
-- Relies on luaecho.testing.world, .clock, .datagram, .server and
-- .scripts.
-- @usage
--   local endpoint = require "luaecho.testing.endpoint"
--   local ep = endpoint.listen("lua/echo.lua", {}, 1)
--   ep:send("hi")
--   print(ep:sent()[1].data)                  --> echo:hi
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local datagram = require "luaecho.testing.datagram"
local server = require "luaecho.testing.server"
local scripts = require "luaecho.testing.scripts"
local address = require "luaecho.address"
local format = string.format
local math_type = math.type
local error, ipairs, setmetatable, tostring, type = error, ipairs, setmetatable, tostring, type

local W = world.W
local settle, copy = clock.settle, world.copy

local M = {}

local Endpoint = {}
Endpoint.__index = Endpoint

--- The spec's handle on endpoint record E (one per endpoint).
function M.handle(E)
  if E.handle == nil then E.handle = setmetatable({ E = E }, Endpoint) end
  return E.handle
end

--- A datagram reaches the endpoint from host:port (default 127.0.0.1
-- and a port of the handle's own, the same for every send): the
-- script's datagram_received(data, host, port). Dropped once it is
-- closing, as the host's socket stops reading; dropped by a connected
-- endpoint unless it comes from its remote.
function Endpoint:send(data, host, port)
  if type(data) ~= "string" then error("luaecho.testing: send() takes a string, not a " .. type(data), 2) end
  if #data > datagram.MAX_DATAGRAM then
    error(format("luaecho.testing: a datagram carries at most %d bytes, not %d", datagram.MAX_DATAGRAM, #data), 2)
  end
  if host ~= nil and type(host) ~= "string" then error("luaecho.testing: send()'s host is a string", 2) end
  if port ~= nil and (math_type(port) ~= "integer" or port < 1 or port > 65535) then
    error("luaecho.testing: send()'s port is an integer from 1 to 65535", 2)
  end
  if port == nil then
    if self.port == nil then self.port = server.next_peer_port() end
    port = self.port
  end
  settle()
  datagram.receive(self.E, data, host or "127.0.0.1", port)
  settle()
end

--- Every datagram the script sent since the last call, in order, as
-- { data =, host =, port = }, whether or not a fake endpoint was there
-- to receive it. Datagrams held by hold() are not sent yet.
function Endpoint:sent()
  settle()
  local out = self.E.sent
  self.E.sent = {}
  return out
end

--- The system reports an error: the script's error_received(message)
-- ("connection refused", say).
function Endpoint:error(message)
  if type(message) ~= "string" then error("luaecho.testing: error() takes the error's message, a string", 2) end
  settle()
  datagram.error(self.E, message)
  settle()
end

--- Close the endpoint as luaecho does at shutdown: no more datagrams
-- reach it, and connection_lost(nil) once what is queued is sent.
function Endpoint:close()
  settle()
  datagram.close(self.E)
  settle()
end

--- The endpoint's sends queue from now on, as when the kernel's buffer
-- is full: get_write_buffer_size() counts them, pause_writing() past the
-- high mark, a datagram over max_write_buffer is dropped with a warning.
function Endpoint:hold()
  settle()
  self.E.hold = true
end

--- Sends go out again: the queue is sent, resume_writing() at the low
-- mark, and a close() that waited for the queue finishes.
function Endpoint:release()
  settle()
  self.E.hold = false
  datagram.flush(self.E)
  settle()
end

--- Bytes queued by hold(), not sent yet.
function Endpoint:buffered()
  return self.E.buffered
end

--- The names of the protocol callbacks called so far, in order (only
-- those the script defines).
function Endpoint:events()
  settle()
  return copy(self.E.events)
end

--- Errors logged for the endpoint ("datagram_received failed for
-- udp:127.0.0.1:40000: ...: boom"), without their tracebacks.
function Endpoint:errors()
  settle()
  return copy(self.E.errors)
end

--- Lines the script printed while serving the endpoint (and loading).
function Endpoint:printed()
  settle()
  return copy(self.E.printed)
end

--- transport:is_closing(): closed, aborted, or gone.
function Endpoint:closed()
  settle()
  return self.E.state ~= "open"
end

--- True once connection_lost has run, and the error it was given.
function Endpoint:lost()
  settle()
  if self.E.state ~= "gone" then return false end
  return true, self.E.error
end

--- host, port the endpoint is bound to (where a datagram reaches it).
function Endpoint:address()
  return self.E.sock[1], self.E.sock[2]
end

--- The protocol instance (one for every datagram).
function Endpoint:protocol()
  return self.E.instance
end

--- The transport the script was given.
function Endpoint:transport()
  return self.E.transport
end

-- What loading the script left (prints, logs) becomes the endpoint's.
local function adopt(E, owner)
  for _, field in ipairs({ "printed", "errors", "logs" }) do
    for _, v in ipairs(owner[field]) do E[field][#E[field] + 1] = v end
  end
end

--- Load 'script' (a path or a Protocol table) and serve it on a fake
-- udp: listener: opts.host (default "127.0.0.1"), opts.port (default a
-- free one), opts.listener (its name; default "udp:HOST:PORT"),
-- opts.max_write_buffer. Refused as luaecho refuses at start a Protocol
-- with no datagram_received. Returns the Endpoint; errors blame 'level'
-- above the caller.
function M.listen(script, opts, level)
  opts = opts or {}
  if type(opts) ~= "table" then error("luaecho.testing: opts is a table", level + 1) end
  settle()
  local owner = { printed = {}, errors = {}, logs = {} }
  local Protocol = scripts.protocol(script, level + 1, owner)
  local host = server.resolve(opts.host or "127.0.0.1")
  if host == nil then error("luaecho.testing: unknown host " .. tostring(opts.host), level + 1) end
  local port = opts.port or 0
  if math_type(port) ~= "integer" or port < 0 or port > 65535 then
    error("luaecho.testing: opts.port is an integer from 0 to 65535", level + 1)
  end
  if port == 0 then
    repeat
      port = W.next_port
      W.next_port = port + 1
    until datagram.bound_at(host, port) == nil
  end
  local listener = opts.listener or "udp:" .. address.text(host, port)
  if type(listener) ~= "string" then error("luaecho.testing: opts.listener is a listener's name", level + 1) end
  local refused = datagram.refusal(Protocol, listener, "the script's")
  if refused then error("cannot load script: " .. refused, level + 1) end
  local E, why = datagram.bind(Protocol, host, port, nil, { listener = listener,
    max_write_buffer = opts.max_write_buffer })
  if E == nil then error(format("luaecho.testing: cannot listen on %s: %s", listener, why), level + 1) end
  adopt(E, owner)
  datagram.start(E)
  settle()
  return M.handle(E)
end

return M
