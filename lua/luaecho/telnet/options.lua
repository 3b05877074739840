--- Telnet option negotiation by RFC 1143's Q method, for both sides of every
-- option: "us" (options we perform: we send WILL/WONT, he sends DO/DONT) and
-- "him" (options the peer performs: we send DO/DONT, he sends WILL/WONT). Each
-- side of an option is NO, YES, WANTNO or WANTYES, with a queue bit for the
-- opposite request asked while one is under way; an option is enabled only in
-- YES. The Q method never answers an answer, so two sides cannot loop.
-- On top of RFC 1143: an option the caller does not accept is refused once per
-- side and option, and later offers of it are ignored (counted in q.ignored),
-- so a peer that flips an option forever gets one refusal, not one per offer.
-- @usage
--   local codec, options = require "luaecho.telnet.codec", require "luaecho.telnet.options"
--   local q = options.new({ us = { [codec.ECHO] = true }, him = { [codec.NAWS] = true },
--     send = function(bytes) transport:write(bytes) end,
--     changed = function(side, option, enabled) end })
--   q:enable("him", codec.NAWS)                -- sends DO NAWS
--   q:received(ev.verb, ev.option)             -- for each codec "negotiate" event
local codec = require("luaecho.telnet.codec")
local negotiation = codec.negotiation
local error, pairs, setmetatable, tostring, type = error, pairs, setmetatable, tostring, type
local math_type = math.type

local M = {}

-- States (RFC 1143 section 7) and the queue bit.
local NO, YES, WANTNO, WANTYES = 0, 1, 2, 3
local EMPTY, OPPOSITE = false, true
M.NO, M.YES, M.WANTNO, M.WANTYES = NO, YES, WANTNO, WANTYES

-- Per side: the verbs we send to ask for on/off, and, for a received verb, the
-- side it is about and whether it means on.
local ASK_ON = { us = codec.WILL, him = codec.DO }
local ASK_OFF = { us = codec.WONT, him = codec.DONT }
local SIDE_OF = { [codec.WILL] = "him", [codec.WONT] = "him", [codec.DO] = "us", [codec.DONT] = "us" }
local ON = { [codec.WILL] = true, [codec.DO] = true, [codec.WONT] = false, [codec.DONT] = false }

local Q = {}
Q.__index = Q

local function accepted_of(set, who)
  local copy = {}
  if set == nil then return copy end
  if type(set) ~= "table" then error("telnet.options.new: " .. who .. " must be a table of options", 3) end
  for option, yes in pairs(set) do
    if yes then copy[option] = true end
  end
  return copy
end

local function nop() end

--- Option negotiation for one connection. opts.us and opts.him are sets of
-- options ({ [codec.ECHO] = true }) we accept to perform and accept the peer
-- performs; opts.send(bytes) writes our replies and requests; opts.changed(side,
-- option, enabled) is called each time a side of an option settles on YES
-- (true) or NO (false), a refused request of ours included.
function M.new(opts)
  opts = opts or {}
  local send = opts.send
  if type(send) ~= "function" then error("telnet.options.new: send must be a function", 2) end
  local changed = opts.changed or nop
  if type(changed) ~= "function" then error("telnet.options.new: changed must be a function", 2) end
  return setmetatable({
    send = send, changed = changed,
    accept = { us = accepted_of(opts.us, "us"), him = accepted_of(opts.him, "him") },
    state = { us = {}, him = {} },      -- option -> state; absent is NO
    queue = { us = {}, him = {} },      -- option -> OPPOSITE; absent is EMPTY
    refused_once = { us = {}, him = {} },
    refused = 0, ignored = 0,
  }, Q)
end

local function check_side(side, who)
  if side ~= "us" and side ~= "him" then
    error("telnet.options " .. who .. ": side must be \"us\" or \"him\", got " .. tostring(side), 3)
  end
end

local function check_option(option, who)
  if math_type(option) ~= "integer" or option < 0 or option > 255 then
    error("telnet.options " .. who .. ": option must be an integer 0-255, got " .. tostring(option), 3)
  end
end

-- Set a side of an option to a settled state, send 'reply' (a verb, or nil)
-- and then tell the caller: what the callback sends goes after the reply.
local function settle(q, side, option, state, reply)
  q.state[side][option] = state
  q.queue[side][option] = nil
  if reply then q.send(negotiation(reply, option)) end
  q.changed(side, option, state == YES)
end

--- Handle a received WILL, WONT, DO or DONT for 'option', replying per RFC 1143.
function Q:received(verb, option)
  local side = SIDE_OF[verb]
  if side == nil then
    error("telnet.options received: verb must be WILL, WONT, DO or DONT, got " .. tostring(verb), 2)
  end
  check_option(option, "received")
  local states, queues = self.state[side], self.queue[side]
  local state, queued = states[option] or NO, queues[option] or EMPTY
  if ON[verb] then                                      -- WILL (him) / DO (us)
    if state == NO then
      if self.accept[side][option] then
        settle(self, side, option, YES, ASK_ON[side])
      elseif self.refused_once[side][option] then
        self.ignored = self.ignored + 1                   -- refused already: not again
      else
        self.refused_once[side][option] = true
        self.refused = self.refused + 1
        self.send(negotiation(ASK_OFF[side], option))
      end
    elseif state == WANTNO then
      -- An error: our "off" answered by "on". RFC 1143 takes it as settled.
      settle(self, side, option, queued == OPPOSITE and YES or NO)
    elseif state == WANTYES then
      if queued == EMPTY then
        settle(self, side, option, YES)
      else
        states[option], queues[option] = WANTNO, nil
        self.send(negotiation(ASK_OFF[side], option))
      end
    end                                                 -- YES: ignored
  else                                                  -- WONT (him) / DONT (us)
    if state == YES then
      settle(self, side, option, NO, ASK_OFF[side])
    elseif state == WANTNO then
      if queued == EMPTY then
        settle(self, side, option, NO)
      else
        states[option], queues[option] = WANTYES, nil
        self.send(negotiation(ASK_ON[side], option))
      end
    elseif state == WANTYES then
      settle(self, side, option, NO)                    -- refused (the queued "off" is met too)
    end                                                 -- NO: ignored
  end
end

--- Ask for a side of an option to be on: send WILL (us) or DO (him), or queue
-- the request behind an "off" under way. A no-op when it is on or asked for
-- already. The option becomes one we accept on that side.
function Q:enable(side, option)
  check_side(side, "enable")
  check_option(option, "enable")
  self.accept[side][option] = true
  self.refused_once[side][option] = nil
  local state, queued = self.state[side][option] or NO, self.queue[side][option] or EMPTY
  if state == NO then
    self.state[side][option] = WANTYES
    self.send(negotiation(ASK_ON[side], option))
  elseif state == WANTNO then
    self.queue[side][option] = OPPOSITE
  elseif state == WANTYES and queued == OPPOSITE then
    self.queue[side][option] = nil                      -- cancel the queued "off"
  end
end

--- Ask for a side of an option to be off: send WONT (us) or DONT (him), or
-- queue the request behind an "on" under way. A no-op when it is off or asked
-- off already. The option stays one we accept if the peer asks again.
function Q:disable(side, option)
  check_side(side, "disable")
  check_option(option, "disable")
  local state, queued = self.state[side][option] or NO, self.queue[side][option] or EMPTY
  if state == YES then
    self.state[side][option] = WANTNO
    self.send(negotiation(ASK_OFF[side], option))
  elseif state == WANTYES then
    self.queue[side][option] = OPPOSITE
  elseif state == WANTNO and queued == OPPOSITE then
    self.queue[side][option] = nil                      -- cancel the queued "on"
  end
end

--- Whether a side of an option is on (its state is YES).
function Q:enabled(side, option)
  check_side(side, "enabled")
  return self.state[side][option] == YES
end

--- A side of an option's RFC 1143 state (options.NO, YES, WANTNO or WANTYES)
-- and whether the opposite request is queued; for tests and debugging.
function Q:state_of(side, option)
  check_side(side, "state_of")
  return self.state[side][option] or NO, self.queue[side][option] == OPPOSITE
end

return M
