--- Sockets a spec opens itself with luasocket (UDP, Unix streams), each
-- with a deadline on every call, all closed by close_all() after each spec.
-- @usage
--   local sockets = require "support.sockets"
--   after_each(sockets.close_all)
--   local sock, port = sockets.udp()
--   local conn = sockets.unix_connect(path)
local socket = require "socket"
local unix = require "socket.unix"

local M = {}

--- Seconds every call on these sockets may wait.
M.TIMEOUT = 5

local open = {}

--- Keep `sock` to close after the spec; returns it.
function M.track(sock)
  open[#open + 1] = sock
  return sock
end

--- Close every socket tracked so far.
function M.close_all()
  for i = #open, 1, -1 do
    open[i]:close()
    open[i] = nil
  end
end

--- A UDP socket bound to 127.0.0.1 on any port; returns it and its port.
function M.udp()
  local sock = M.track(assert(socket.udp()))
  assert(sock:setsockname("127.0.0.1", 0))
  sock:settimeout(M.TIMEOUT)
  local _, port = sock:getsockname()
  return sock, tonumber(port)
end

--- A connection to the Unix socket at `path`, or an error naming it.
function M.unix_connect(path)
  local sock = assert(unix.stream())
  sock:settimeout(M.TIMEOUT)
  local ok, err = sock:connect(path)
  if not ok then
    sock:close()
    error(("cannot connect to %s: %s"):format(path, tostring(err)), 2)
  end
  return M.track(sock)
end

return M
