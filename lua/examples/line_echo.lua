--- Echoes line by line, for people typing in telnet.
-- readline() collects bytes until "\n" however the client's packets split
-- them; telnet ends lines with "\r\n", and the reply keeps that ending.
--
--   luaecho lua/examples/line_echo.lua      then: telnet localhost 2222
return function(reader, writer)
  writer:write("Type a line; an empty line or Ctrl-] quit ends.\r\n")
  while true do
    local line = reader:readline()           -- "" once the client is gone
    if line == "" then break end
    local text, ending = line:match("^(.-)(\r?\n?)$")
    if text == "" then break end
    writer:write(text .. (ending ~= "" and ending or "\n"))
    writer:drain()
  end
  writer:write("Bye.\r\n")
end
