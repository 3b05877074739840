--- The telnet NVT byte codec (RFC 854/855): a parser that turns the bytes a
-- connection receives, split at any point, into data, commands, option
-- negotiations and subnegotiations, and the functions that build what we send.
-- It never raises on input bytes: garbage is read as commands or data.
-- Bytes that are not telnet pass through untouched, so a plain `nc` client
-- works; line ends ("\r\n", "\r\0") are left in the data for the caller.
-- Data without an IAC byte costs one string.find and no per-byte loop.
--
-- Two readings of garbage the contract leaves open, chosen as libtelnet does:
-- inside IAC SB ... IAC SE, an IAC followed by anything but IAC or SE ends the
-- subnegotiation (delivered as received so far, unless over the bound) and the
-- IAC and its byte are then read as they would be outside one, so a peer that
-- forgets IAC SE loses nothing after it; and a subnegotiation is counted in
-- p.dropped as soon as it passes the bound (so one that never ends is counted).
-- @usage
--   local codec = require "luaecho.telnet.codec"
--   local p = codec.new()
--   for _, ev in ipairs(p:feed(bytes)) do
--     if ev.kind == "data" then ... elseif ev.kind == "negotiate" then ... end
--   end
local byte, char, find, gsub, sub = string.byte, string.char, string.find, string.gsub, string.sub
local concat = table.concat
local error, pairs, setmetatable, tostring, type = error, pairs, setmetatable, tostring, type
local math_type = math.type

local M = {}

-- Commands (RFC 854, 885, 1184).
M.IAC, M.DONT, M.DO, M.WONT, M.WILL, M.SB = 255, 254, 253, 252, 251, 250
M.GA, M.EL, M.EC, M.AYT, M.AO, M.IP, M.BRK, M.DM, M.NOP, M.SE = 249, 248, 247, 246, 245, 244, 243, 242, 241, 240
M.EOR, M.ABORT, M.SUSP, M.EOF = 239, 238, 237, 236

-- Options.
local OPTION_NAMES = {
  [0] = "BINARY", [1] = "ECHO", [3] = "SGA", [5] = "STATUS", [6] = "TIMING_MARK", [24] = "TTYPE", [31] = "NAWS",
  [32] = "TSPEED", [33] = "LFLOW", [34] = "LINEMODE", [35] = "XDISPLOC", [36] = "ENVIRON", [39] = "NEW_ENVIRON",
}
for number, name in pairs(OPTION_NAMES) do M[name] = number end

--- Default bound on a subnegotiation's payload, in bytes.
M.DEFAULT_MAX_SUBNEGOTIATION = 1024

local IAC, SB, SE, WILL, DONT = M.IAC, M.SB, M.SE, M.WILL, M.DONT
local TTYPE = M.TTYPE
local IAC_CHAR = "\255"

-- Parser states: what the next byte is.
local DATA = 0      -- plain data
local COMMAND = 1   -- the byte after IAC
local OPTION = 2    -- the option after IAC WILL/WONT/DO/DONT (p.verb)
local SB_OPTION = 3 -- the option after IAC SB
local SB_DATA = 4   -- the payload of a subnegotiation
local SB_IAC = 5    -- the byte after IAC inside a subnegotiation

local Parser = {}
Parser.__index = Parser

--- A parser, one per connection. opts.max_subnegotiation (default 1024) bounds
-- a subnegotiation's payload in bytes: a longer one is dropped, and counted in
-- p.dropped.
function M.new(opts)
  local max = opts and opts.max_subnegotiation or M.DEFAULT_MAX_SUBNEGOTIATION
  if math_type(max) ~= "integer" or max < 0 then
    error("telnet.codec.new: max_subnegotiation must be a non-negative integer, got " .. tostring(max), 2)
  end
  return setmetatable({
    state = DATA, verb = 0, max = max, dropped = 0,
    sb_option = 0, sb_parts = {}, sb_n = 0, sb_size = 0, sb_over = false,
  }, Parser)
end

-- Add 'piece' to the subnegotiation being read, within the bound.
local function sb_add(p, piece)
  if p.sb_over then return end
  local size = p.sb_size + #piece
  if size > p.max then
    p.sb_over, p.sb_parts, p.sb_n = true, {}, 0
    p.dropped = p.dropped + 1
    return
  end
  local n = p.sb_n + 1
  p.sb_parts[n], p.sb_n, p.sb_size = piece, n, size
end

-- The subnegotiation read so far as an event, or nil when it was dropped;
-- either way the parser forgets it.
local function sb_finish(p)
  local ev
  if not p.sb_over then
    ev = { kind = "subnegotiation", option = p.sb_option, data = concat(p.sb_parts, "", 1, p.sb_n) }
  end
  p.sb_parts, p.sb_n, p.sb_size, p.sb_over = {}, 0, 0, false
  return ev
end

--- Parse 'bytes' (any string; a sequence may be split across calls) and return
-- the list of events it completes, maybe empty: { kind = "data", data = s },
-- { kind = "command", command = n }, { kind = "negotiate", verb = v, option = o }
-- and { kind = "subnegotiation", option = o, data = s }. Data is unescaped
-- (IAC IAC is "\255") and consecutive data in one call is one event.
function Parser:feed(bytes)
  if type(bytes) ~= "string" then
    error("telnet.codec feed: bytes must be a string, got " .. type(bytes), 2)
  end
  local state = self.state
  -- The common path: no IAC, nothing pending.
  if state == DATA and not find(bytes, IAC_CHAR, 1, true) then
    if bytes == "" then return {} end
    return { { kind = "data", data = bytes } }
  end
  local events, ne = {}, 0
  local data, nd = {}, 0            -- data pieces not yet in an event
  local i, n = 1, #bytes
  local function emit(ev)
    if nd > 0 then
      ne = ne + 1
      events[ne] = { kind = "data", data = concat(data, "", 1, nd) }
      nd = 0
    end
    ne = ne + 1
    events[ne] = ev
  end
  while i <= n do
    if state == DATA then
      local j = find(bytes, IAC_CHAR, i, true)
      if j == nil then
        nd = nd + 1
        data[nd] = i == 1 and bytes or sub(bytes, i)
        break
      end
      if j > i then nd = nd + 1; data[nd] = sub(bytes, i, j - 1) end
      i, state = j + 1, COMMAND
    elseif state == COMMAND then
      local c = byte(bytes, i)
      i = i + 1
      if c == IAC then
        nd = nd + 1; data[nd] = IAC_CHAR
        state = DATA
      elseif c >= WILL and c <= DONT then
        self.verb, state = c, OPTION
      elseif c == SB then
        state = SB_OPTION
      elseif c == SE then       -- IAC SE outside a subnegotiation: ignored
        state = DATA
      else                      -- GA ... EOF, and unknown bytes too
        emit({ kind = "command", command = c })
        state = DATA
      end
    elseif state == OPTION then
      emit({ kind = "negotiate", verb = self.verb, option = byte(bytes, i) })
      i, state = i + 1, DATA
    elseif state == SB_OPTION then
      self.sb_option = byte(bytes, i)
      i, state = i + 1, SB_DATA
    elseif state == SB_DATA then
      local j = find(bytes, IAC_CHAR, i, true)
      if j == nil then
        sb_add(self, sub(bytes, i))
        break
      end
      if j > i then sb_add(self, sub(bytes, i, j - 1)) end
      i, state = j + 1, SB_IAC
    else -- SB_IAC
      local c = byte(bytes, i)
      if c == IAC then
        sb_add(self, IAC_CHAR)
        i, state = i + 1, SB_DATA
      else
        local ev = sb_finish(self)
        if ev then emit(ev) end
        if c == SE then
          i, state = i + 1, DATA
        else
          state = COMMAND       -- read this byte again, as after an IAC outside
        end
      end
    end
  end
  self.state = state
  if nd > 0 then
    ne = ne + 1
    events[ne] = { kind = "data", data = concat(data, "", 1, nd) }
  end
  return events
end

--- What to write for 'text' as data: every 0xFF byte doubled.
function M.escape(text)
  if not find(text, IAC_CHAR, 1, true) then return text end
  return (gsub(text, IAC_CHAR, "\255\255"))
end

--- The bytes of a 2-byte command: IAC cmd.
function M.command(cmd)
  return char(IAC, cmd)
end

--- The bytes of a negotiation: IAC verb option.
function M.negotiation(verb, option)
  return char(IAC, verb, option)
end

--- The bytes of a subnegotiation: IAC SB option <payload escaped> IAC SE.
function M.subnegotiation(option, payload)
  return char(IAC, SB, option) .. M.escape(payload or "") .. char(IAC, SE)
end

--- Decode a NAWS payload (RFC 1073: width and height, 16 bits big-endian
-- each) into width, height; nil unless it is 4 bytes.
function M.naws(payload)
  if type(payload) ~= "string" or #payload ~= 4 then return nil end
  local w1, w0, h1, h0 = byte(payload, 1, 4)
  return w1 * 256 + w0, h1 * 256 + h0
end

--- Decode a TERMINAL-TYPE IS payload (RFC 1091: "\0" .. name) into the name;
-- nil for anything else, an empty name included.
function M.ttype(payload)
  if type(payload) ~= "string" or #payload < 2 or byte(payload, 1) ~= 0 then return nil end
  return sub(payload, 2)
end

--- The bytes of IAC SB TERMINAL-TYPE SEND IAC SE (RFC 1091).
function M.ttype_send()
  return char(IAC, SB, TTYPE, 1, IAC, SE)
end

--- An option's name for messages: "NAWS", or "option 77" for one without.
function M.name(option)
  return OPTION_NAMES[option] or "option " .. tostring(option)
end

return M
