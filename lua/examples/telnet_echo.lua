--- Echoes line by line, with the editing done by the server: luaecho.telnet
-- in character mode. The telnet client sends every key as it is typed and
-- the server echoes it, erases with Backspace (one whole UTF-8 character),
-- Ctrl-U (the line) and Ctrl-W (a word), and at Enter answers "echo:" and
-- the line, then prompts again with "> ". Ctrl-C drops the line being
-- typed and prompts again; Ctrl-D on an empty line says bye and closes.
-- A plain nc works too: it edits and echoes lines itself.
--
--   luaecho lua/examples/telnet_echo.lua      then: telnet localhost 2222
local telnet = require "luaecho.telnet"

local PROMPT = "> "

local Echo = {}

function Echo:connection_made(session)
  self.session = session
  session:write("Type a line; Ctrl-D on an empty line quits.\n")
  session:prompt(PROMPT)
end

function Echo:line_received(line)
  self.session:write("echo:" .. line .. "\n")
  self.session:prompt(PROMPT)
end

function Echo:eof()
  self.session:write("Bye.\n")
  self.session:close()
end

return telnet.protocol(Echo, { mode = "character" })
