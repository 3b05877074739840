--- The harness of the shared transport cases on the real binary: one
-- luaecho per case on --port 0, and TCP peers, with the interface
-- spec/shared/transport_cases.lua describes (h:connect, h:printed, ...,
-- peer:receive_until_close). Where the fake's harness advances
-- its clock, this one simply waits, with a deadline, for what the time
-- brings; every wait fails naming what it waited for and what had arrived.
-- @usage
--   local h = tcp_harness.start(case)   -- luaecho serving spec/fixtures/cases/<case.script>
--   case.run(h)
--   if h.closed_server then assert.are.equal(0, (h.proc:wait_exit(5))) end
local socket = require "socket"
local server = require "support.server"
local client = require "support.client"
local text = require "support.text"
local wait = require "support.wait"

local M = {}

local TIMEOUT = 5

-- Command-line flags for a case's host options.
local FLAGS = { idle_timeout = "--idle-timeout", max_write_buffer = "--max-write-buffer" }

-- A TCP peer with the harness's peer interface. What arrives is kept in
-- 'parts' (not one growing string: flow cases read megabytes).
local Peer = {}
Peer.__index = Peer

-- Read what has arrived, waiting up to the deadline for something. Returns
-- false once the server has closed its side (or reset).
local function read_some(self, deadline)
  if self.ended then return false end
  local left = deadline - wait.now()
  if left <= 0 then return false end
  local readable = socket.select({ self.conn.sock }, nil, math.min(left, 0.25))
  if not readable[1] then return true end
  self.conn.sock:settimeout(0)
  local data, err, partial = self.conn.sock:receive(65536)
  local piece = data or partial or ""
  if #piece > 0 then
    self.parts[#self.parts + 1] = piece
    self.size = self.size + #piece
  end
  if err and err ~= "timeout" then
    self.ended = err
    return false
  end
  return true
end

local function joined(self)
  local all = table.concat(self.parts)
  self.parts = { all }
  return all
end

-- Remove and return the first n bytes received.
local function take(self, n)
  local all = joined(self)
  self.parts, self.size = { all:sub(n + 1) }, #all - n
  return all:sub(1, n)
end

local function timed_out(self, what)
  local all = joined(self)
  error(("timed out waiting for %s; the peer has %d bytes%s: %q"):format(what, #all,
    self.ended and (" and the connection " .. self.ended) or "", all:sub(-200)), 3)
end

function Peer:send(data) self.conn:send_all(data) end
function Peer:eof() self.conn:shutdown_send() end
function Peer:reset() self.conn:reset() end
function Peer.hold() end -- a real peer holds its output by not reading it
function Peer:port() return self.local_port end

function Peer:receive(n)
  local deadline = wait.now() + TIMEOUT
  while self.size < n do
    if not read_some(self, deadline) and (self.ended or wait.now() >= deadline) then
      timed_out(self, n .. " bytes")
    end
  end
  return take(self, n)
end

function Peer:receive_until(marker)
  local deadline = wait.now() + TIMEOUT
  local searched = 0 -- search only what is new, plus an overlap
  while true do
    local last = self.parts[#self.parts] or ""
    if #self.parts > 1 or searched == 0 then
      local all = joined(self)
      local _, e = all:find(marker, math.max(1, searched - #marker), true)
      if e then return take(self, e) end
      searched = #all
    elseif last:find(marker, 1, true) then
      local _, e = last:find(marker, 1, true)
      return take(self, e)
    end
    if not read_some(self, deadline) and (self.ended or wait.now() >= deadline) then
      timed_out(self, ("%q"):format(marker))
    end
  end
end

function Peer:receive_until_close()
  local deadline = wait.now() + TIMEOUT
  while not self.ended do
    if not read_some(self, deadline) and not self.ended and wait.now() >= deadline then
      timed_out(self, "the server to close")
    end
  end
  return take(self, self.size)
end

local Harness = {}
Harness.__index = Harness

function Harness:connect()
  local conn = client.connect(self.host, self.port)
  return setmetatable({ conn = conn, local_port = select(2, conn:sockname()), parts = {}, size = 0 }, Peer)
end

-- wait.until_true, failing with what the process wrote on 'stream'.
local function wait_for(proc, stream, fn, what)
  local results = table.pack(pcall(wait.until_true, fn, TIMEOUT, what))
  if not results[1] then
    error(("%s\n--- luaecho's %s:\n%s"):format(tostring(results[2]), stream, proc[stream](proc)), 3)
  end
  return table.unpack(results, 2, results.n)
end

function Harness:printed(pattern)
  if pattern == nil then return text.lines(self.proc:stdout()) end
  return wait_for(self.proc, "stdout", function()
    local lines = text.lines(self.proc:stdout())
    for _, line in ipairs(lines) do
      if line:match(pattern) then return lines end
    end
    if self.proc:exited() then
      error(("luaecho exited without printing a line matching %q\n%s"):format(pattern, self.proc:describe()), 0)
    end
  end, ("a printed line matching %q"):format(pattern))
end

function Harness:logged(pattern)
  return wait_for(self.proc, "stderr", function()
    local log = self.proc:stderr()
    if log:match(pattern) then return log end
  end, ("the log to match %q"):format(pattern))
end

function Harness.advance() end

-- Refused, or (while the listener is being closed) accepted and reset at once.
-- The server is closed then: the process ends with its last connection.
function Harness:refused()
  self.closed_server = true
  return wait.until_true(function()
    local ok, conn = pcall(client.connect, self.host, self.port, 1)
    if not ok then return true end
    conn.sock:settimeout(0.2)
    local _, err = conn.sock:receive(1)
    conn:close()
    return err ~= "timeout"
  end, TIMEOUT, "the server to refuse connections")
end

--- Start luaecho on the case's fixture with the case's host options and
-- return the harness: h.proc is the server; h.closed_server is set once the
-- case has seen the server refuse connections (the script closed it).
function M.start(case)
  local args = {}
  for option, value in pairs(case.options) do
    args[#args + 1] = FLAGS[option]
    args[#args + 1] = tostring(value)
  end
  args[#args + 1] = server.fixture("cases/" .. case.script)
  local proc = server.start(args)
  return setmetatable({ proc = proc, host = proc.host, port = proc.port }, Harness)
end

return M
