--- Bytes as a readable, quoted string: control and non-ASCII bytes
-- escaped, so one chunk is one log line whatever the peer sent (what
-- Python's print shows for b'hello\r\n').
-- @usage local repr = require "luaecho.repr"
--   print(repr("hi\r\n\0"))   --> "hi\r\n\x00"
local char, format, gsub = string.char, string.format, string.gsub

-- Every byte that needs escaping, with its escape: gsub with a table does
-- no Lua call per byte, which matters for a 64 KiB chunk of binary data.
local escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
for byte = 0, 255 do
  local c = char(byte)
  if escapes[c] == nil and (byte < 32 or byte >= 127) then escapes[c] = format("\\x%02x", byte) end
end

return function(data)
  return '"' .. gsub(data, '[%c"\\\128-\255]', escapes) .. '"'
end
