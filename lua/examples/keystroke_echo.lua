--- Echoes each keystroke as it is typed: the article's telnet transcript.
-- It asks the telnet client for character mode (WILL ECHO, WILL SGA, DO
-- SGA: luaecho.telnet's "keys" mode), so the client sends every key at
-- once instead of whole lines, and answers "echo:" and the key on a line
-- of its own. Typing abc shows
--   echo:a
--   echo:b
--   echo:c
-- Enter shows as echo:Enter, arrows as echo:Up..., other control keys as
-- echo:^X; Ctrl-C or Ctrl-D says bye and closes. A plain nc sends its
-- whole line at Enter, and each of its keys is answered in turn.
--
--   luaecho lua/examples/keystroke_echo.lua      then: telnet localhost 2222
local telnet = require "luaecho.telnet"
local byte, char = string.byte, string.char

local NAMES = {
  ["\r"] = "Enter", ["\t"] = "Tab", ["\127"] = "Backspace", ["\b"] = "Backspace",
  ["\27"] = "Esc", ["\27[A"] = "Up", ["\27[B"] = "Down", ["\27[C"] = "Right", ["\27[D"] = "Left",
  ["\27OA"] = "Up", ["\27OB"] = "Down", ["\27OC"] = "Right", ["\27OD"] = "Left",
}

-- How a key is shown: itself when printable, else a name or ^X.
local function show(key)
  local name = NAMES[key]
  if name then return name end
  local b = byte(key)
  if #key == 1 and b < 32 then return "^" .. char(b + 64) end
  if b == 27 then return "Esc" .. key:sub(2) end
  return key
end

local Keys = {}

function Keys:connection_made(session)
  self.session = session
  session:write("Type keys; Ctrl-C or Ctrl-D quits.\n")
end

-- Enter comes as "\r", whatever line end the client sent ("\r\n",
-- "\r\0", nc's "\n"); Ctrl-C comes as interrupt(), not as a key.
function Keys:key_received(key)
  if key == "\4" then return self:interrupt() end
  self.session:write("echo:" .. show(key) .. "\n")
end

function Keys:interrupt()
  self.session:write("Bye.\n")
  self.session:close()
end

return telnet.protocol(Keys, { mode = "keys" })
