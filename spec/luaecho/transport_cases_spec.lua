-- The shared transport cases (spec/shared/transport_cases.lua) against
-- luaecho.testing's fake host: no sockets, a virtual clock.
local testing = require "luaecho.testing"
local cases = require "shared.transport_cases"

local FIXTURES = "spec/fixtures/cases/"

-- The spec's fake peer, with the harness's peer interface.
local Peer = {}
Peer.__index = Peer

local function take(self, n, what)
  self.buffer = self.buffer .. self.conn:output()
  if #self.buffer < n then
    error(("expected %s, the peer has only %q"):format(what, self.buffer), 3)
  end
  local out = self.buffer:sub(1, n)
  self.buffer = self.buffer:sub(n + 1)
  return out
end

function Peer:send(data) self.conn:send(data) end
function Peer:eof() self.conn:eof() end
function Peer:reset() self.conn:reset() end
function Peer:hold() self.conn:hold_output() end
function Peer:port() return select(2, self.conn:address()) end

function Peer:receive(n)
  return take(self, n, n .. " bytes")
end

-- The peer reads everything from now on.
function Peer:receive_until(marker)
  self.conn:release_output()
  self.buffer = self.buffer .. self.conn:output()
  local _, last = self.buffer:find(marker, 1, true)
  if not last then error(("expected %q, the peer has only %q"):format(marker, self.buffer:sub(-200)), 2) end
  return take(self, last, ("%q"):format(marker))
end

function Peer:receive_until_close()
  self.conn:release_output()
  local rest = self.buffer .. self.conn:output()
  self.buffer = ""
  if not self.conn:at_eof() then
    error(("the handler's side is still open; the peer has %q"):format(rest:sub(-200)), 2)
  end
  return rest
end

local Harness = {}
Harness.__index = Harness

function Harness:connect()
  return setmetatable({ conn = self.server:connect(), buffer = "" }, Peer)
end

function Harness:printed(pattern)
  local lines = self.server:printed()
  if pattern == nil then return lines end
  for _, line in ipairs(lines) do
    if line:match(pattern) then return lines end
  end
  error(("no printed line matches %q; printed:\n%s"):format(pattern, table.concat(lines, "\n")), 2)
end

function Harness.logged(_, pattern)
  local text = table.concat(testing.logs(), "\n") .. "\n"
  if not text:match(pattern) then error(("the log does not match %q; it says:\n%s"):format(pattern, text), 2) end
  return text
end

function Harness.advance(_, seconds)
  testing.advance(seconds)
end

function Harness:refused()
  return not pcall(self.server.connect, self.server)
end

describe("the transport contract, on luaecho.testing's fake host #unit", function()
  -- The cases check the log themselves, as they must against the real
  -- binary: an error a case provokes is the case's business.
  before_each(function()
    testing.reset()
    testing.expect_errors()
  end)

  for _, c in ipairs(cases) do
    it(c.name, function()
      local server = testing.serve(FIXTURES .. c.script, c.options)
      local host, port = server:address()
      c.run(setmetatable({ server = server, host = host, port = port }, Harness))
    end)
  end
end)
