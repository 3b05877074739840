--- A chat room over telnet (or nc): luaecho.telnet in line mode.
-- Each newcomer picks a nickname (1 to 20 letters, digits, _ or -, unique
-- whatever its case), then every line they type goes to everyone else as
-- "<nick> line". Commands: /who (who is here), /nick NAME (a new name),
-- /me ACTION ("* nick ACTION"), /quit. The room hears "* nick joined" and
-- "* nick left".
--
-- One stalled reader never slows the rest: messages are queued on each
-- member's transport and nothing ever waits for a member. A member whose
-- output stays above the transport's high mark (pause_writing, without
-- resume_writing) for STALL_SECONDS is disconnected, and the room is told.
--
-- The room lives in luaecho.shared("chat.room"), so it survives a hot swap
-- of this script (kill -HUP, --watch): members who joined before the swap
-- keep the code they started with (this script has no upgrade()), members
-- who join after it run the new code, and all of them are in the same room.
-- For that, the room holds only plain member records that every
-- generation understands: { nick = "ann", seq = 3, send = function(text),
-- kick = function(reason) }; the code that walks the room is each
-- generation's own.
--
-- With --workers N each worker has its own room: members served by
-- different workers do not see each other (a later issue connects them).
--
--   luaecho lua/examples/chat.lua      then, in several terminals: telnet localhost 2222
local luaecho = require "luaecho"
local telnet = require "luaecho.telnet"
local lower, gsub, match, concat, sort = string.lower, string.gsub, string.match, table.concat, table.sort
local pairs = pairs

--- Seconds a member may keep its output above the high mark.
local STALL_SECONDS = 5

local room = luaecho.shared("chat.room")
room.members = room.members or {}   -- lower(nick) -> member record
room.seq = room.seq or 0            -- join order, for /who

local HELP = "Commands: /who, /nick NAME, /me ACTION, /quit.\n"
local NICK_RULE = "A nickname is 1 to 20 letters, digits, _ or -."

-- Why 'nick' cannot be used, or nil when it can ('self_record': its owner,
-- who may change the case of their own name).
local function refuse_nick(nick, self_record)
  if #nick < 1 or #nick > 20 or not match(nick, "^[A-Za-z0-9_%-]+$") then return NICK_RULE end
  local holder = room.members[lower(nick)]
  if holder and holder ~= self_record then return nick .. " is taken; choose another." end
  return nil
end

-- Send 'text' to every member but 'except'.
local function broadcast(text, except)
  for _, member in pairs(room.members) do
    if member ~= except then member.send(text) end
  end
end

-- The members' nicknames, in the order they joined.
local function who()
  local list = {}
  for _, member in pairs(room.members) do list[#list + 1] = member end
  sort(list, function(a, b) return a.seq < b.seq end)
  for i = 1, #list do list[i] = list[i].nick end
  return list
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
  if room.members[lower(member.nick)] == member then room.members[lower(member.nick)] = nil end
  broadcast(notice, member)
end

function Chat:join(nick)
  local session = self.session
  room.seq = room.seq + 1
  local member = { nick = nick, seq = room.seq }
  function member.send(text) return session:write(text) end
  function member.kick(reason)
    self:leave("* " .. member.nick .. " was disconnected: " .. reason .. "\n")
    session:abort()
  end
  local others = who()
  room.members[lower(nick)] = member
  self.member = member
  session:prompt(nil)
  session:write(("Hello %s. %s\n"):format(nick,
    #others == 0 and "Nobody else is here yet." or "Here: " .. concat(others, ", ") .. "."))
  session:write(HELP)
  broadcast("* " .. nick .. " joined\n", member)
  if session:is_writing_paused() then self:pause_writing() end
end

function Chat:command(verb, rest)
  local session, member = self.session, self.member
  if verb == "/who" then
    session:write("Here: " .. concat(who(), ", ") .. ".\n")
  elseif verb == "/nick" then
    local why = refuse_nick(rest, member)
    if why then return session:write(why .. "\n") end
    local old = member.nick
    room.members[lower(old)] = nil
    member.nick = rest
    room.members[lower(rest)] = member
    session:write("You are now " .. rest .. ".\n")
    broadcast("* " .. old .. " is now known as " .. rest .. "\n", member)
  elseif verb == "/me" then
    if rest ~= "" then broadcast("* " .. member.nick .. " " .. clean(rest) .. "\n", member) end
  elseif verb == "/quit" then
    self:leave("* " .. member.nick .. " left\n")
    session:write("Bye.\n")
    session:close()
  else
    session:write("Unknown command " .. verb .. ". " .. HELP)
  end
end

function Chat:line_received(line)
  local session = self.session
  if not self.member then
    local nick = match(line, "^%s*(.-)%s*$")
    local why = refuse_nick(nick)
    if why then
      session:write(why .. "\n")
      return session:prompt("Your nickname: ")
    end
    return self:join(nick)
  end
  local verb, rest = match(line, "^%s*(/%S*)%s*(.-)%s*$")
  if verb then return self:command(lower(verb), rest) end
  if match(line, "^%s*$") then return end
  broadcast("<" .. self.member.nick .. "> " .. clean(line) .. "\n", self.member)
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
