--- A fake luaecho transport: hosts any Protocol table with no loop and no
-- sockets, for unit specs.
-- The transport side follows the host's contract (same methods, same errors
-- after close, pause_writing/resume_writing at the same marks). The test side
-- plays the peer and the loop: feed() and feed_eof() are bytes arriving,
-- drain_output() is the peer reading what we wrote, lose() is a reset.
-- As in the host, what happens "on a later loop turn" (connection_lost after
-- close() or abort(), input held while reading was paused) happens on the
-- next test control, or on run().
-- @usage
--   local fake = require("support.fake_transport")
--   local t, proto = fake.connect(Protocol)      -- runs connection_made
--   t:feed("hello\n")                            -- data_received("hello\n")
--   assert.are.equal("echo:hello\n", t:written())
local concat = table.concat
local error, setmetatable, tostring, type, xpcall = error, setmetatable, tostring, type, xpcall
local traceback = debug.traceback
local log = require("luaecho.log")

local M = {}

local DEFAULT_HIGH = 64 * 1024

local Transport = {}
Transport.__index = Transport

--- A transport attached to nothing yet. opts: peername, sockname ({host,
-- port} pairs), server (what get_extra_info("server") answers).
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    peername = opts.peername or { "127.0.0.1", 50000 },
    sockname = opts.sockname or { "127.0.0.1", 2222 },
    server = opts.server,
    state = "open",     -- "open", "closing" (connection_lost due), "gone"
    reading = true,     -- false while paused, and once closing
    high = DEFAULT_HIGH, low = DEFAULT_HIGH // 4,
    buffered = 0,       -- bytes written that the peer has not read yet
    write_paused = false,
    eof_written = false, eof_received = false, aborted = false,
    out = {},           -- every chunk written, in order
    held = {},          -- input that arrived while reading was paused
    calls = {},         -- names of the protocol methods called, in order
    errors = {},        -- { method =, err = } per callback that raised
  }, Transport)
end

--- Make a protocol instance the host's way, attach it, run connection_made.
-- Returns the transport and the instance.
function M.connect(Protocol, opts)
  local instance
  if Protocol.new then
    instance = Protocol.new()
  else
    instance = setmetatable({}, { __index = Protocol })
  end
  local t = M.new(opts)
  t:attach(instance)
  return t, instance
end

--- Attach a protocol instance and call its connection_made(transport).
function Transport:attach(protocol)
  self.protocol = protocol
  self:call("connection_made", self)
end

-- Keep the traceback of a callback's error next to the error itself.
local function catch(err)
  return { err = err, traceback = traceback(nil, 2) }
end

-- Call protocol method 'method' the way the host does: skipped if missing;
-- if it raises, log "<method> failed for <peer>: <err>" with the traceback,
-- abort, and let connection_lost(err) run on the next turn.
function Transport:call(method, ...)
  local p = self.protocol
  local f = p and p[method]
  if f == nil then return nil end
  self.calls[#self.calls + 1] = method
  local ok, ret = xpcall(f, catch, p, ...)
  if ok then return ret end
  local msg = tostring(ret.err)
  self.errors[#self.errors + 1] = { method = method, err = ret.err }
  log.error(method .. " failed for " .. self:peer() .. ": " .. msg .. "\n" .. ret.traceback)
  if method ~= "connection_lost" then self:shut(msg, true) end
  return nil
end

--- "host:port" of the peer ("[v6]:port" for IPv6).
function Transport:peer()
  local host, port = self.peername[1], self.peername[2]
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(port)
end

-- Start closing: no more reading; connection_lost(reason) is due.
function Transport:shut(reason, discard)
  if self.state ~= "open" then return end
  self.state, self.reading, self.lost_reason = "closing", false, reason
  self.aborted = discard
  self.buffered, self.held = 0, {}
end

------------------------------------------------------------------------------
-- The transport contract.

-- 'data' as the host's luaL_checklstring takes it: a string or a number.
local function check_bytes(data, method, index)
  local kind = type(data)
  if kind == "string" then return data end
  if kind == "number" then return tostring(data) end
  error(("bad argument #1 to '%s' (string expected, got %s%s)"):format(
    method, kind, index and " at index " .. index or ""), 3)
end

-- Raise as the host does when writing is no longer allowed.
function Transport:check_writable()
  if self.state ~= "open" then error("transport is closed", 0) end
  if self.eof_written then error("cannot write after write_eof()", 0) end
end

-- Account for 'n' more bytes waiting to be sent: above high, pause_writing.
function Transport:grow(n)
  self.buffered = self.buffered + n
  if self.buffered > self.high and not self.write_paused then
    self.write_paused = true
    self:call("pause_writing")
  end
end

-- The buffer went down (or the marks changed): at low or below, resume.
function Transport:maybe_resume()
  if self.write_paused and self.buffered <= self.low then
    self.write_paused = false
    self:call("resume_writing")
  end
end

function Transport:write(data)
  data = check_bytes(data, "write")
  self:check_writable()
  if data == "" then return end
  self.out[#self.out + 1] = data
  self:grow(#data)
end

function Transport:writelines(list)
  if type(list) ~= "table" then
    error(("bad argument #1 to 'writelines' (table expected, got %s)"):format(type(list)), 2)
  end
  local parts = {}
  for i = 1, #list do parts[i] = check_bytes(list[i], "writelines", i) end
  self:check_writable()
  local data = concat(parts)
  if data == "" then return end
  self.out[#self.out + 1] = data
  self:grow(#data)
end

function Transport:write_eof()
  if self.state ~= "open" then error("transport is closed", 0) end
  self.eof_written = true
end

function Transport.can_write_eof()
  return true
end

--- Flush then close: the peer gets everything written; connection_lost(nil)
-- runs on the next turn.
function Transport:close()
  self:shut(nil, false)
end

--- Close at once, dropping what the peer has not read.
function Transport:abort()
  self:shut(nil, true)
end

function Transport:is_closing()
  return self.state ~= "open"
end

function Transport:pause_reading()
  if self.state == "open" then self.reading = false end
end

function Transport:resume_reading()
  if self.state == "open" then self.reading = true end
end

function Transport:is_reading()
  return self.state == "open" and self.reading
end

function Transport:get_write_buffer_size()
  return self.state == "open" and self.buffered or 0
end

--- Set the marks (defaults 64 KiB and high/4) and apply them at once.
function Transport:set_write_buffer_limits(high, low)
  high = high or DEFAULT_HIGH
  low = low or high // 4
  if low < 0 or high < low then
    error("bad argument to 'set_write_buffer_limits' (need high >= low >= 0)", 2)
  end
  self.high, self.low = high, low
  if self.state ~= "open" then return end
  self:grow(0)
  self:maybe_resume()
end

function Transport:get_extra_info(name)
  if name == "peername" then return self.peername[1], self.peername[2] end
  if name == "sockname" then
    if self.state == "gone" then return nil end
    return self.sockname[1], self.sockname[2]
  end
  if name == "server" then return self.server end
  return nil
end

------------------------------------------------------------------------------
-- Test controls: the peer and the loop.

-- Deliver input held while reading was paused, as long as reading is on.
function Transport:deliver_held()
  local held = self.held
  while self.state == "open" and self.reading and held[1] ~= nil do
    local item = table.remove(held, 1)
    if item == true then self:deliver_eof() else self:call("data_received", item) end
  end
end

--- One loop turn's pending work: finish a close (connection_lost), deliver
-- held input if reading was resumed.
function Transport:run()
  if self.state == "closing" then
    self.state = "gone"
    self:call("connection_lost", self.lost_reason)
    return
  end
  self:deliver_held()
end

-- Refuse test input on a connection that can no longer receive any.
function Transport:check_receiving(control)
  if self.state ~= "open" then error("fake transport: " .. control .. " on a closed connection", 3) end
  if self.eof_received then error("fake transport: " .. control .. " after feed_eof()", 3) end
end

--- Bytes from the peer: data_received(data) now, or when reading resumes.
function Transport:feed(data)
  self:run()
  self:check_receiving("feed()")
  if self.reading and self.held[1] == nil then
    self:call("data_received", data)
  else
    self.held[#self.held + 1] = data
  end
end

-- The peer's EOF reaches the protocol: a falsy eof_received closes.
function Transport:deliver_eof()
  self.eof_received = true
  if not self:call("eof_received") then self:close() end
end

--- EOF from the peer (held, like data, while reading is paused).
function Transport:feed_eof()
  self:run()
  self:check_receiving("feed_eof()")
  if self.reading and self.held[1] == nil then
    self:deliver_eof()
  else
    self.held[#self.held + 1] = true
    self.eof_received = true
  end
end

--- The connection breaks (reset): connection_lost(err) at once.
function Transport:lose(err)
  self:run()
  if self.state == "gone" then return end
  self:shut(err, true)
  self:run()
end

--- The peer reads 'n' bytes (default: all) of what waits to be sent.
function Transport:drain_output(n)
  self:run()
  if self.state ~= "open" then return end
  if n == nil or n > self.buffered then n = self.buffered end
  self.buffered = self.buffered - n
  self:maybe_resume()
end

--- Everything written so far, as one string.
function Transport:written()
  return concat(self.out)
end

return M
