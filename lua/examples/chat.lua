--- A chat room over telnet (or nc): luaecho.telnet in line mode.
-- Each newcomer picks a nickname (1 to 20 letters, digits, _ or -, unique
-- whatever its case), then every line they type goes to everyone else as
-- "<nick> line". Commands: /who (who is here), /nick NAME (a new name),
-- /me ACTION ("* nick ACTION"), /quit. The room hears "* nick joined" and
-- "* nick left".
--
-- The room is a luaecho.channel topic, "chat.room": every member holds a
-- subscription, and a line is published once, so it reaches members served
-- by every worker (--workers N) and, with --channel-redis URL, by every
-- instance sharing that Redis. Who is here (nicknames, /who) lives:
--   * without --channel-redis, in this worker (as before channels: with
--     --workers N, /who lists and uniqueness cover one worker's members);
--   * with it, in Redis keys, so /who lists the members of every instance
--     and a nickname is unique across them: "chat:nick:<lower-case nick>"
--     holds "<member id> <nick>" with a TTL of NICK_TTL seconds that each
--     worker refreshes every NICK_TTL / 3 s while it has members, and the
--     sorted set "chat:who" keeps the join order. An instance that crashes
--     stops refreshing: its members' names expire within NICK_TTL seconds
--     and /who forgets them. While Redis is unreachable the local chat goes
--     on (a newcomer is checked against this worker only, and the next
--     refresh claims their name once Redis is back; /who says it lists this
--     worker only).
--
-- One stalled reader never slows the rest: messages are queued on each
-- member's transport and nothing ever waits for a member. A member whose
-- output stays above the transport's high mark (pause_writing, without
-- resume_writing) for STALL_SECONDS is disconnected, and the room is told.
--
-- The worker's part of the room lives in luaecho.shared("chat.room"), so it
-- survives a hot swap of this script (kill -HUP, --watch): members who
-- joined before the swap keep the code they started with (this script has
-- no upgrade()) and their subscription, members who join after it run the
-- new code, and all of them are in the same room. For that, the room holds
-- only plain member records that every generation understands:
-- { nick = "ann", seq = 3, id = "...", send = function(text),
-- kick = function(reason) }, and the Redis client, made once per worker.
--
--   luaecho lua/examples/chat.lua      then, in several terminals: telnet localhost 2222
--   luaecho --workers 4 --channel-redis redis://127.0.0.1:6379 lua/examples/chat.lua
local luaecho = require "luaecho"
local channel = require "luaecho.channel"
local telnet = require "luaecho.telnet"
local lower, gsub, match, concat, sort = string.lower, string.gsub, string.match, table.concat, table.sort
local format, find, sub = string.format, string.find, string.sub
local ipairs, next, pairs, tostring = ipairs, next, pairs, tostring

--- Seconds a member may keep its output above the high mark.
local STALL_SECONDS = 5
--- Seconds a nickname stays claimed in Redis without a refresh.
local NICK_TTL = 30
--- The channel topic of the room.
local TOPIC = "chat.room"

local room = luaecho.shared("chat.room")
room.members = room.members or {}   -- lower(nick) -> member record, this worker's
room.seq = room.seq or 0            -- join order here, for /who without Redis
-- This worker's name in member ids: 64 random bits, so ids never collide
-- across workers and instances. From /dev/urandom: math.random starts from
-- the same seed in every process here.
local function random_token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(8)
  if f then f:close() end
  if not bytes or #bytes < 8 then -- no /dev/urandom: time and an address
    bytes = tostring(os.time()) .. tostring({}) .. tostring(luaecho.now())
  end
  return (gsub(bytes, ".", function(c) return format("%02x", c:byte()) end))
end
room.token = room.token or random_token()

local REDIS_URL = channel.redis_url()
if REDIS_URL and not room.redis then room.redis = require("luaecho.redis").connect(REDIS_URL) end

local HELP = "Commands: /who, /nick NAME, /me ACTION, /quit.\n"
local NICK_RULE = "A nickname is 1 to 20 letters, digits, _ or -."

-- Redis scripts (EVAL), so that each step is one atomic round trip.
-- CLAIM: KEYS nick key, "chat:who", "chat:seq"; ARGV value, ttl, lower nick,
-- member id, and the lower old nick on a rename (else ""), whose place in
-- the join order the new name takes. Takes the name if free or already this
-- member's (a refresh, or a new case of one's own name); 1 if held now, 0 if
-- someone else has it.
local CLAIM = [[
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^%S+') ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if not v or not redis.call('ZSCORE', KEYS[2], ARGV[3]) then
  local seq = ARGV[5] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[5]) or redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[2], seq, ARGV[3])
end
return 1]]
-- RELEASE: KEYS nick key, "chat:who"; ARGV lower nick, member id.
local RELEASE = [[
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^%S+') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1]]
-- WHO: KEYS "chat:who"; ARGV the nick key prefix. The live names in join
-- order; names whose key expired (a crashed instance's) are forgotten.
local WHO = [[
local out = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('GET', ARGV[1] .. name)
  if v then out[#out + 1] = string.match(v, '^%S+ (.*)$') else redis.call('ZREM', KEYS[1], name) end
end
return out]]

local function nick_key(nick) return "chat:nick:" .. lower(nick) end

-- Claim 'nick' for the member 'id' in Redis (taking the place of 'old', a
-- name it had); done(ok, err): ok true when held, false when another member
-- has it, nil with err when Redis failed.
local function claim(nick, id, done, old)
  room.redis:call("EVAL", CLAIM, 3, nick_key(nick), "chat:who", "chat:seq", id .. " " .. nick,
    tostring(NICK_TTL), lower(nick), id, old and lower(old) or "", function(reply, err)
      if done then done(reply and reply == 1, err) end
    end)
end

local function release(nick, id)
  room.redis:call("EVAL", RELEASE, 2, nick_key(nick), "chat:who", lower(nick), id, function() end)
end

-- While this worker has members, claim their names again every
-- NICK_TTL / 3 seconds (which also restores them after Redis lost its keys).
local function refresh()
  room.refreshing = next(room.members) ~= nil
  if not room.refreshing then return end
  for _, member in pairs(room.members) do claim(member.nick, member.id) end
  luaecho.call_later(NICK_TTL / 3, refresh)
end

local function start_refresh()
  if room.redis and not room.refreshing then
    room.refreshing = true
    luaecho.call_later(NICK_TTL / 3, refresh)
  end
end

-- Why 'nick' cannot be used here, or nil when it can ('self_record': its
-- owner, who may change the case of their own name).
local function refuse_nick(nick, self_record)
  if #nick < 1 or #nick > 20 or not match(nick, "^[A-Za-z0-9_%-]+$") then return NICK_RULE end
  local holder = room.members[lower(nick)]
  if holder and holder ~= self_record then return nick .. " is taken; choose another." end
  return nil
end

-- Say 'text' to every member of the room but the one whose id is 'except'.
local function broadcast(text, except)
  channel.publish(TOPIC, (except or "") .. "\n" .. text)
end

-- This worker's members' nicknames, in the order they joined.
local function local_who()
  local list = {}
  for _, member in pairs(room.members) do list[#list + 1] = member end
  sort(list, function(a, b) return a.seq < b.seq end)
  for i = 1, #list do list[i] = list[i].nick end
  return list
end

-- Who is in the room, for done(names, note): from Redis when it is there
-- (note nil), else this worker's members with a note saying so.
local function who(done)
  if not room.redis then return done(local_who()) end
  room.redis:call("EVAL", WHO, 1, "chat:who", "chat:nick:", function(names, err)
    if names then return done(names) end
    done(local_who(), "(this server only: the shared list is unreachable, " .. tostring(err) .. ")")
  end)
end

-- A line as others may see it: no control bytes (no escape sequences that
-- would drive their terminals), tabs as spaces.
local function clean(line)
  return (gsub(gsub(line, "\t", " "), "%c", ""))
end

local Chat = {}

function Chat:connection_made(session)
  self.session = session
  session:write("Welcome to the chat. " .. NICK_RULE .. "\n")
  session:prompt("Your nickname: ")
end

-- Take this connection out of the room, telling the others 'notice'.
function Chat:leave(notice)
  local member = self.member
  if not member then return end
  self.member = nil
  if self.stall then
    self.stall:cancel()
    self.stall = nil
  end
  self.subscription:close()
  if room.members[lower(member.nick)] == member then room.members[lower(member.nick)] = nil end
  if room.redis then release(member.nick, member.id) end
  broadcast(notice, member.id)
end

-- The member's subscription: every room message but its own.
function Chat:subscribe(member)
  local session = self.session
  self.subscription = channel.subscribe(TOPIC, function(message)
    local cut = find(message, "\n", 1, true)
    if sub(message, 1, cut - 1) ~= member.id and not session:is_closing() then
      session:write(sub(message, cut + 1))
    end
  end)
end

function Chat:join(nick, id)
  local session = self.session
  room.seq = room.seq + 1
  local member = { nick = nick, seq = room.seq, id = id }
  function member.send(text) return session:write(text) end
  function member.kick(reason)
    self:leave("* " .. member.nick .. " was disconnected: " .. reason .. "\n")
    session:abort()
  end
  room.members[lower(nick)] = member
  self.member = member
  self:subscribe(member)
  start_refresh()
  session:prompt(nil)
  who(function(names, note)
    if session:is_closing() then return end
    local others = {}
    for _, name in ipairs(names) do if name ~= nick then others[#others + 1] = name end end
    session:write(format("Hello %s. %s\n", nick,
      #others == 0 and "Nobody else is here yet." or "Here: " .. concat(others, ", ") .. "."))
    if note then session:write(note .. "\n") end
    session:write(HELP)
  end)
  broadcast("* " .. nick .. " joined\n", id)
  if session:is_writing_paused() then self:pause_writing() end
end

-- A nickname typed at the prompt: checked here, then (with Redis) claimed
-- there; lines typed meanwhile wait in self.backlog.
function Chat:choose(line)
  local session = self.session
  local nick = match(line, "^%s*(.-)%s*$")
  local why = refuse_nick(nick)
  if why then
    session:write(why .. "\n")
    return session:prompt("Your nickname: ")
  end
  local id = room.token .. "/" .. (room.seq + 1)
  if not room.redis then return self:join(nick, id) end
  self.backlog = {}
  claim(nick, id, function(ok)
    local backlog = self.backlog
    self.backlog = nil
    if session:is_closing() then
      if ok then release(nick, id) end
      return
    end
    if ok == false then
      session:write(nick .. " is taken; choose another.\n")
      session:prompt("Your nickname: ")
    elseif refuse_nick(nick) then -- taken here while Redis answered
      if ok then release(nick, id) end
      self:choose(nick)
    else
      self:join(nick, id)           -- held in Redis, or Redis is down: serve it here
    end
    for _, queued in ipairs(backlog) do self:line_received(queued) end
  end)
end

-- /nick: with Redis the new name is claimed there first.
function Chat:rename(new)
  local session, member = self.session, self.member
  local why = refuse_nick(new, member)
  if why then return session:write(why .. "\n") end
  local function apply()
    local old = member.nick
    room.members[lower(old)] = nil
    member.nick = new
    room.members[lower(new)] = member
    if room.redis and lower(old) ~= lower(new) then release(old, member.id) end
    session:write("You are now " .. new .. ".\n")
    broadcast("* " .. old .. " is now known as " .. new .. "\n", member.id)
  end
  if not room.redis then return apply() end
  claim(new, member.id, function(ok)
    if self.member ~= member then return end
    if ok == false then return session:write(new .. " is taken; choose another.\n") end
    if refuse_nick(new, member) then return session:write(new .. " is taken; choose another.\n") end
    apply()
  end, member.nick)
end

function Chat:command(verb, rest)
  local session, member = self.session, self.member
  if verb == "/who" then
    who(function(names, note)
      if session:is_closing() then return end
      session:write("Here: " .. concat(names, ", ") .. ".\n" .. (note and note .. "\n" or ""))
    end)
  elseif verb == "/nick" then
    self:rename(rest)
  elseif verb == "/me" then
    if rest ~= "" then broadcast("* " .. member.nick .. " " .. clean(rest) .. "\n", member.id) end
  elseif verb == "/quit" then
    self:leave("* " .. member.nick .. " left\n")
    session:write("Bye.\n")
    session:close()
  else
    session:write("Unknown command " .. verb .. ". " .. HELP)
  end
end

function Chat:line_received(line)
  if self.backlog then
    self.backlog[#self.backlog + 1] = line
    return
  end
  if not self.member then return self:choose(line) end
  local verb, rest = match(line, "^%s*(/%S*)%s*(.-)%s*$")
  if verb then return self:command(lower(verb), rest) end
  if match(line, "^%s*$") then return end
  broadcast("<" .. self.member.nick .. "> " .. clean(line) .. "\n", self.member.id)
end

-- Ctrl-D on an empty line, IAC EOF, or the client half-closed.
function Chat:eof()
  if self.member then self:leave("* " .. self.member.nick .. " left\n") end
  self.session:close()
end

-- Flow control: the member's output went above the high mark. If it has
-- not come down within STALL_SECONDS, the member is disconnected.
function Chat:pause_writing()
  local member = self.member
  if not member or self.stall then return end
  self.stall = luaecho.call_later(STALL_SECONDS, function()
    self.stall = nil
    if self.member == member then member.kick(("not reading for %d s"):format(STALL_SECONDS)) end
  end)
end

function Chat:resume_writing()
  if self.stall then
    self.stall:cancel()
    self.stall = nil
  end
end

function Chat:connection_lost()
  if self.member then self:leave("* " .. self.member.nick .. " left\n") end
end

return telnet.protocol(Chat)
