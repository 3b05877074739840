--- Streaming clients that check every byte of a prefixing echo, for specs
-- that keep many connections busy while the server changes under them
-- (the hot swap under load).
-- A client sends records "K<id>N<seq>|" (upper case, digits and "|": never
-- a lower-case letter, ":" or "@"), BATCH records a send, and keeps at most
-- WINDOW bytes unechoed. The server answers PREFIX DATA PREFIX DATA ...,
-- split wherever its reads were, where PREFIX is the client's own (such as
-- "echo:" or "v2@2:"). Since every prefix starts with a lower-case letter
-- and no data holds one, the reply parses unambiguously, and each piece of
-- data must be the next bytes the client sent. A client that sees anything
-- else records a failure, which pump() raises.
-- @usage
--   local streams = { stream_client.new(client.connect(host, port), 1, "echo:") }
--   stream_client.phase(streams, 16 * 1024, "every connection to echo", 60)
--   stream_client.pump(streams, false, function() return all_echoed end, "the last bytes", 60)
--   -- s.sent == s.echoed, s.dropped, s.failure for each client s
local socket = require "socket"
local wait = require "support.wait"

local M = {}

M.WINDOW = 8 * 1024 -- bytes a client may have sent and not yet seen echoed
M.BATCH = 16        -- records per send

local Stream = {}
Stream.__index = Stream

--- A client on `conn` (a support.client Conn), numbered `id`, that expects
-- the server to answer with `prefix`. The socket becomes non-blocking.
function M.new(conn, id, prefix)
  conn.sock:settimeout(0)
  return setmetatable({
    conn = conn, id = id, prefix = prefix, seq = 0,
    out = "", out_pos = 1,   -- the batch being sent, and how far
    unechoed = "",           -- sent (or being sent) and not yet echoed
    pending = "",            -- reply bytes not parsed yet (a cut prefix)
    seen_prefix = false, sent = 0, echoed = 0,
    target = 0,              -- echoed bytes the current phase waits for
  }, Stream)
end

-- Record the first thing that went wrong on this connection.
function Stream:fail(why)
  self.failure = self.failure or ("connection %d (%s): %s"):format(self.id, self.prefix, why)
end

-- True if the client has bytes to send now: the rest of a batch, or (while
-- `sending`) a new batch, if its window allows.
function Stream:wants_to_send(sending)
  if self.failure then return false end
  if self.out_pos <= #self.out then return true end
  return sending and #self.unechoed < M.WINDOW
end

--- Send what the socket takes of the current batch, starting a new batch
-- when the last one is out.
function Stream:send()
  if self.out_pos > #self.out then
    local records = {}
    for i = 1, M.BATCH do records[i] = ("K%dN%d|"):format(self.id, self.seq + i) end
    self.seq = self.seq + M.BATCH
    self.out, self.out_pos = table.concat(records), 1
    self.unechoed = self.unechoed .. self.out
  end
  local last, err, partial = self.conn.sock:send(self.out, self.out_pos)
  local upto = last or partial or (self.out_pos - 1)
  self.sent = self.sent + upto - self.out_pos + 1
  self.out_pos = upto + 1
  if err and err ~= "timeout" then
    self.dropped = true
    self:fail("send: " .. err)
  end
end

-- Check one piece of echoed data against what was sent next.
function Stream:take(data)
  if not self.seen_prefix then
    return self:fail(("data before any prefix: %q"):format(data:sub(1, 40)))
  end
  if self.unechoed:sub(1, #data) ~= data then
    return self:fail(("out of order after %d bytes: expected %q, got %q"):format(
      self.echoed, self.unechoed:sub(1, 40), data:sub(1, 40)))
  end
  self.unechoed = self.unechoed:sub(#data + 1)
  self.echoed = self.echoed + #data
end

-- Parse what has arrived: prefixes and data, keeping a prefix cut short.
function Stream:parse(piece)
  local buf, prefix = self.pending .. piece, self.prefix
  local i, n = 1, #buf
  while i <= n and not self.failure do
    if buf:find("^[%l:@]", i) then
      if buf:sub(i, i + #prefix - 1) == prefix then
        self.seen_prefix = true
        i = i + #prefix
      elseif n - i + 1 < #prefix and prefix:sub(1, n - i + 1) == buf:sub(i) then
        break -- the rest of the prefix is still on its way
      else
        self:fail(("expected the prefix %q, got %q"):format(prefix, buf:sub(i, i + 20)))
      end
    else
      local j = (buf:find("[%l:@]", i) or n + 1) - 1
      self:take(buf:sub(i, j))
      i = j + 1
    end
  end
  self.pending = buf:sub(i)
end

--- Read what has arrived and check it.
function Stream:receive()
  local data, err, partial = self.conn.sock:receive(65536)
  local piece = data or partial or ""
  if #piece > 0 then self:parse(piece) end
  if err and err ~= "timeout" then
    self.dropped = true
    self:fail(err == "closed" and "closed by the server" or ("receive: " .. err))
  end
end

--- Drive every client (sending new data only while `sending`) until done()
-- is true; raise at the first broken client, or after `timeout` seconds
-- naming `what` and the clients still behind.
function M.pump(streams, sending, done, what, timeout)
  local deadline = wait.now() + timeout
  while true do
    for _, s in ipairs(streams) do
      if s.failure then error(s.failure, 2) end
    end
    if done() then return end
    if wait.now() > deadline then
      local late = {}
      for _, s in ipairs(streams) do
        if #late < 5 and (s.echoed < s.target or #s.unechoed > 0) then
          late[#late + 1] = ("  connection %d: sent %d, echoed %d"):format(s.id, s.sent, s.echoed)
        end
      end
      error(("timed out after %ds waiting for %s\n%s"):format(timeout, what, table.concat(late, "\n")), 2)
    end
    local recvt, sendt, by_sock = {}, {}, {}
    for _, s in ipairs(streams) do
      by_sock[s.conn.sock] = s
      recvt[#recvt + 1] = s.conn.sock
      if s:wants_to_send(sending) then sendt[#sendt + 1] = s.conn.sock end
    end
    local readable, writable = socket.select(recvt, sendt, 0.05)
    for _, sock in ipairs(writable) do by_sock[sock]:send() end
    for _, sock in ipairs(readable) do by_sock[sock]:receive() end
  end
end

--- Stream until every client has had `bytes` more echoed.
function M.phase(streams, bytes, what, timeout)
  for _, s in ipairs(streams) do
    s.target = s.echoed + bytes
  end
  M.pump(streams, true, function()
    for _, s in ipairs(streams) do
      if s.echoed < s.target then return false end
    end
    return true
  end, what, timeout)
end

return M
