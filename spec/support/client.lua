--- TCP clients for integration specs, on luasocket.
-- Every call has a deadline. Blocking helpers (send_all, receive_exactly,
-- receive_until_close) suit one small exchange at a time; exchange() drives
-- any number of connections at once with socket.select, sending and reading
-- together, so a big payload cannot deadlock against the server's echo.
-- @usage
--   local conn = client.connect(proc.host, proc.port)
--   conn:send_all("hello")
--   assert.are.equal("echo:hello", conn:receive_exactly(10))
--   after_each(client.close_all)
local socket = require "socket"
local wait = require "support.wait"

local M = {}

local DEFAULT_TIMEOUT = 5
local CHUNK = 65536

-- Connections not yet closed, so teardown can close leftovers.
local open = {}

local Conn = {}
Conn.__index = Conn

-- Seconds left before `deadline`, or raise naming what timed out.
local function remaining(deadline, what)
  local left = deadline - wait.now()
  if left <= 0 then error("timed out " .. what, 3) end
  return left
end

--- Connect to host:port within `timeout` seconds; returns a Conn or raises.
-- IPv6 literals (anything with a colon) get an IPv6 socket.
function M.connect(host, port, timeout)
  local sock = host:find(":", 1, true) and socket.tcp6() or socket.tcp()
  sock:settimeout(timeout or DEFAULT_TIMEOUT)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    error(("cannot connect to %s port %s: %s"):format(host, tostring(port), err), 2)
  end
  -- Small writes must leave at once, or order specs would see them merged.
  sock:setoption("tcp-nodelay", true)
  local conn = setmetatable({ sock = sock }, Conn)
  open[conn] = true
  return conn
end

--- Our side's address: host, port (the server sees this as its peername).
function Conn:sockname()
  local host, port = self.sock:getsockname()
  return host, tonumber(port)
end

--- The server's address as we see it: host, port.
function Conn:peername()
  local host, port = self.sock:getpeername()
  return host, tonumber(port)
end

--- Send all of `data` within `timeout` seconds or raise.
function Conn:send_all(data, timeout)
  local deadline = wait.now() + (timeout or DEFAULT_TIMEOUT)
  local sent = 0
  while sent < #data do
    self.sock:settimeout(remaining(deadline, ("sending %d bytes (%d sent)"):format(#data, sent)))
    local last, err, partial = self.sock:send(data, sent + 1)
    sent = last or partial or sent
    if err and err ~= "timeout" then
      error(("send failed after %d of %d bytes: %s"):format(sent, #data, err), 2)
    end
  end
end

-- Raise for a short read, quoting (the start of) what did arrive.
local function err_partial(why, n, parts)
  local got = table.concat(parts)
  local wanted = n == math.huge and "" or (" of %d"):format(n) -- huge: until the close
  error(("%s after %d%s bytes: %q"):format(why, #got, wanted, got:sub(1, 200)), 3)
end

--- Receive exactly `n` bytes within `timeout` seconds; raises on close or
-- timeout, saying how much arrived and what it was.
function Conn:receive_exactly(n, timeout)
  local deadline = wait.now() + (timeout or DEFAULT_TIMEOUT)
  local parts, got = {}, 0
  while got < n do
    local left = deadline - wait.now()
    if left <= 0 then err_partial("timed out", n, parts) end
    self.sock:settimeout(left)
    local data, err, partial = self.sock:receive(n - got)
    local piece = data or partial or ""
    parts[#parts + 1] = piece
    got = got + #piece
    if err and err ~= "timeout" then err_partial(err, n, parts) end
  end
  return table.concat(parts)
end

--- Read until the server closes; returns the data and how it ended
-- ("closed", or the socket error such as "connection reset by peer").
-- Raises if the connection is still open after `timeout` seconds.
function Conn:receive_until_close(timeout)
  local deadline = wait.now() + (timeout or DEFAULT_TIMEOUT)
  local parts = {}
  while true do
    local left = deadline - wait.now()
    if left <= 0 then err_partial("still open", math.huge, parts) end
    self.sock:settimeout(left)
    local data, err, partial = self.sock:receive(CHUNK)
    parts[#parts + 1] = data or partial or ""
    if err and err ~= "timeout" then return table.concat(parts), err end
  end
end

--- Half-close: no more data from us, but we keep reading.
function Conn:shutdown_send()
  assert(self.sock:shutdown("send"))
end

--- Close normally (FIN).
function Conn:close()
  if open[self] then
    self.sock:close()
    open[self] = nil
  end
end

--- Close with a reset (RST) instead of a FIN, as a crashed peer would.
function Conn:reset()
  self.sock:setoption("linger", { on = true, timeout = 0 })
  self:close()
end

--- Close every connection still open; for after_each / teardown.
--- What a new connection to proc gets back for `payload`: exactly
-- `expected_len` bytes; the connection is closed after.
function M.answer_of(proc, payload, expected_len)
  local conn = M.connect(proc.host, proc.port)
  conn:send_all(payload)
  local got = conn:receive_exactly(expected_len)
  conn:close()
  return got
end

function M.close_all()
  for conn in pairs(open) do conn:close() end
end

--- Open `n` connections to host:port; returns them as a list.
function M.connect_many(host, port, n, timeout)
  local conns = {}
  for i = 1, n do conns[i] = M.connect(host, port, timeout) end
  return conns
end

-- One step of a job: send what the socket takes now.
local function pump_send(job)
  local last_byte = math.min(job.sent + CHUNK, #job.send)
  local last, err, partial = job.conn.sock:send(job.send, job.sent + 1, last_byte)
  job.sent = last or partial or job.sent
  if err and err ~= "timeout" then job.error = "send: " .. err end
end

-- One step of a job: read what has arrived and decide whether it is done.
local function pump_receive(job)
  local data, err, partial = job.conn.sock:receive(CHUNK)
  local piece = data or partial or ""
  if #piece > 0 then
    job.parts[#job.parts + 1] = piece
    job.got = job.got + #piece
  end
  if err == "closed" then
    job.closed = true
    if not job.until_close then job.error = "closed by the server" end
  elseif err and err ~= "timeout" then
    job.error = "receive: " .. err
  end
  if job.expect and job.got >= job.expect then job.done = true end
  if job.until_close and job.closed then job.done = true end
  if job.done_when and not job.done and #piece > 0 and job.done_when(piece) then job.done = true end
end

local function still_sending(job)
  return job.sent < #job.send and not job.error
end

local function still_receiving(job)
  return not job.done and not job.error
end

-- The select sets for the jobs still running, and a socket -> job map.
local function select_sets(jobs)
  local recvt, sendt, by_sock = {}, {}, {}
  for _, job in ipairs(jobs) do
    by_sock[job.conn.sock] = job
    if still_sending(job) then sendt[#sendt + 1] = job.conn.sock end
    if still_receiving(job) then recvt[#recvt + 1] = job.conn.sock end
  end
  return recvt, sendt, by_sock
end

local function summary(jobs)
  local lines = {}
  for i, job in ipairs(jobs) do
    if job.error or not job.done then
      lines[#lines + 1] = ("  job %d: sent %d/%d, received %d%s%s"):format(i, job.sent, #job.send,
        job.got, job.expect and ("/" .. job.expect) or "", job.error and (", " .. job.error) or "")
      if #lines == 10 then break end
    end
  end
  return table.concat(lines, "\n")
end

--- A done_when for exchange(): true once replies of the form
-- "echo:" .. chunk have carried `size` bytes of data. The data must not
-- contain "echo:". Counts piece by piece, so a 1 MiB reply costs no more
-- than its size.
function M.echoed(size)
  local data_bytes, carry = 0, ""
  return function(piece)
    -- The carry (4 bytes) cannot hold a whole prefix, so a prefix counted
    -- here was never counted before: it ends in this piece.
    local _, prefixes = (carry .. piece):gsub("echo:", "")
    data_bytes = data_bytes + #piece - 5 * prefixes
    carry = (carry .. piece):sub(-4)
    return data_bytes >= size
  end
end

--- Drive many connections at once until each is done or the deadline passes.
-- Each job is { conn = Conn, send = "bytes" (optional), and one of:
-- expect = byte count | until_close = true | done_when = function(piece)
-- called with each new piece, true when done }.
-- Sends and receives are interleaved with socket.select, so a client sending
-- 1 MiB reads its echo meanwhile. Returns the list of received strings in
-- job order; raises with a per-job summary on error or timeout.
function M.exchange(jobs, timeout)
  local deadline = wait.now() + (timeout or DEFAULT_TIMEOUT)
  for _, job in ipairs(jobs) do
    job.send, job.sent, job.got, job.parts = job.send or "", 0, 0, {}
    job.conn.sock:settimeout(0)
  end
  while true do
    local recvt, sendt, by_sock = select_sets(jobs)
    if #recvt == 0 and #sendt == 0 then break end
    local left = deadline - wait.now()
    if left <= 0 then error("exchange timed out:\n" .. summary(jobs), 2) end
    local readable, writable = socket.select(recvt, sendt, math.min(left, 0.25))
    for _, sock in ipairs(writable) do pump_send(by_sock[sock]) end
    for _, sock in ipairs(readable) do pump_receive(by_sock[sock]) end
  end
  local received = {}
  for i, job in ipairs(jobs) do
    if job.error then error("exchange failed:\n" .. summary(jobs), 2) end
    received[i] = table.concat(job.parts)
  end
  return received
end

return M
